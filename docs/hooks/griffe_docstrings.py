"""A griffe extension: the packages' reST-flavoured docstrings, rendered as Markdown by mkdocstrings.

The docstrings are written for ``help()`` and doctest, not for a site: doctest examples (``>>>``) would render as
nested block quotes, and ``:class:`X``` roles as literal colons. This rewrites them on load, leaving the source alone:

- a run of doctest lines (``>>>`` up to the next blank line) becomes a fenced ``pycon`` block;
- ``:role:`~a.b.Name``` becomes ```` `a.b.Name` ```` (``Name`` with the tilde), as code;
- a paragraph ending in ``::`` (a reST literal block follows) ends in ``:``; the indented block after it is
  already a Markdown code block.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`(~?)([^`]+)`")
_BACKTICKS = re.compile(r"`+")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _fence_doctests(lines: list[str]) -> list[str]:
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.lstrip().startswith(">>>"):
            out.append(line)
            index += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        block = []
        while index < len(lines) and lines[index].strip():
            block.append(lines[index])
            index += 1
        longest = max((len(run) for text in block for run in _BACKTICKS.findall(text)), default=0)
        fence = indent + "`" * max(3, longest + 1)
        out += [fence + "pycon", *block, fence]
    return out


def markdown_docstring(text: str) -> str:
    """The docstring ``text`` as Markdown (see the module docstring).

    >>> print(markdown_docstring("Counts words (:func:`~lw_core.count_words`)::\\n\\n>>> 1 + 1\\n2"))
    Counts words (`count_words`):
    <BLANKLINE>
    ```pycon
    >>> 1 + 1
    2
    ```
    """
    lines = [re.sub(r"::$", ":", _ROLE.sub(_role, line)) for line in text.splitlines()]
    return "\n".join(_fence_doctests(lines))


class MarkdownDocstrings(griffe.Extension):
    """Rewrites every loaded docstring with :func:`markdown_docstring`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
