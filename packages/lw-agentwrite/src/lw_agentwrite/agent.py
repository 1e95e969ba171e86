"""AgentWrite: plan sections with word budgets, then write them in order, one call each."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lw_core import (
    ChatClient,
    ClientError,
    Document,
    Instruction,
    LWError,
    Plan,
    PlanStep,
    Section,
    Usage,
    count_words,
    json_schema_format,
    run_sync,
)

from lw_agentwrite.parse import PlanParseError, parse_plan
from lw_agentwrite.prompts import Prompts

log = logging.getLogger(__name__)

SectionCallback = Callable[[Instruction, Section], None]
TextCallback = Callable[[Instruction, int, str], None]


class PlanError(LWError):
    """No usable plan after all attempts: the reasons of every attempt are in the message."""

    def __init__(self, message: str, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.usage = usage or Usage()  # what the failed attempts cost


def plan_schema(max_steps: int, min_steps: int = 1, max_section_words: int | None = None) -> dict[str, Any]:
    """JSON schema of a plan, for servers that constrain output to a schema."""
    word_count: dict[str, Any] = {"type": "integer", "minimum": min(50, max_section_words or 50)}
    if max_section_words:
        word_count["maximum"] = max_section_words
    step = {
        "type": "object",
        "properties": {
            "main_point": {"type": "string", "minLength": 1, "maxLength": 300},
            "word_count": word_count,
        },
        "required": ["main_point", "word_count"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"steps": {"type": "array", "items": step, "minItems": min_steps, "maxItems": max_steps}},
        "required": ["steps"],
        "additionalProperties": False,
    }


@dataclass
class AgentWrite:
    """Plan-then-write long outputs with any :class:`lw_core.ChatClient`.

    ``prompts`` overrides the packaged templates for every language (default: English, or Chinese
    for ``zh`` instructions). Each section gets ``max_tokens = budget * tokens_per_word + 32``
    (capped by ``max_section_tokens``), so a model that does not stop cannot run away. A section
    shorter than ``too_short_ratio`` of its budget is re-asked once and the longer answer kept; a
    section cut by ``max_tokens`` is kept as is and its ``finish_reason`` recorded, and the
    document's status becomes ``truncated``. ``on_section`` is called after each finished section,
    ``on_text`` with every streamed piece of text (``(instruction, step index, text)``).
    ``max_section_words`` (the paper's 1000) bounds each step's budget: plans over it are rejected,
    and JSON plans are constrained to it, which also sets their minimum number of steps.
    """

    client: ChatClient
    prompts: Prompts | None = None
    temperature: float | None = 0.5
    top_p: float | None = 0.8
    max_steps: int = 50
    max_section_words: int | None = 1000
    plan_attempts: int = 3
    plan_max_tokens: int = 1024
    tokens_per_word: float = 2.0
    max_section_tokens: int | None = 8192
    too_short_ratio: float = 0.5
    default_section_words: int = 500
    on_section: SectionCallback | None = None
    on_text: TextCallback | None = None
    _defaults: dict[str, Prompts] = field(default_factory=dict, init=False, repr=False)

    def prompts_for(self, instruction: Instruction) -> Prompts:
        if self.prompts is not None:
            return self.prompts
        language = instruction.language or "en"
        if language not in self._defaults:
            self._defaults[language] = Prompts.default(language)
        return self._defaults[language]

    # -- plan ---------------------------------------------------------------------------------
    async def plan(self, instruction: Instruction) -> Plan:
        """One call (retried up to ``plan_attempts`` times) that turns an instruction into a checked plan."""
        plan, _ = await self.plan_with_usage(instruction)
        return plan

    async def plan_with_usage(self, instruction: Instruction) -> tuple[Plan, Usage]:
        """:meth:`plan` plus the token usage of every attempt (for accounting)."""
        prompt = self.prompts_for(instruction).render(
            "plan", instruction=instruction.prompt, length_hint=_length_hint(instruction)
        )
        use_json = bool(getattr(self.client.capabilities, "json_schema", False))
        max_steps = self._max_steps(instruction)
        min_steps = 1
        if instruction.length and self.max_section_words:
            min_steps = min(max_steps, math.ceil(instruction.length / self.max_section_words))
        schema = plan_schema(max_steps, min_steps, self.max_section_words)
        usage = Usage()
        reasons: list[str] = []
        for attempt in range(1, self.plan_attempts + 1):
            temperature = self.temperature
            if attempt > 1:  # a greedy retry would repeat the rejected plan
                temperature = max(temperature or 0.0, 0.7)
            completion = await self.client.complete(
                [{"role": "user", "content": prompt}],
                max_tokens=self.plan_max_tokens,
                temperature=temperature,
                top_p=self.top_p,
                response_format=json_schema_format("plan", schema) if use_json else None,
            )
            usage += completion.usage
            try:
                plan = parse_plan(completion.text)
            except PlanParseError as exc:
                reasons.append(f"attempt {attempt}: {exc}")
                continue
            problem = self._check(plan, instruction)
            if problem is None:
                steps = self._fill_budgets(plan.steps, instruction)
                return Plan(instruction_id=instruction.id, steps=steps, raw=plan.raw), usage
            reasons.append(f"attempt {attempt}: {problem}")
        raise PlanError(
            f"model {self.client.model!r} gave no usable plan for instruction {instruction.id} after "
            f"{self.plan_attempts} attempts: " + "; ".join(reasons),
            usage,
        )

    def _max_steps(self, instruction: Instruction) -> int:
        if instruction.length:  # sections of at least ~100 words: the paper asks for 200-1000
            return max(1, min(self.max_steps, math.ceil(instruction.length / 100)))
        return self.max_steps

    def _check(self, plan: Plan, instruction: Instruction) -> str | None:
        """Why a plan is unusable, or None. Budgets far from the requested length are unusable."""
        if len(plan.steps) > self.max_steps:
            return f"plan has {len(plan.steps)} steps (more than {self.max_steps})"
        counts = [s.word_count for s in plan.steps if s.word_count is not None]
        if any(c == 0 for c in counts):
            return "a step has a word count of 0"
        if self.max_section_words and counts and max(counts) > 2 * self.max_section_words:
            return f"a step's word count {max(counts)} is over twice the section maximum {self.max_section_words}"
        if instruction.length and counts:
            if max(counts) > 4 * instruction.length:
                return f"a step's word count {max(counts)} exceeds 4x the requested {instruction.length}"
            if len(counts) == len(plan.steps) and not 0.25 <= sum(counts) / instruction.length <= 4:
                return f"word counts total {sum(counts)}, far from the requested {instruction.length}"
        return None

    def _fill_budgets(self, steps: list[PlanStep], instruction: Instruction) -> list[PlanStep]:
        """Give steps without a word count an equal share of what the requested length leaves over."""
        missing = [s for s in steps if s.word_count is None]
        if not missing:
            return steps
        share = self.default_section_words
        if instruction.length:
            left = instruction.length - sum(s.word_count or 0 for s in steps)
            share = max(50, left // len(missing)) if left > 0 else self.default_section_words
        return [s if s.word_count is not None else s.model_copy(update={"word_count": share}) for s in steps]

    # -- write --------------------------------------------------------------------------------
    async def write(
        self,
        instruction: Instruction,
        plan: Plan,
        *,
        done: Sequence[Section] = (),
        on_section: SectionCallback | None = None,
    ) -> Document:
        """Write every step of ``plan`` not in ``done`` (finished sections, e.g. from a cache), in order.

        Raises :class:`lw_core.ClientError` when a call fails for good; sections finished before
        that were already passed to the callbacks.
        """
        started = time.perf_counter()
        prompts = self.prompts_for(instruction)
        plan_text = _plan_text(plan, instruction.language)
        sections = sorted(done, key=lambda s: s.index)
        finished = {s.index for s in sections}
        for step in plan.steps:
            if step.index in finished:
                continue
            section = await self._write_step(instruction, plan_text, step, sections, prompts)
            sections.append(section)
            for callback in (on_section, self.on_section):
                if callback is not None:
                    callback(instruction, section)
        return self._document(instruction, plan, sections, Usage(), time.perf_counter() - started)

    async def _write_step(
        self,
        instruction: Instruction,
        plan_text: str,
        step: PlanStep,
        sections: list[Section],
        prompts: Prompts,
    ) -> Section:
        budget = step.word_count or self.default_section_words
        max_tokens = int(budget * self.tokens_per_word) + 32
        if self.max_section_tokens:
            max_tokens = min(max_tokens, self.max_section_tokens)
        written = "\n\n".join(s.text for s in sections) or (
            "（暂无）" if instruction.language == "zh" else "(nothing yet)"
        )
        values = {"step_index": step.index, "step_point": step.main_point, "step_words": budget}
        messages = [
            {
                "role": "user",
                "content": prompts.render(
                    "write", instruction=instruction.prompt, plan=plan_text, written=written, **values
                ),
            }
        ]
        completion = await self._complete(instruction, step.index, messages, max_tokens)
        usage, attempts, text = completion.usage, 1, completion.text.strip()
        finish_reason = completion.finish_reason
        if finish_reason != "length" and count_words(text) < self.too_short_ratio * budget:
            log.info("section %d of %s: %d words for a budget of %d, re-asking", step.index, instruction.id,
                     count_words(text), budget)  # fmt: skip
            retry = [
                *messages,
                {"role": "assistant", "content": text},
                {"role": "user", "content": prompts.render("too_short", words=count_words(text), **values)},
            ]
            again = await self._complete(instruction, step.index, retry, max_tokens)
            usage, attempts = usage + again.usage, 2
            if count_words(again.text) > count_words(text):
                text, finish_reason = again.text.strip(), again.finish_reason
        return Section(
            index=step.index,
            text=text,
            word_count=count_words(text),
            finish_reason=finish_reason,
            usage=usage,
            attempts=attempts,
        )

    async def _complete(
        self, instruction: Instruction, index: int, messages: list[dict[str, str]], max_tokens: int
    ) -> Any:
        on_text = self.on_text
        return await self.client.complete(
            messages,
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stream=on_text is not None,
            on_text=(lambda piece: on_text(instruction, index, piece)) if on_text is not None else None,
        )

    def _document(
        self, instruction: Instruction, plan: Plan, sections: list[Section], plan_usage: Usage, elapsed: float
    ) -> Document:
        text = "\n\n".join(s.text for s in sections)
        usage = sum((s.usage for s in sections), plan_usage)
        truncated = any(s.finish_reason == "length" for s in sections)
        return Document(
            id=instruction.id,
            instruction=instruction,
            plan=plan,
            sections=sections,
            text=text,
            word_count=count_words(text),
            status="truncated" if truncated else "done",
            model=self.client.model,
            usage=usage,
            elapsed_s=round(elapsed, 3),
        )

    # -- run ----------------------------------------------------------------------------------
    async def run(self, instruction: Instruction | str, plan: Plan | None = None) -> Document:
        """Plan (unless given) and write; a failure gives a ``failed`` document with the reason, not an exception."""
        if isinstance(instruction, str):
            instruction = Instruction(prompt=instruction)
        started = time.perf_counter()
        plan_usage = Usage()
        written: list[Section] = []
        try:
            if plan is None:
                plan, plan_usage = await self.plan_with_usage(instruction)
            document = await self.write(instruction, plan, on_section=lambda _, section: written.append(section))
        except (PlanError, ClientError) as exc:
            if isinstance(exc, PlanError):
                plan_usage = exc.usage
            return failed_document(self, instruction, plan, written, plan_usage, exc, started)
        document.usage = document.usage + plan_usage
        document.elapsed_s = round(time.perf_counter() - started, 3)
        return document

    def run_sync(self, instruction: Instruction | str, plan: Plan | None = None) -> Document:
        """Blocking :meth:`run` for scripts and notebooks (works inside a running event loop too)."""
        return run_sync(self.run(instruction, plan))


def failed_document(
    agent: AgentWrite,
    instruction: Instruction,
    plan: Plan | None,
    sections: list[Section],
    plan_usage: Usage,
    error: Exception,
    started: float,
) -> Document:
    """A ``failed`` document that keeps the reason, the plan, the sections finished so far and their cost."""
    return Document(
        id=instruction.id,
        instruction=instruction,
        plan=plan,
        sections=sections,
        text="\n\n".join(s.text for s in sections),
        status="failed",
        error=str(error),
        model=agent.client.model,
        usage=sum((s.usage for s in sections), plan_usage),
        elapsed_s=round(time.perf_counter() - started, 3),
    )


def _length_hint(instruction: Instruction) -> str:
    if instruction.length is None:
        return "as the task asks" if instruction.language != "zh" else "按任务要求"
    return f"{instruction.length}字" if instruction.language == "zh" else f"{instruction.length} words"


def _plan_text(plan: Plan, language: str | None) -> str:
    """The plan as the model sees it in write prompts, in the paper's line format."""
    if language == "zh":
        return "\n".join(f"段落{s.index} - 主要内容：{s.main_point} - 字数：{s.word_count}字" for s in plan.steps)
    return "\n".join(
        f"Paragraph {s.index} - Main Point: {s.main_point} - Word Count: {s.word_count} words" for s in plan.steps
    )
