"""AgentWrite: plan sections with word budgets, then write them in order, one call each."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lw_core import (
    REPETITION_THRESHOLD,
    ChatClient,
    ClientError,
    Document,
    Instruction,
    Plan,
    PlanStep,
    Section,
    Usage,
    count_words,
    json_schema_format,
    run_sync,
)
from lw_core.config import explain
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SkipValidation, ValidationError, field_validator

from lw_agentwrite.errors import AgentWriteError, PlanError, PlanParseError, WriteError
from lw_agentwrite.parse import parse_plan, split_plan
from lw_agentwrite.prompts import Prompts, paper_text
from lw_agentwrite.trim import loop_onset, repeated_share, trim_to_sentence

log = logging.getLogger(__name__)

SectionCallback = Callable[[Instruction, Section], None]
TextCallback = Callable[[Instruction, int, str], None]


#: ``finish_reason`` values that make a document ``truncated``: cut mid-sentence, or mostly repetition.
SINKING = frozenset({"length", "repetitive"})


@dataclass(frozen=True)
class _Answer:
    """One reply to a step after trimming: its text, why it ended, and its share of repeated 4-grams."""

    text: str
    reason: str | None
    repeated: float


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


class AgentWriteOptions(BaseModel):
    """AgentWrite's settings, checked and described: what a config file, ``--set`` or ``AgentWrite(client, ...)`` sets.

    The defaults are the ``lw`` preset's (:data:`PRESETS` holds the others' differences); ``none`` turns an optional
    one off. A bad value raises :class:`~lw_agentwrite.AgentWriteError` naming the field when an :class:`AgentWrite`
    is built (and when the command line reads ``--config`` or ``--set``).

    >>> AgentWriteOptions(temperature=0.7).temperature, AgentWriteOptions().max_section_tokens
    (0.7, 8192)
    >>> from lw_core import OpenAIChatClient
    >>> AgentWrite(OpenAIChatClient("http://127.0.0.1:8000/v1", "m"), top_p=2)
    Traceback (most recent call last):
    lw_agentwrite.errors.AgentWriteError: AgentWrite: field 'top_p': Input should be less than or equal to 1 (got 2)
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    temperature: float | None = Field(
        0.5, ge=0.0, description="sampling temperature of every call (none: the server's); plan retries use >= 0.7"
    )
    top_p: float | None = Field(0.8, gt=0.0, le=1.0, description="nucleus sampling of every call (none: the server's)")
    max_steps: int = Field(50, ge=1, description="most steps a plan may have (the paper skips plans of more)")
    max_section_words: int | None = Field(
        1000,
        ge=1,
        description="most words a step's budget may ask for (none: no bound); sets a JSON plan's minimum steps",
    )
    plan_attempts: int = Field(3, ge=1, description="plan calls per instruction before the plan is given up")
    plan_max_tokens: int = Field(1024, ge=1, description="max_tokens of a plan call")
    tokens_per_word: float | None = Field(
        2.0, gt=0.0, description="a section's max_tokens is budget x this + 32 (none: a flat max_section_tokens)"
    )
    max_section_tokens: int | None = Field(
        8192, ge=1, description="upper bound on max_tokens of any section call (none: no bound)"
    )
    too_short_ratio: float = Field(
        0.5, ge=0.0, description="a section under this share of its budget is re-asked once (0: never)"
    )
    continue_short: int = Field(
        0, ge=0, description="times a section still too short is continued (asked for the missing words)"
    )
    default_section_words: int = Field(
        500, ge=1, description="budget of a step without a word count when the instruction gives no length"
    )
    fit_budgets: bool = Field(True, description="scale the plan's word counts to sum to the requested length")
    trim_cut_sections: bool = Field(
        True, description="a section cut at its cap keeps its text up to the last complete sentence"
    )
    trim_loops: bool = Field(True, description="cut a section where it starts looping or copying earlier sections")
    reask_repetition: float | None = Field(
        REPETITION_THRESHOLD,
        ge=0.0,
        le=1.0,
        description="re-ask a section once when this share of its 4-grams is repeated (none: never)",
    )
    repetition_limit: float | None = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="a section with more repeated 4-grams is 'repetitive' and truncates the document (none: no check)",
    )
    context_sections: int | None = Field(
        None, ge=0, description="earlier sections shown in our write prompt (none: all; a small model copies them)"
    )
    fallback_plan: bool = Field(
        True, description="write from generic sections of the requested length when no plan is usable (else fail)"
    )

    @field_validator("*", mode="before")
    @classmethod
    def _none(cls, value: Any) -> Any:
        """``none`` (or ``null``) turns a setting off: TOML, and so ``--set``, has no null to write it with."""
        return None if isinstance(value, str) and value.strip().lower() in {"none", "null"} else value


