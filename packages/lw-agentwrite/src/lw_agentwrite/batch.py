"""Run AgentWrite over many instructions: bounded concurrency, a resumable step cache, accounting.

Every finished call is appended to a step cache (JSONL keyed by instruction id and step: 0 is the
plan, n is section n) before anything else happens, so a run killed at any moment (even
``kill -9``) resumes without re-spending any finished call. A cached section carries a hash of the
plan it was written for and is reused only with that same plan, so an edited plan never gets
sections of the old one. Finished instructions are appended to the output once; a resumed run
skips ids already there, so nothing is written twice. Failed instructions are retried by the next
run (their records are removed from the output first), reusing every step they had finished.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

from lw_core import ClientError, Document, Instruction, JsonlWriter, Plan, Section, Usage, atomic_write, read_jsonl
from pydantic import BaseModel

from lw_agentwrite.agent import AgentWrite, failed_document, is_fallback
from lw_agentwrite.errors import AgentWriteError, PlanError, WriteError

log = logging.getLogger(__name__)
Mode = Literal["plan", "write", "run"]


class CachedStep(BaseModel):
    """One finished call in the step cache: the plan (``step=0``) or a section, with the hash of its plan."""

    id: str
    step: int
    plan_hash: str = ""
    plan: Plan | None = None
    section: Section | None = None
    usage: Usage = Usage()


@dataclass
class _Cached:
    """What the cache holds for one instruction: its first plan, and sections by (plan hash, step)."""

    plan: CachedStep | None = None
    sections: dict[tuple[str, int], Section] = field(default_factory=dict)

    def sections_for(self, plan: Plan) -> list[Section]:
        key = plan_hash(plan)
        return [section for (h, _), section in sorted(self.sections.items(), key=lambda kv: kv[0][1]) if h == key]


class _Record(BaseModel):
    """Just enough of an output line to know which instruction it finished, and how."""

    id: str = ""
    instruction_id: str = ""
    status: str | None = None
    error: str | None = None


def plan_hash(plan: Plan) -> str:
    """A short hash of what a plan asks for (each step's index, main point and word count).

    >>> from lw_core import PlanStep
    >>> a = Plan(steps=[PlanStep(index=1, main_point="Tides", word_count=300)])
    >>> b = Plan(steps=[PlanStep(index=1, main_point="Tides", word_count=400)])
    >>> plan_hash(a) == plan_hash(a.model_copy(update={"raw": "other text"})), plan_hash(a) == plan_hash(b)
    (True, False)
    """
    steps = [[s.index, s.main_point, s.word_count] for s in plan.steps]
    return hashlib.sha256(json.dumps(steps, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


@dataclass
class BatchStats:
    """What a batch run did and what it cost."""

    total: int = 0
    skipped: int = 0
    retried: int = 0
    done: int = 0
    truncated: int = 0
    failed: int = 0
    fallback_plans: int = 0
    steps_reused: int = 0
    words: int = 0
    usage: Usage = field(default_factory=Usage)
    errors: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0
    started: float = field(default_factory=time.perf_counter, repr=False)

    @property
    def finished(self) -> int:
        return self.done + self.truncated + self.failed

    @property
    def words_per_s(self) -> float:
        return self.words / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.usage.completion_tokens / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def cached_fraction(self) -> float | None:
        """Share of prompt tokens the server served from its prefix cache (None if it reports none)."""
        return self.usage.cached_fraction if self.usage.cached_tokens else None

    def summary(self) -> str:
        cached = f"{self.cached_fraction:.0%}" if self.cached_fraction is not None else "n/a"
        retried = f", {self.retried} failed before and retried" if self.retried else ""
        fallback = f", {self.fallback_plans} from a fallback plan" if self.fallback_plans else ""
        return (
            f"{self.finished}/{self.total} instructions ({self.done} done, {self.truncated} truncated, "
            f"{self.failed} failed, {self.skipped} already finished{retried}{fallback}); {self.words} words in "
            f"{self.elapsed_s:.1f}s "
            f"({self.words_per_s:.1f} words/s, {self.tokens_per_s:.1f} tokens/s); {self.usage.calls} calls, "
            f"{self.steps_reused} steps reused from the cache, prefix-cache hits {cached}"
        )


def default_cache_path(out: str | os.PathLike[str]) -> Path:
    """``writes.jsonl`` keeps its step cache next to it in ``writes.steps.jsonl``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.steps.jsonl")


def _load_cache(path: Path) -> dict[str, _Cached]:
    cache: dict[str, _Cached] = {}
    if not path.exists():
        return cache
    for entry in read_jsonl(path, CachedStep, on_invalid="skip"):
        cached = cache.setdefault(entry.id, _Cached())
        if entry.step == 0 and entry.plan is not None:
            cached.plan = cached.plan or entry
        elif entry.section is not None and entry.plan_hash:  # sections of caches without plan hashes are not reused
            cached.sections.setdefault((entry.plan_hash, entry.step), entry.section)
    return cache


def _finished(path: Path) -> dict[str, _Record]:
    """The output's records by instruction id (the last line of an id wins)."""
    if not path.exists():
        return {}
    return {r.id or r.instruction_id: r for r in read_jsonl(path, _Record, on_invalid="skip")}


def _drop_failed(path: Path) -> None:
    """Rewrite ``path`` without its ``failed`` records (atomically: old file or new, never half), so they are retried.

    Every other line is kept byte for byte, streamed (the file may be large); a torn last line goes (the next append
    would cut it off anyway).
    """

    def kept(fh: TextIO) -> Iterator[str]:
        for line in fh:
            try:
                failed = json.loads(line).get("status") == "failed"
            except (json.JSONDecodeError, AttributeError):
                failed = not line.endswith("\n")  # torn last line
            if not failed:
                yield line

    with path.open(encoding="utf-8") as fh:
        atomic_write(path, kept(fh))


async def run_batch(
    agent: AgentWrite,
    instructions: Iterable[Instruction],
    out: str | os.PathLike[str],
    *,
    mode: Mode = "run",
    plans: Mapping[str, Plan] | None = None,
    cache: str | os.PathLike[str] | None = None,
    concurrency: int = 8,
    retry_failed: bool = True,
    progress: Callable[[BatchStats], None] | None = None,
) -> BatchStats:
    """Plan and/or write every instruction, appending one record per instruction to ``out``.

    ``mode="plan"`` writes :class:`lw_core.Plan` records; ``"write"`` writes documents from the
    given ``plans`` (keyed by instruction id); ``"run"`` plans and writes. Each instruction ends
    ``done``, ``truncated`` or ``failed`` with its reason (also in ``stats.errors``); ``stats.fallback_plans``
    counts those planned by :func:`~lw_agentwrite.agent.fallback_plan` (the agent's ``fallback_plan``); failed plans are
    not written to a plans file, so the next ``plan`` run retries them. Failed documents already in
    ``out`` are retried (``retry_failed``, the default; their old records are removed first, so ``out``
    keeps one record per instruction); with ``retry_failed=False`` they are skipped like finished ones.
    ``progress`` is called after every step.
    """
    out = Path(out)
    cache_path = Path(cache) if cache is not None else default_cache_path(out)
    finished = _finished(out)
    failed_before = {i for i, r in finished.items() if r.status == "failed"}
    if retry_failed and failed_before:
        for i in sorted(failed_before):
            log.info("retrying instruction %s, which failed before: %s", i, finished[i].error)
        _drop_failed(out)
        finished = {i: r for i, r in finished.items() if i not in failed_before}
    cached = _load_cache(cache_path)
    todo: list[Instruction] = []
    seen: set[str] = set()
    stats = BatchStats()
    for instruction in instructions:
        if instruction.id in seen:
            log.warning("instruction %s appears twice in the input; running it once", instruction.id)
            continue
        seen.add(instruction.id)
        stats.total += 1
        if instruction.id in finished:
            stats.skipped += 1
        else:
            stats.retried += instruction.id in failed_before
            todo.append(instruction)

    semaphore = asyncio.Semaphore(concurrency)
    with JsonlWriter(out) as out_writer, JsonlWriter(cache_path) as cache_writer:

        def tick() -> None:
            stats.elapsed_s = time.perf_counter() - stats.started
            if progress is not None:
                progress(stats)

        def remember(instruction: Instruction, section: Section, key: str) -> None:
            step = CachedStep(
                id=instruction.id, step=section.index, plan_hash=key, section=section, usage=section.usage
            )
            cache_writer.write(step)
            stats.usage += section.usage
            stats.words += section.word_count
            tick()

        async def one(instruction: Instruction) -> None:
            async with semaphore:
                record = await _one(agent, instruction, mode, plans, cached.get(instruction.id, _Cached()),
                                    cache_writer, remember, stats)  # fmt: skip
            stats.fallback_plans += is_fallback(record if isinstance(record, Plan) else record.plan)
            if isinstance(record, Plan):
                stats.done += 1
            else:
                setattr(stats, record.status, getattr(stats, record.status) + 1)
                if record.error:
                    stats.errors[instruction.id] = record.error
            if mode != "plan" or isinstance(record, Plan):  # a plans file holds plans only; failures are retried
                out_writer.write(record)
            tick()

        await asyncio.gather(*(one(i) for i in todo))
    tick()
    return stats


async def _one(
    agent: AgentWrite,
    instruction: Instruction,
    mode: Mode,
    plans: Mapping[str, Plan] | None,
    cached: _Cached,
    cache_writer: JsonlWriter,
    remember: Callable[[Instruction, Section, str], None],
    stats: BatchStats,
) -> Plan | Document:
    started = time.perf_counter()
    plan: Plan | None = None
    plan_usage = Usage()
    sections: list[Section] = []
    key = ""

    def keep(instruction: Instruction, section: Section) -> None:
        sections.append(section)
        remember(instruction, section, key)

    try:
        if mode == "write":
            plan = (plans or {}).get(instruction.id)
            if plan is None:
                raise PlanError(f"no plan for instruction {instruction.id} in the plans file; run `plan` first")
        elif cached.plan is not None and cached.plan.plan is not None:
            plan, plan_usage = cached.plan.plan, cached.plan.usage
            stats.steps_reused += 1
        else:
            try:
                plan, plan_usage = await agent.plan_with_usage(instruction)
            except PlanError as exc:
                stats.usage += exc.usage
                plan_usage = exc.usage
                raise
            cache_writer.write(CachedStep(id=instruction.id, step=0, plan_hash=plan_hash(plan), plan=plan,
                                          usage=plan_usage))  # fmt: skip
            stats.usage += plan_usage
        if mode == "plan":
            return plan
        key = plan_hash(plan)
        sections = cached.sections_for(plan)
        if len(sections) < len(cached.sections):
            log.info("instruction %s: %d cached sections belong to another plan; not reused", instruction.id,
                     len(cached.sections) - len(sections))  # fmt: skip
        stats.steps_reused += len(sections)
        document = await agent.write(instruction, plan, done=sections, on_section=keep)
    except (PlanError, ClientError, WriteError) as exc:
        log.warning("instruction %s failed: %s", instruction.id, exc)
        return failed_document(agent, instruction, plan, sections, plan_usage, exc, started)
    document.usage = document.usage + plan_usage
    document.elapsed_s = round(time.perf_counter() - started, 3)
    return document


def read_plans(path: str | os.PathLike[str]) -> dict[str, Plan]:
    """Plans from a ``plan`` run, keyed by instruction id (the first plan of an id wins); a file without one is an
    error (every instruction would fail for want of a plan)."""
    plans: dict[str, Plan] = {}
    for plan in read_jsonl(path, Plan):
        plans.setdefault(plan.instruction_id, plan)
    if not plans:
        raise AgentWriteError(f"{path}: holds no plans; give the output of `lw-agentwrite plan`")
    return plans
