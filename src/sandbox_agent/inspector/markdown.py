"""Markdown to HTML that can never carry markup of its own: raw HTML is escaped, links keep
only http and https targets (anything else, ``javascript:`` first, stays text) and images
render as links (the page loads nothing from elsewhere)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

SAFE_SCHEMES = ("http://", "https://")


def _safe_link(url: str) -> bool:
    return url.strip().lower().startswith(SAFE_SCHEMES)


@functools.cache
def _parser() -> MarkdownIt:
    from markdown_it import MarkdownIt

    # commonmark with "html" off: an HTML block or inline tag is text, escaped on output.
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.disable("image")
    md.validateLink = _safe_link  # type: ignore[method-assign]
    return md


def render_markdown(text: str) -> str:
    """``text`` as safe HTML (a string for Jinja's ``Markup``)."""
    html: str = _parser().render(text)
    return html