class AgentWrite(AgentWriteOptions):
    """Plan-then-write long outputs with any :class:`lw_core.ChatClient`.

    An agent is its :class:`AgentWriteOptions` (each setting checked and described there), plus the client, the
    prompts and the callbacks: ``AgentWrite(client, temperature=0.7)``. The defaults are the ``lw`` preset;
    ``AgentWrite.preset("paper", client)`` is the original (see :meth:`preset`).
    ``prompts`` overrides the templates for every language (default: ours, English or Chinese for ``zh``
    instructions). Each section gets ``max_tokens = budget * tokens_per_word + 32`` (``tokens_per_word=None``: a
    flat ``max_section_tokens``), so a model that does not stop cannot run away.

    Length control for writers that do not stop by themselves: a section cut at its cap keeps its text up to the last
    complete sentence (``trim_cut_sections``; ``finish_reason="trimmed"``, the document stays ``done``); with
    ``trim_loops`` a section is also cut where it starts looping or copying earlier sections. A section's repetition
    is the share of its 4-grams seen before, in it or in the text so far (lw-data's repeated-4-gram ratio, which
    also sees a copy of an earlier section): a section mostly repetition (above ``repetition_limit``) is
    ``"repetitive"`` and makes the document ``truncated``, as does one cut where no sentence ends (``"length"``);
    milder repetition is left to lw-data's document filter. A section shorter than ``too_short_ratio`` of its budget
    is re-asked once, and one above ``reask_repetition`` too; the better answer is kept. One still that short is then
    continued (asked for the missing words, appended) up to ``continue_short`` times. ``context_sections`` shows
    only the last so many sections of the text so far in our write prompt (a small model copies what it sees).
    ``fit_budgets`` scales the plan's word counts to sum to the requested length.

    ``on_section`` is called after each finished section, ``on_text`` with every streamed piece of text
    (``(instruction, step index, text)``). ``max_section_words`` (the paper's 1000) bounds each step's budget: plans
    over it are rejected, and JSON plans are constrained to it, which also sets their minimum number of steps.

    ``fallback_plan`` (ours; off in the ``paper`` preset, whose original drops such an item) never loses an
    instruction to its planner: when ``plan_attempts`` gave no usable plan, :func:`fallback_plan` splits the
    requested length into sections of the paper's 200–1000 words (at most ``max_section_words``) with generic main
    points, marked ``plan.meta["source"] == "fallback"`` with the planner's reasons.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    client: SkipValidation[ChatClient] = Field(description="the model that plans and writes")
    prompts: SkipValidation[Prompts | None] = Field(
        None, description="templates for every language (none: ours, English or Chinese for zh instructions)"
    )
    on_section: SectionCallback | None = Field(None, description="called after each finished section")
    on_text: TextCallback | None = Field(None, description="called with every streamed piece of text")
    _defaults: dict[str, Prompts] = PrivateAttr(default_factory=dict)

    def __init__(self, client: ChatClient, /, **settings: Any) -> None:
        """An agent writing with ``client``; ``settings`` are :class:`AgentWriteOptions` fields (or ``prompts``,
        ``on_section``, ``on_text``). A bad one raises :class:`~lw_agentwrite.AgentWriteError` naming the field."""
        try:
            super().__init__(**{"client": client, **settings})  # the options' __init__ with this model's fields
        except ValidationError as exc:
            raise AgentWriteError(explain(exc, type(self), source="AgentWrite")) from None

    @classmethod
    def preset(cls, name: str, client: ChatClient, **overrides: Any) -> AgentWrite:
        """An agent with a named set of settings; ``overrides`` change single fields.

        - ``"paper"``: THUDM/LongWriter's AgentWrite as released — its plan and write prompts (``Prompts.paper()``)
          filled as its code fills them, every plan line a step, temperature 1.0, no top_p, 4096 max tokens for the
          plan and for every section, no length hint, no re-asks, no trimming, no repetition check; an item
          without a usable plan is dropped (fails).
        - ``"lw"``: ours (the defaults of this class): length-hinted plan prompt, parsed and checked plans (JSON
          where the server enforces schemas) with budgets fitted to the requested length, per-section token caps,
          re-asks of short or repetitive sections, trimming at the cap and at loops, a fallback plan when the
          planner gives no usable one.
        - ``"small"``: ``lw`` for a small teacher that does not stop by itself (the embedded 135M model): sections
          of at most 200 words (what such a model writes before it stops or loops), capped at 1.5 tokens a word.
          Measured with the server sampling :func:`preset_sampling` gives (llama.cpp's ``repeat_penalty``); build
          the client with it, e.g. ``OpenAIChatClient(..., extra_body=preset_sampling("small"))``.

        >>> from lw_core import OpenAIChatClient
        >>> agent = AgentWrite.preset("lw", OpenAIChatClient("http://127.0.0.1:8000/v1", "m"), temperature=0.7)
        >>> agent.temperature, agent.top_p, agent.trim_cut_sections
        (0.7, 0.8, True)
        """
        if name not in PRESETS:
            raise AgentWriteError(f"unknown AgentWrite preset {name!r}; expected one of: {', '.join(PRESETS)}")
        settings = dict(PRESETS[name])
        if name == "paper":
            settings["prompts"] = Prompts.paper()
        missing = {k: v for k, v in preset_sampling(name).items() if getattr(client, "extra_body", {}).get(k) != v}
        if missing:
            log.warning("the %r preset was measured with the server sampling %s, which the client does not send; "
                        "build it with extra_body=preset_sampling(%r)", name, missing, name)  # fmt: skip
        return cls(client, **{**settings, **overrides})

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
        prompts = self.prompts_for(instruction)
        paper = prompts.style == "paper"
        prompt = prompts.plan_prompt(instruction)
        use_json = not paper and bool(getattr(self.client.capabilities, "json_schema", False))
        max_steps = self.max_steps if paper else self._max_steps(instruction)
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
            if paper:
                plan = split_plan(completion.text)
                problem = self._check_lines(plan)
            else:
                try:
                    plan = parse_plan(completion.text)
                except PlanParseError as exc:
                    reasons.append(f"attempt {attempt}: {exc}")
                    continue
                steps, problem = self._checked(plan.steps, instruction)
                plan = Plan(steps=steps, raw=plan.raw)
            if problem is None:
                return Plan(instruction_id=instruction.id, steps=plan.steps, raw=plan.raw), usage
            reasons.append(f"attempt {attempt}: {problem}")
        why = (
            f"model {self.client.model!r} gave no usable plan for instruction {instruction.id} after "
            f"{self.plan_attempts} attempt{'s' if self.plan_attempts > 1 else ''}: " + "; ".join(reasons)
        )
        if not self.fallback_plan:
            raise PlanError(why, usage)
        log.warning("%s; writing it from a fallback plan", why)
        plan = fallback_plan(
            instruction, max_section_words=self.max_section_words, max_steps=self.max_steps,
            default_words=self.default_section_words,
        )  # fmt: skip
        plan.meta["reason"] = why
        return plan, usage

    def _max_steps(self, instruction: Instruction) -> int:
        if instruction.length:  # sections of at least ~100 words: the paper asks for 200-1000
            return max(1, min(self.max_steps, math.ceil(instruction.length / 100)))
        return self.max_steps

    def _check_lines(self, plan: Plan) -> str | None:
        """The original's only check: it skips plans of more than 50 lines (and an empty reply gives nothing)."""
        if len(plan.steps) > self.max_steps:
            return f"plan has {len(plan.steps)} lines (more than {self.max_steps})"
        if not any(s.main_point.strip() for s in plan.steps):
            return "empty plan"
        return None

    def _checked(self, steps: list[PlanStep], instruction: Instruction) -> tuple[list[PlanStep], str | None]:
        """The steps with every budget filled in (and fitted, with ``fit_budgets``), and why they are unusable.

        Budgets far from the requested length are unusable (fitted ones never are); so are budgets over twice
        ``max_section_words``, after fitting.
        """
        if len(steps) > self.max_steps:
            return steps, f"plan has {len(steps)} steps (more than {self.max_steps})"
        if any(s.word_count == 0 for s in steps):
            return steps, "a step has a word count of 0"
        steps = self._budgets(steps, instruction)
        counts = [s.word_count or 0 for s in steps]
        if self.max_section_words and max(counts) > 2 * self.max_section_words:
            return (
                steps,
                f"a step's word count {max(counts)} is over twice the section maximum {self.max_section_words}",
            )
        if instruction.length:
            if max(counts) > 4 * instruction.length:
                return steps, f"a step's word count {max(counts)} exceeds 4x the requested {instruction.length}"
            if not 0.25 <= sum(counts) / instruction.length <= 4:
                return steps, f"word counts total {sum(counts)}, far from the requested {instruction.length}"
        return steps, None

    def _budgets(self, steps: list[PlanStep], instruction: Instruction) -> list[PlanStep]:
        """Give steps without a word count an equal share of what the requested length leaves over; with
        ``fit_budgets``, scale all of them to sum to the requested length."""
        missing = [s for s in steps if s.word_count is None]
        if missing:
            share = self.default_section_words
            if instruction.length:
                left = instruction.length - sum(s.word_count or 0 for s in steps)
                share = max(50, left // len(missing)) if left > 0 else self.default_section_words
            steps = [s if s.word_count is not None else s.model_copy(update={"word_count": share}) for s in steps]
        if self.fit_budgets and instruction.length:
            counts = fit_counts([s.word_count or 0 for s in steps], instruction.length)
            steps = [s.model_copy(update={"word_count": c}) for s, c in zip(steps, counts, strict=True)]
        return steps

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

        Raises :class:`lw_core.ClientError` when a call fails for good and :class:`WriteError` when the model
        answers a step with nothing; sections finished before that were already passed to the callbacks.
        """
        started = time.perf_counter()
        prompts = self.prompts_for(instruction)
        sections = sorted(done, key=lambda s: s.index)
        finished = {s.index for s in sections}
        for step in plan.steps:
            if step.index in finished:
                continue
            section = await self._write_step(instruction, plan, step, sections, prompts)
            sections.append(section)
            for callback in (on_section, self.on_section):
                if callback is not None:
                    callback(instruction, section)
        return self._document(instruction, plan, sections, prompts, Usage(), time.perf_counter() - started)

    def section_tokens(self, step: PlanStep) -> int | None:
        """``max_tokens`` of a step's call: from its budget, capped by ``max_section_tokens``."""
        return self._tokens(step.word_count or self.default_section_words)

    def _tokens(self, words: int) -> int | None:
        if self.tokens_per_word is None:
            return self.max_section_tokens
        max_tokens = int(words * self.tokens_per_word) + 32
        return min(max_tokens, self.max_section_tokens) if self.max_section_tokens else max_tokens

    async def _write_step(
        self, instruction: Instruction, plan: Plan, step: PlanStep, sections: list[Section], prompts: Prompts
    ) -> Section:
        budget = step.word_count or self.default_section_words
        max_tokens = self.section_tokens(step)
        shown = sections
        if self.context_sections is not None and prompts.style == "lw":
            shown = sections[max(0, len(sections) - self.context_sections) :]
        content = prompts.write_prompt(instruction, plan, shown, step, omitted=len(sections) - len(shown))
        messages = [{"role": "user", "content": content}]
        completion = await self._complete(instruction, step.index, messages, max_tokens)
        raw = prompts.style == "paper"
        context = self._context(sections)
        answer = self._control(completion.text, completion.finish_reason, context, raw=raw)
        calls = [completion]
        values = {"step_index": step.index, "step_point": step.main_point, "step_words": budget}
        retry: list[dict[str, str]] | None = None
        if answer.reason not in SINKING and count_words(answer.text) < self.too_short_ratio * budget:
            log.info("section %d of %s: %d words for a budget of %d, re-asking", step.index, instruction.id,
                     count_words(answer.text), budget)  # fmt: skip
            follow_up = prompts.render("too_short", words=count_words(answer.text), **values)
            retry = [*messages, {"role": "assistant", "content": answer.text}, {"role": "user", "content": follow_up}]
        elif self.reask_repetition is not None and answer.repeated > self.reask_repetition:
            log.info("section %d of %s: %.0f%% repetition, re-asking", step.index, instruction.id,
                     100 * answer.repeated)  # fmt: skip
            retry = messages
        if retry is not None:
            calls.append(await self._complete(instruction, step.index, retry, max_tokens))
            other = self._control(calls[-1].text, calls[-1].finish_reason, context, raw=raw)
            if self._rank(other) > self._rank(answer):
                answer = other
        for _ in range(self.continue_short):
            words = count_words(answer.text)
            if answer.reason in SINKING or not answer.text or words >= self.too_short_ratio * budget:
                break
            follow_up = prompts.render("extend", words=words, missing=budget - words, **values)
            extend = [*messages, {"role": "assistant", "content": answer.text}, {"role": "user", "content": follow_up}]
            calls.append(await self._complete(instruction, step.index, extend, self._tokens(budget - words)))
            addition = self._control(calls[-1].text, calls[-1].finish_reason, f"{context}\n\n{answer.text}", raw=raw)
            copied = self.reask_repetition is not None and addition.repeated > self.reask_repetition
            if not addition.text or addition.reason in SINKING or copied:
                break  # nothing new: keep what there is
            text = f"{answer.text}\n\n{addition.text}"
            answer = _Answer(text, addition.reason, repeated_share(text, context))
        if answer.text == "":  # as the original, which drops the document when a reply is empty (ours are stripped)
            raise WriteError(
                f"model {self.client.model!r} answered step {step.index} of instruction {instruction.id} with nothing"
            )
        return Section(
            index=step.index,
            text=answer.text,
            word_count=count_words(answer.text),
            finish_reason=answer.reason,
            usage=sum((c.usage for c in calls), Usage()),
            attempts=len(calls),
        )

    def _context(self, sections: list[Section]) -> str:
        """The text so far, which a new section must not copy (lw-data measures repetition over the document)."""
        return "\n\n".join(s.text for s in sections)

    def _control(self, text: str, finish_reason: str | None, context: str, *, raw: bool = False) -> _Answer:
        """Trim a loop or a cut section back to a complete sentence, and measure and flag its repetition.

        ``context`` is the text written before: a section that copies it repeats itself as much as one that loops.
        ``raw`` (paper-style prompts) keeps the reply exactly as it came when nothing is trimmed: the original
        builds its next prompts from unstripped replies.
        """
        if not raw:
            text = text.strip()
        if self.trim_loops and (onset := loop_onset(text, context)) is not None:
            kept = trim_to_sentence(text[:onset])
            if kept:
                text, finish_reason = kept, "trimmed"
        if finish_reason == "length" and self.trim_cut_sections:
            kept = trim_to_sentence(text)
            if kept:
                text, finish_reason = kept, "trimmed"
        measure = self.repetition_limit is not None or self.reask_repetition is not None
        repeated = repeated_share(text, context) if measure else 0.0
        if self.repetition_limit is not None and repeated > self.repetition_limit:
            finish_reason = "repetitive"
        return _Answer(text, finish_reason, repeated)

    def _rank(self, answer: _Answer) -> tuple[bool, bool, bool, int]:
        """Which of two answers to a step to keep: not sinking the document, not cut mid-sentence, not worth a
        re-ask for repetition, then the longer."""
        tolerable = self.reask_repetition is None or answer.repeated <= self.reask_repetition
        return answer.reason != "repetitive", answer.reason != "length", tolerable, count_words(answer.text)

    async def _complete(
        self, instruction: Instruction, index: int, messages: list[dict[str, str]], max_tokens: int | None
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
        self,
        instruction: Instruction,
        plan: Plan,
        sections: list[Section],
        prompts: Prompts,
        plan_usage: Usage,
        elapsed: float,
    ) -> Document:
        text = paper_text(sections) if prompts.style == "paper" else "\n\n".join(s.text for s in sections)
        usage = sum((s.usage for s in sections), plan_usage)
        truncated = any(s.finish_reason in SINKING for s in sections)
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
        except (PlanError, ClientError, WriteError) as exc:
            if isinstance(exc, PlanError):
                plan_usage = exc.usage
            return failed_document(self, instruction, plan, written, plan_usage, exc, started)
        document.usage = document.usage + plan_usage
        document.elapsed_s = round(time.perf_counter() - started, 3)
        return document

    def run_sync(self, instruction: Instruction | str, plan: Plan | None = None) -> Document:
        """Blocking :meth:`run` for scripts and notebooks (works inside a running event loop too)."""
        return run_sync(self.run(instruction, plan))


#: The settings of each :meth:`AgentWrite.preset` (``paper`` also gets ``Prompts.paper()``).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "fallback_plan": False,
        "temperature": 1.0,
        "top_p": None,
        "max_steps": 50,
        "plan_attempts": 1,
        "plan_max_tokens": 4096,
        "tokens_per_word": None,
        "max_section_tokens": 4096,
        "too_short_ratio": 0.0,
        "fit_budgets": False,
        "trim_cut_sections": False,
        "trim_loops": False,
        "reask_repetition": None,
        "repetition_limit": None,
    },
    "lw": {},
    "small": {
        "max_section_words": 150,
        "tokens_per_word": 1.5,
        "too_short_ratio": 0.8,
        "continue_short": 2,
        "context_sections": 0,
    },
}
_SAMPLING: dict[str, dict[str, Any]] = {"small": {"repeat_penalty": 1.15}}


