"""MkDocs hook: a page includes a README of the repository with ``<!-- include-readme: path/README.md -->``.

The READMEs stay the single source (an index shows them beside the code); the site shows the same text. The README's
own title goes (the page has one), and its relative links to other READMEs become links to the pages that include
them. A relative link to anything else fails the build, naming the README and the link: the site has no page for it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

_INCLUDE = re.compile(r"^<!-- include-readme: (\S+) -->$", re.MULTILINE)
_LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")
_ROOT = Path(__file__).resolve().parents[2]

#: Repository paths (a README or the folder holding it) and the page of the site that shows them.
PAGES = {
    "README.md": "index.md",
    "packages/lw-core/README.md": "packages/lw-core.md",
    "packages/lw-agentwrite/README.md": "packages/lw-agentwrite.md",
    "packages/lw-data/README.md": "packages/lw-data.md",
    "packages/lw-train/README.md": "packages/lw-train.md",
    "packages/lw-bench/README.md": "packages/lw-bench.md",
    "packages/lw-serve/README.md": "packages/lw-serve.md",
    "apps/reproduce/README.md": "packages/lw-reproduce.md",
    "recipes/README.md": "guides/train.md",
}


def _page_for(target: str) -> str | None:
    target = target.rstrip("/")
    return PAGES.get(target) or PAGES.get(f"{target}/README.md")


def readme_markdown(readme: str, page: str) -> str:
    """The README at repository path ``readme`` as Markdown for the site page ``page`` (both POSIX, relative)."""
    text = (_ROOT / readme).read_text(encoding="utf-8")
    text = re.sub(r"\A# [^\n]*\n+", "", text)

    def relink(match: re.Match[str]) -> str:
        target, anchor = match.group(1), match.group(2) or ""
        if re.match(r"[a-z]+:", target):
            return match.group(0)
        shown = _page_for(posixpath.normpath(posixpath.join(posixpath.dirname(readme), target)))
        if shown is None:
            raise PluginError(
                f"{readme}: the link to {target!r} has no page on the site: add it to PAGES in {__file__}"
            )
        return f"]({posixpath.relpath(shown, posixpath.dirname(page) or '.')}{anchor})"

    return _LINK.sub(relink, text)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    return _INCLUDE.sub(lambda match: readme_markdown(match.group(1), page.file.src_uri), markdown)
