"""Non-content pages: bot challenges, JavaScript shells, soft 404s and empty pages.

A scrape of such a page would pay a model call to summarise an interstitial. The checks read
the raw page (title, first heading, markers in the HTML, script count) and the length of its
main content; they run after parsing and before any model call.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser

__all__ = ["NonContentError", "NonContentReason", "Signals", "detect_non_content"]


class NonContentReason(enum.StrEnum):
    BOT_CHALLENGE = "bot_challenge"
    JS_SHELL = "javascript_shell"
    SOFT_404 = "soft_404"
    EMPTY = "empty"


_REASON_SENTENCES = {
    NonContentReason.BOT_CHALLENGE: "The site answered with a bot challenge or captcha instead of the page.",
    NonContentReason.JS_SHELL: "The page is an empty JavaScript shell: its content is only built "
    "by scripts in a browser.",
    NonContentReason.SOFT_404: "The page says it was not found, although the server answered with success.",
    NonContentReason.EMPTY: "The page has no readable text.",
}


class NonContentError(Exception):
    """The fetched page is not real content; no model call should be made for it."""

    def __init__(self, reason: NonContentReason, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        message = _REASON_SENTENCES[reason]
        if detail:
            message = f"{message} ({detail})"
        super().__init__(message)


_CHALLENGE_TITLES = re.compile(
    r"^\s*(just a moment|attention required|access denied|checking your browser|"
    r"please wait\b.*verif|ddos-guard|verify you are (a )?human|are you a robot|"
    r"security check|one more step|pardon our interruption|robot check|captcha)",
    re.I,
)
# Markers only a challenge interstitial carries.
_CHALLENGE_MARKERS = (
    "cf-browser-verification",
    "cf_chl_opt",
    "/cdn-cgi/challenge-platform/",
    "challenges.cloudflare.com",
    "captcha-delivery.com",
    "_incapsula_resource",
    "px-captcha",
    "ddos-guard",
)
# Captcha widgets also sit on real pages (comment and login forms): they count only when the
# page has next to no text of its own.
_CAPTCHA_MARKERS = ("g-recaptcha", "h-captcha", "hcaptcha.com", "cf-turnstile", "awswaf")
_ENABLE_JS_RE = re.compile(
    r"(enable|turn on|activate)\s+javascript|javascript (is )?(required|disabled)|"
    r"requires javascript|you need to enable javascript",
    re.I,
)
_NOT_FOUND_RE = re.compile(
    r"\b404\b|page not found|not found\b|doesn.t exist|does not exist|no longer (available|exists)"
    r"|could not be found|can.t be found|cannot be found",
    re.I,
)

# Thresholds in characters of visible text.
_CHALLENGE_MAX_TEXT = 2000
_CAPTCHA_MAX_TEXT = 400
_SHELL_MAX_TEXT = 200
_SOFT404_MAX_TEXT = 1500
_MOUNT_RE = re.compile(r"""id=["']?(root|app|__next|__nuxt)["'\s>]|<app-root|data-reactroot""")


@dataclass(slots=True)
class Signals:
    """What the raw page says about itself, read before boilerplate is stripped."""

    title: str
    h1: str
    raw_lower: str
    scripts: int

    @classmethod
    def read(cls, tree: LexborHTMLParser, html: str, title: str | None) -> Signals:
        h1 = tree.css_first("h1")
        return cls(
            title=title or "",
            h1=" ".join(h1.text(deep=True).split()) if h1 is not None else "",
            raw_lower=html[:300_000].lower(),
            scripts=len(tree.css("script")),
        )


def detect_non_content(signals: Signals, main_len: int) -> None:
    """Raise NonContentError when the page is not real content; main_len is its text length."""
    title = signals.title
    if _CHALLENGE_TITLES.search(title):
        raise NonContentError(NonContentReason.BOT_CHALLENGE, f"title {title[:80]!r}")
    markers = [m for m in _CHALLENGE_MARKERS if m in signals.raw_lower]
    if markers and main_len < _CHALLENGE_MAX_TEXT:
        raise NonContentError(NonContentReason.BOT_CHALLENGE, f"marker {markers[0]!r}")
    captchas = [m for m in _CAPTCHA_MARKERS if m in signals.raw_lower]
    if captchas and main_len < _CAPTCHA_MAX_TEXT:
        raise NonContentError(NonContentReason.BOT_CHALLENGE, f"marker {captchas[0]!r}")
    if main_len < 3 * _SHELL_MAX_TEXT and _ENABLE_JS_RE.search(signals.raw_lower):
        raise NonContentError(NonContentReason.JS_SHELL, "it asks to enable JavaScript")
    if main_len < _SHELL_MAX_TEXT:
        mount = _MOUNT_RE.search(signals.raw_lower)
        if mount or signals.scripts >= 2:
            raise NonContentError(NonContentReason.JS_SHELL, f"{signals.scripts} scripts and little text")
    # The title is the stronger signal; a heading alone could be an article about 404 pages.
    if main_len < _SOFT404_MAX_TEXT and _NOT_FOUND_RE.search(title):
        raise NonContentError(NonContentReason.SOFT_404, f"title {title[:80]!r}")
    if main_len < _SOFT404_MAX_TEXT // 3 and _NOT_FOUND_RE.search(signals.h1):
        raise NonContentError(NonContentReason.SOFT_404, f"heading {signals.h1[:80]!r}")
    if main_len < 20:
        raise NonContentError(NonContentReason.EMPTY)