def preset_sampling(name: str) -> dict[str, Any]:
    """The server-specific sampling a preset was measured with, for the client's ``extra_body`` (llama.cpp names).

    >>> preset_sampling("small"), preset_sampling("paper")
    ({'repeat_penalty': 1.15}, {})
    """
    return dict(_SAMPLING.get(name, {}))


#: The paper's section size (its plan prompt: "no less than 200 words and no more than 1000 words").
PAPER_SECTION_WORDS = (200, 1000)
_FALLBACK_POINTS = {
    "en": (
        "Answer the whole request in one coherent piece that covers its subject fully.",
        "Opening: introduce the subject of the request and what the text will cover.",
        "Part {k} of {n}: develop the next aspect of the subject in depth, with concrete details and examples, "
        "without repeating earlier parts.",
        "Closing: bring the text to a natural end, drawing its parts together.",
    ),
    "zh": (
        "完整回应写作要求，写成一篇连贯的文字，全面覆盖主题。",
        "开篇：引出写作要求的主题，并说明全文将涉及的内容。",
        "第{k}部分（共{n}部分）：深入展开主题的下一个方面，给出具体的细节和例子，不重复前文。",
        "结尾：自然地收束全文，把各部分联系起来。",
    ),
}


def fallback_plan(
    instruction: Instruction,
    *,
    max_section_words: int | None = None,
    max_steps: int = 50,
    default_words: int = 500,
) -> Plan:
    """A plan that needs no model: the requested length split into equal sections of the paper's size (200–1000
    words, at most ``max_section_words``) with generic main points in the instruction's language (English or
    Chinese), marked ``meta["source"] == "fallback"``. Without a requested length: one ``default_words`` section.

    >>> plan = fallback_plan(Instruction(prompt="Write about tides.", length=1200), max_section_words=500)
    >>> [s.word_count for s in plan.steps], plan.meta["source"]
    ([400, 400, 400], 'fallback')
    >>> plan.steps[0].main_point
    'Opening: introduce the subject of the request and what the text will cover.'
    """
    largest = min(PAPER_SECTION_WORDS[1], max_section_words or PAPER_SECTION_WORDS[1])
    length = instruction.length or default_words
    n = max(1, min(max_steps, math.ceil(length / largest)))
    single, opening, middle, closing = _FALLBACK_POINTS.get(instruction.language or "en", _FALLBACK_POINTS["en"])
    points = [single] if n == 1 else [opening, *(middle.format(k=k, n=n) for k in range(2, n)), closing]
    counts = fit_counts([1] * n, length)
    steps = [
        PlanStep(index=k, main_point=p, word_count=c) for k, (p, c) in enumerate(zip(points, counts, strict=True), 1)
    ]
    return Plan(instruction_id=instruction.id, steps=steps, meta={"source": "fallback"})


def is_fallback(plan: Plan | None) -> bool:
    """Whether a plan is :func:`fallback_plan`'s rather than the planner's."""
    return plan is not None and plan.meta.get("source") == "fallback"


def fit_counts(counts: list[int], total: int) -> list[int]:
    """Scale word counts to sum to ``total`` (largest remainders get the rounding), each at least 1.

    >>> fit_counts([200, 200, 100], 1000)
    [400, 400, 200]
    >>> fit_counts([1, 1, 1], 100)
    [34, 33, 33]
    """
    have = sum(counts)
    if have <= 0:
        return [max(1, total // len(counts))] * len(counts)
    exact = [c * total / have for c in counts]
    fitted = [math.floor(x) for x in exact]
    order = sorted(range(len(counts)), key=lambda i: exact[i] - fitted[i], reverse=True)
    for i in order[: total - sum(fitted)]:
        fitted[i] += 1
    return [max(1, c) for c in fitted]


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
