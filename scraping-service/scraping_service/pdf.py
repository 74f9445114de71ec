"""PDF pages as text, read by pypdf in a child process with hard bounds.

pypdf is pure Python and well kept, but a hostile PDF (deep object graphs, huge content streams,
decompression bombs) can make it slow or hungry. A thread cannot be stopped, so the reading
happens in a short-lived child (`python -m scraping_service.pdf`): the body goes in on stdin,
JSON comes out on stdout, the child has CPU and memory rlimits and no environment (no secrets),
and the parent kills it past its deadline. Pages past MAX_PAGES and text past MAX_TEXT_CHARS are
left out, with a warning in the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "MAX_PAGES",
    "MAX_TEXT_CHARS",
    "PDF_TIMEOUT_SECONDS",
    "PdfError",
    "PdfText",
    "is_pdf",
    "pdf_markdown",
    "read_pdf",
]

MAX_PAGES = 200
MAX_TEXT_CHARS = 2_000_000
PDF_TIMEOUT_SECONDS = 20.0
_CHILD_MEMORY_BYTES = 1024 * 1024 * 1024
_MAX_OUTPUT_BYTES = 4 * MAX_TEXT_CHARS + 65_536

_SENTENCES = {
    "pdf_encrypted": "The PDF is encrypted (password-protected), so its text cannot be read.",
    "pdf_unreadable": "The PDF is damaged or not a PDF that can be read.",
    "pdf_timeout": f"Reading the PDF took longer than {PDF_TIMEOUT_SECONDS:g} seconds; it was stopped.",
    "pdf_no_text": "The PDF has no text layer (it may be scanned images); nothing could be read.",
}


class PdfError(Exception):
    """A PDF we cannot read; `code` is one of the keys above."""

    def __init__(self, code: str) -> None:
        super().__init__(_SENTENCES[code])
        self.code = code


@dataclass(slots=True)
class PdfText:
    title: str | None
    pages: list[str]
    page_count: int
    warnings: list[str] = field(default_factory=list)


def is_pdf(content_type: str | None, body: bytes) -> bool:
    """application/pdf, or an untyped / octet-stream body that starts like a PDF."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime in ("application/pdf", "application/x-pdf"):
        return True
    # The PDF spec lets the header sit anywhere in the first 1024 bytes.
    return mime in ("", "application/octet-stream", "binary/octet-stream") and b"%PDF-" in body[:1024]


def pdf_markdown(text: PdfText) -> str:
    """The title as a heading, then each page's text as its own paragraphs."""
    parts = [f"# {text.title}"] if text.title else []
    for page in text.pages:
        paragraphs = [p.strip() for p in page.replace("\r\n", "\n").split("\n\n")]
        parts.extend(p for p in paragraphs if p)
    return "\n\n".join(parts)


async def read_pdf(body: bytes, timeout_s: float = PDF_TIMEOUT_SECONDS) -> PdfText:
    """Read a PDF's text in a bounded child process; raise PdfError with a code."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scraping_service.pdf",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={"PYTHONIOENCODING": "utf-8"},  # sys.executable is absolute: no PATH needed
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(body), timeout_s)
    except TimeoutError:
        raise PdfError("pdf_timeout") from None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    try:
        answer: dict[str, Any] = orjson.loads(out[:_MAX_OUTPUT_BYTES])
    except orjson.JSONDecodeError:
        # Killed by its rlimits (CPU or memory), or crashed: either way the PDF is the cause.
        raise PdfError("pdf_unreadable") from None
    if "error" in answer:
        raise PdfError(str(answer["error"]) if answer["error"] in _SENTENCES else "pdf_unreadable")
    pages = [str(p) for p in answer["pages"]]
    if not any(p.strip() for p in pages):
        raise PdfError("pdf_no_text")
    return PdfText(
        title=answer.get("title") or None,
        pages=pages,
        page_count=int(answer["page_count"]),
        warnings=[str(w) for w in answer.get("warnings", [])],
    )


# --- the child --------------------------------------------------------------------------------


def _read(body: bytes) -> dict[str, Any]:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    try:
        reader = PdfReader(io.BytesIO(body))
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password only to set permissions.
            try:
                if not reader.decrypt(""):
                    return {"error": "pdf_encrypted"}
            except Exception:
                return {"error": "pdf_encrypted"}
        count = len(reader.pages)
        title = None
        with contextlib.suppress(Exception):
            meta = reader.metadata
            title = (" ".join(str(meta.title).split())[:300] or None) if meta and meta.title else None
        pages: list[str] = []
        used = 0
        warnings: list[str] = []
        for index in range(min(count, MAX_PAGES)):
            text = reader.pages[index].extract_text() or ""
            if used + len(text) > MAX_TEXT_CHARS:
                pages.append(text[: MAX_TEXT_CHARS - used])
                warnings.append(f"The PDF's text is cut to {MAX_TEXT_CHARS} characters.")
                break
            pages.append(text)
            used += len(text)
        if count > MAX_PAGES:
            warnings.append(f"Only the first {MAX_PAGES} of the PDF's {count} pages are read.")
    except FileNotDecryptedError:
        return {"error": "pdf_encrypted"}
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError):
        return {"error": "pdf_unreadable"}
    except Exception:
        return {"error": "pdf_unreadable"}
    return {"title": title, "pages": pages, "page_count": count, "warnings": warnings}


def _limit_self() -> None:
    import resource

    cpu = int(PDF_TIMEOUT_SECONDS) + 2
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (_CHILD_MEMORY_BYTES, _CHILD_MEMORY_BYTES))


def main() -> None:
    _limit_self()
    body = sys.stdin.buffer.read()
    sys.stdout.buffer.write(orjson.dumps(_read(body)))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
