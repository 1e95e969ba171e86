"""Run AgentWrite over many instructions: bounded concurrency, a resumable step cache, accounting.

Every finished call is appended to a step cache (JSONL keyed by instruction id and step: 0 is the
plan, n is section n) before anything else happens, so a run killed at any moment (even
``kill -9``) resumes without re-spending any finished call. Finished instructions are appended
to the output once; a resumed run skips ids already there, so nothing is written twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lw_core import ClientError, Document, Instruction, JsonlWriter, Plan, Section, Usage, read_jsonl
from pydantic import BaseModel

from lw_agentwrite.agent import AgentWrite, PlanError, failed_document

log = logging.getLogger(__name__)
Mode = Literal["plan", "write", "run"]


class CachedStep(BaseModel):
    """One finished call in the step cache: the plan (``step=0``) or a section."""

    id: str
    step: int
    plan: Plan | None = None
    section: Section | None = None
    usage: Usage = Usage()


class _Record(BaseModel):
    """Just enough of an output line to know which instruction it finished."""

    id: str = ""
    instruction_id: str = ""


@dataclass
class BatchStats:
    """What a batch run did and what it cost."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    truncated: int = 0
    failed: int = 0
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
        return (
            f"{self.finished}/{self.total} instructions ({self.done} done, {self.truncated} truncated, "
            f"{self.failed} failed, {self.skipped} already finished); {self.words} words in {self.elapsed_s:.1f}s "
            f"({self.words_per_s:.1f} words/s, {self.tokens_per_s:.1f} tokens/s); {self.usage.calls} calls, "
            f"{self.steps_reused} steps reused from the cache, prefix-cache hits {cached}"
        )


def default_cache_path(out: str | os.PathLike[str]) -> Path:
    """``writes.jsonl`` keeps its step cache next to it in ``writes.steps.jsonl``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.steps.jsonl")


def _load_cache(path: Path) -> dict[str, dict[int, CachedStep]]:
    cache: dict[str, dict[int, CachedStep]] = {}
    if not path.exists():
        return cache
    for entry in read_jsonl(path, CachedStep, on_invalid="skip"):
        cache.setdefault(entry.id, {}).setdefault(entry.step, entry)
    return cache


def _finished_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {r.id or r.instruction_id for r in read_jsonl(path, _Record, on_invalid="skip")}


async def run_batch(
    agent: AgentWrite,
    instructions: Iterable[Instruction],
    out: str | os.PathLike[str],
    *,
    mode: Mode = "run",
    plans: Mapping[str, Plan] | None = None,
    cache: str | os.PathLike[str] | None = None,
    concurrency: int = 8,
    progress: Callable[[BatchStats], None] | None = None,
) -> BatchStats:
    """Plan and/or write every instruction, appending one record per instruction to ``out``.

    ``mode="plan"`` writes :class:`lw_core.Plan` records; ``"write"`` writes documents from the
    given ``plans`` (keyed by instruction id); ``"run"`` plans and writes. Each instruction ends
    ``done``, ``truncated`` or ``failed`` with its reason (also in ``stats.errors``); failed plans are
    not written to a plans file, so the next ``plan`` run retries them. ``progress`` is called after every step.
    """
    out = Path(out)
    cache_path = Path(cache) if cache is not None else default_cache_path(out)
    finished = _finished_ids(out)
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
            todo.append(instruction)

    semaphore = asyncio.Semaphore(concurrency)
    with JsonlWriter(out) as out_writer, JsonlWriter(cache_path) as cache_writer:

        def tick() -> None:
            stats.elapsed_s = time.perf_counter() - stats.started
            if progress is not None:
                progress(stats)

        def remember(instruction: Instruction, section: Section) -> None:
            cache_writer.write(CachedStep(id=instruction.id, step=section.index, section=section, usage=section.usage))
            stats.usage += section.usage
            stats.words += section.word_count
            tick()

        async def one(instruction: Instruction) -> None:
            async with semaphore:
                record = await _one(agent, instruction, mode, plans, cached.get(instruction.id, {}), cache_writer,
                                    remember, stats)  # fmt: skip
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
    cached: dict[int, CachedStep],
    cache_writer: JsonlWriter,
    remember: Callable[[Instruction, Section], None],
    stats: BatchStats,
) -> Plan | Document:
    started = time.perf_counter()
    plan: Plan | None = None
    plan_usage = Usage()
    sections: list[Section] = []

    def keep(instruction: Instruction, section: Section) -> None:
        sections.append(section)
        remember(instruction, section)

    try:
        if mode == "write":
            plan = (plans or {}).get(instruction.id)
            if plan is None:
                raise PlanError(f"no plan for instruction {instruction.id} in the plans file; run `plan` first")
        elif 0 in cached and cached[0].plan is not None:
            plan, plan_usage = cached[0].plan, cached[0].usage
            stats.steps_reused += 1
        else:
            try:
                plan, plan_usage = await agent.plan_with_usage(instruction)
            except PlanError as exc:
                stats.usage += exc.usage
                plan_usage = exc.usage
                raise
            cache_writer.write(CachedStep(id=instruction.id, step=0, plan=plan, usage=plan_usage))
            stats.usage += plan_usage
        if mode == "plan":
            return plan
        sections = [e.section for step, e in sorted(cached.items()) if step > 0 and e.section is not None]
        stats.steps_reused += len(sections)
        document = await agent.write(instruction, plan, done=sections, on_section=keep)
    except (PlanError, ClientError) as exc:
        log.warning("instruction %s failed: %s", instruction.id, exc)
        return failed_document(agent, instruction, plan, sections, plan_usage, exc, started)
    document.usage = document.usage + plan_usage
    document.elapsed_s = round(time.perf_counter() - started, 3)
    return document


def read_plans(path: str | os.PathLike[str]) -> dict[str, Plan]:
    """Plans from a ``plan`` run, keyed by instruction id (the first plan of an id wins)."""
    plans: dict[str, Plan] = {}
    for plan in read_jsonl(path, Plan):
        plans.setdefault(plan.instruction_id, plan)
    return plans
