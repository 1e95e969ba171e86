"""Prompt templates: our own text, shipped as package data, overridable with a path or a string.

Templates use ``string.Template`` placeholders (``$instruction``), so braces in JSON examples or
code need no escaping. The write template must keep its fixed text first and the per-step part
(``$step_index``, ``$step_point``, ``$step_words``) last: every section's prompt then shares the
longest possible prefix with the previous one, which server-side prefix caches reuse.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from lw_core import LWError

TemplateSource = str | os.PathLike[str]
_REQUIRED = {
    "plan": ("$instruction",),
    "write": ("$instruction", "$plan", "$written", "$step_index"),
    "too_short": ("$step_words",),
}


class PromptError(LWError):
    """A prompt template is missing a placeholder or cannot be read."""


def _packaged(name: str) -> str:
    return resources.files("lw_agentwrite").joinpath("prompts", name).read_text(encoding="utf-8")


def _load(source: TemplateSource) -> str:
    """A path (``Path`` or a one-line string naming an existing file) is read; any other string is the template."""
    if isinstance(source, os.PathLike) or ("\n" not in source and "$" not in source and Path(source).is_file()):
        try:
            return Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise PromptError(f"cannot read prompt template {os.fspath(source)!r}: {exc}") from exc
    return source


@dataclass(frozen=True)
class Prompts:
    """The plan, write and re-ask templates for one language.

    >>> p = Prompts.default("en").replace(plan="Plan this in $length_hint: $instruction")
    >>> p.render("plan", instruction="a poem", length_hint="300 words")
    'Plan this in 300 words: a poem'
    """

    plan: str
    write: str
    too_short: str

    def __post_init__(self) -> None:
        for kind, needed in _REQUIRED.items():
            missing = [p for p in needed if p not in getattr(self, kind)]
            if missing:
                raise PromptError(f"the {kind} template lacks the placeholder(s) {', '.join(missing)}")

    @classmethod
    def default(cls, language: str = "en") -> Prompts:
        """The packaged templates; Chinese (``zh``) instructions get Chinese prompts."""
        suffix = "zh" if language == "zh" else "en"
        return cls(*(_packaged(f"{kind}_{suffix}.txt") for kind in ("plan", "write", "too_short")))

    def replace(
        self,
        *,
        plan: TemplateSource | None = None,
        write: TemplateSource | None = None,
        too_short: TemplateSource | None = None,
    ) -> Prompts:
        """A copy with some templates replaced, each given as template text or a file path."""
        return Prompts(
            plan=_load(plan) if plan is not None else self.plan,
            write=_load(write) if write is not None else self.write,
            too_short=_load(too_short) if too_short is not None else self.too_short,
        )

    def render(self, kind: str, **values: object) -> str:
        """Fill a template; unknown ``$names`` in user templates are left as written."""
        return Template(getattr(self, kind)).safe_substitute({k: str(v) for k, v in values.items()})
