"""Prompt templates in two styles: ours (``lw``) and the paper's (``paper``), each filled the way it is meant to be.

``lw`` templates are our own text, shipped as package data and filled with ``string.Template``
placeholders (``$instruction``), so braces in JSON examples or code need no escaping. The write
template keeps its fixed text first and the per-step part (``$step_index``, ``$step_point``,
``$step_words``) last: every section's prompt then shares the longest possible prefix with the
previous one, which server-side prefix caches reuse.

``paper`` templates are THUDM/LongWriter's ``agentwrite/prompts/plan.txt`` and ``write.txt``, read as
data (``lw_core.data_file``, pinned to commit 3fcfdff) and filled exactly as its ``plan.py`` and
``write.py`` fill them: ``template.replace('$INST$', inst).replace('$PLAN$', plan).replace('$TEXT$',
text).replace('$STEP$', step)``, where the plan is the model's plan reply with blank lines removed,
each of its lines is one step, and the text is every earlier reply followed by a blank line, stripped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Literal

from lw_core import Instruction, Plan, PlanStep, Section, data_file

from lw_agentwrite.errors import PromptError

TemplateSource = str | os.PathLike[str]
PromptStyle = Literal["lw", "paper"]
_REQUIRED: dict[PromptStyle, dict[str, tuple[str, ...]]] = {
    "lw": {
        "plan": ("$instruction",),
        "write": ("$instruction", "$plan", "$written", "$step_index"),
        "too_short": ("$step_words",),
        "extend": ("$missing",),
    },
    "paper": {"plan": ("$INST$",), "write": ("$INST$", "$PLAN$", "$TEXT$", "$STEP$")},
}
#: The order in which the original code replaces the paper's placeholders (it matters when a value holds one).
_PAPER_ORDER = ("$INST$", "$PLAN$", "$TEXT$", "$STEP$")


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
    """The plan, write, re-ask and continue templates for one language, and the ``style`` they are filled in.

    >>> p = Prompts.default("en").replace(plan="Plan this in $length_hint: $instruction")
    >>> p.render("plan", instruction="a poem", length_hint="300 words")
    'Plan this in 300 words: a poem'
    >>> Prompts.paper(plan="Break down: $INST$", write="$INST$|$PLAN$|$TEXT$|$STEP$").render("plan", INST="a poem")
    'Break down: a poem'
    """

    plan: str
    write: str
    too_short: str = ""
    extend: str = ""
    style: PromptStyle = "lw"

    def __post_init__(self) -> None:
        if self.style not in _REQUIRED:
            raise PromptError(f"unknown prompt style {self.style!r}; expected one of {', '.join(_REQUIRED)}")
        for kind, needed in _REQUIRED[self.style].items():
            missing = [p for p in needed if p not in getattr(self, kind)]
            if missing:
                raise PromptError(f"the {self.style} {kind} template lacks the placeholder(s) {', '.join(missing)}")

    @classmethod
    def default(cls, language: str = "en") -> Prompts:
        """Our packaged templates (the ``lw`` preset); Chinese (``zh``) instructions get Chinese prompts."""
        suffix = "zh" if language == "zh" else "en"
        kinds = ("plan", "write", "too_short", "extend")
        plan, write, too_short, extend = (_packaged(f"{kind}_{suffix}.txt") for kind in kinds)
        return cls(plan=plan, write=write, too_short=too_short, extend=extend)

    @classmethod
    def paper(cls, plan: TemplateSource | None = None, write: TemplateSource | None = None) -> Prompts:
        """The paper's plan and write prompts (``longwriter_prompts/plan.txt``, ``write.txt`` via ``data_file``).

        The original ships English prompts only and uses them for every instruction; give your own files in the
        same style (``$INST$``, ``$PLAN$``, ``$TEXT$``, ``$STEP$``) for other languages.
        """
        plan_text = _load(plan) if plan is not None else _read(data_file("longwriter_prompts/plan.txt"))
        write_text = _load(write) if write is not None else _read(data_file("longwriter_prompts/write.txt"))
        return cls(plan=plan_text, write=write_text, style="paper")

    def replace(
        self,
        *,
        plan: TemplateSource | None = None,
        write: TemplateSource | None = None,
        too_short: TemplateSource | None = None,
        extend: TemplateSource | None = None,
    ) -> Prompts:
        """A copy with some templates replaced, each given as template text or a file path."""
        return Prompts(
            plan=_load(plan) if plan is not None else self.plan,
            write=_load(write) if write is not None else self.write,
            too_short=_load(too_short) if too_short is not None else self.too_short,
            extend=_load(extend) if extend is not None else self.extend,
            style=self.style,
        )

    def render(self, kind: str, **values: object) -> str:
        """Fill a template. ``lw``: ``string.Template`` names, unknown ``$names`` left as written. ``paper``:
        ``INST``, ``PLAN``, ``TEXT``, ``STEP`` replaced in the original's order, with ``str.replace``."""
        template: str = getattr(self, kind)
        if self.style == "lw":
            return Template(template).safe_substitute({k: str(v) for k, v in values.items()})
        for placeholder in _PAPER_ORDER:
            name = placeholder.strip("$")
            if name in values:
                template = template.replace(placeholder, str(values[name]))
        return template

    # -- what the agent sends -------------------------------------------------------------------------------------
    def plan_prompt(self, instruction: Instruction) -> str:
        """The plan request for ``instruction`` (the paper's: the instruction only, no length hint)."""
        if self.style == "paper":
            return self.render("plan", INST=instruction.prompt)
        return self.render("plan", instruction=instruction.prompt, length_hint=length_hint(instruction))

    def write_prompt(
        self, instruction: Instruction, plan: Plan, done: Sequence[Section], step: PlanStep, omitted: int = 0
    ) -> str:
        """The request for ``step`` after the sections ``done`` (in order; ``omitted`` earlier ones not shown)."""
        if self.style == "paper":
            return self.render(
                "write",
                INST=instruction.prompt,
                PLAN=paper_plan_text(plan),
                TEXT=paper_text(done),
                STEP=step.main_point.strip(),
            )
        written = "\n\n".join(["[...]"] * bool(omitted) + [s.text for s in done])
        written = written or ("（暂无）" if instruction.language == "zh" else "(nothing yet)")
        return self.render(
            "write",
            instruction=instruction.prompt,
            plan=plan_text(plan, instruction.language),
            written=written,
            step_index=step.index,
            step_point=step.main_point,
            step_words=step.word_count,
        )


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def length_hint(instruction: Instruction) -> str:
    if instruction.length is None:
        return "as the task asks" if instruction.language != "zh" else "按任务要求"
    return f"{instruction.length}字" if instruction.language == "zh" else f"{instruction.length} words"


def plan_text(plan: Plan, language: str | None) -> str:
    """The plan as the model sees it in our write prompts, in the paper's line format."""
    if language == "zh":
        return "\n".join(f"段落{s.index} - 主要内容：{s.main_point} - 字数：{s.word_count}字" for s in plan.steps)
    return "\n".join(
        f"Paragraph {s.index} - Main Point: {s.main_point} - Word Count: {s.word_count} words" for s in plan.steps
    )


def paper_plan_text(plan: Plan) -> str:
    """The original's ``$PLAN$``: the plan reply stripped, blank lines removed (``.replace('\\n\\n', '\\n')``).

    A paper-style plan keeps each line as a step's ``main_point``, so joining them gives that text back, also
    after a user edited the steps.
    """
    return "\n".join(s.main_point for s in plan.steps).strip()


def paper_text(done: Sequence[Section]) -> str:
    """The original's ``$TEXT$``: every earlier reply followed by a blank line, then stripped (empty at first)."""
    return "".join(s.text + "\n\n" for s in done).strip()
