"""`lw reproduce`: the paper's pipeline, composed from the packages, in a resumable run folder.

1. **instructions** — long-writing instructions (lw-data's seeded generator or a file) and short general ones.
2. **agentwrite** — the teacher plans and writes each long instruction section by section (AgentWrite); short
   requests get one direct section; general instructions get a direct answer (the general chats of the mix).
3. **data** — documents become filtered SFT records (lw-data), mixed with the general chats.
4. **bench_base** — LongBench-Write (and LongWrite-Ruler) of the base student: predictions, judgments, report.
5. **train** — SFT with lw-train on the mix.
6. **bench_sft** — the same benchmark, same backend and sampling, on the trained model.
7. **dpo**, **bench_dpo** — the paper's DPO stage (sampled answers, judged, paired; DPO), when enabled.
8. **report** — the comparison (lw-bench): table per length range, length scatter, Ruler curve, degenerate share,
   and the time and tokens of every stage.

Every stage writes into ``runs/<name>/<stage>/`` and leaves a ``done`` marker with its summary; run the command
again to resume after a crash: finished stages are skipped and an interrupted one resumes from its records
(AgentWrite's step cache, predictions and judgments are append-only), so no finished call is spent again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lw_agentwrite import AgentWrite, preset_sampling, run_batch
from lw_bench import compare_runs, judge, load_items, predict, read_judgments, read_predictions, score_run
from lw_bench import write_report as write_bench_report
from lw_core import (
    BenchItem,
    BenchReport,
    ChatClient,
    Instruction,
    JsonlWriter,
    Plan,
    PlanStep,
    SFTRecord,
    atomic_write,
    count_words,
    read_jsonl,
    repeated_ngram_ratio,
    write_jsonl,
)

from lw_reproduce import resolve
from lw_reproduce.config import BenchSection, ReproduceConfig
from lw_reproduce.endpoints import Endpoints
from lw_reproduce.errors import PipelineError
from lw_reproduce.rundir import RunDir

log = logging.getLogger(__name__)
Say = Callable[[str], None]

#: Stages in order; ``--from``/``--until`` take these names.
STAGES = ("instructions", "agentwrite", "data", "bench_base", "train", "bench_sft", "dpo", "bench_dpo", "report")


def selected_stages(config: ReproduceConfig, start: str | None = None, stop: str | None = None) -> list[str]:
    """The stages this configuration runs, from ``start`` to ``stop`` inclusive.

    >>> selected_stages(ReproduceConfig(), "train", "bench_sft")
    ['train', 'bench_sft']
    """
    for name in (start, stop):
        if name is not None and name not in STAGES:
            raise PipelineError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    enabled = [
        s
        for s in STAGES
        if not (s in ("train", "bench_sft") and not config.train.enabled)
        and not (s in ("dpo", "bench_dpo") and not (config.dpo.enabled and config.train.enabled))
    ]
    first = STAGES.index(start) if start else 0
    last = STAGES.index(stop) if stop else len(STAGES) - 1
    return [s for s in enabled if first <= STAGES.index(s) <= last]


def reproduce(
    config: ReproduceConfig,
    runs: Path = Path("runs"),
    *,
    fresh: bool = False,
    start: str | None = None,
    stop: str | None = None,
    say: Say = print,
) -> RunDir:
    """Run (or resume) the selected stages; returns the run folder."""
    stages = selected_stages(config, start, stop)
    run = RunDir.open(runs, config, fresh=fresh)
    say(f"run folder: {run.root} (profile {config.profile}: {config.purpose})")
    started = time.perf_counter()
    with Endpoints(run.stage("logs")) as endpoints:
        pipeline = _Pipeline(run, endpoints, say)
        for name in stages:
            _stage(run, name, say, getattr(pipeline, name))
    run.write_manifest(elapsed_s=round(time.perf_counter() - started, 1))
    if "report" in stages:
        say((run.root / "report" / "comparison.md").read_text(encoding="utf-8"))
    return run


def _stage(run: RunDir, name: str, say: Say, body: Callable[[], dict[str, Any]]) -> None:
    if run.is_done(name):
        say(f"{name}: done already, skipped")
        return
    say(f"{name}: running")
    started = time.perf_counter()
    summary = body()
    summary["elapsed_s"] = round(time.perf_counter() - started, 1)
    run.mark_done(name, summary)
    say(f"{name}: {json.dumps(summary, ensure_ascii=False, default=str)}")


class _Pipeline:
    def __init__(self, run: RunDir, endpoints: Endpoints, say: Say) -> None:
        self.run, self.endpoints, self.say = run, endpoints, say
        self.config = run.config

    # -- 1. instructions ----------------------------------------------------------------------
    def instructions(self) -> dict[str, Any]:
        section = self.config.instructions
        folder = self.run.stage("instructions")
        long = load_instructions(self.config)
        if not long:
            raise PipelineError(f"{section.file or 'the generator'}: no instructions")
        missing = [i.id for i in long if not i.length]
        if missing:
            raise PipelineError(f"{section.file}: instructions without a required length: {', '.join(missing[:5])}")
        general = _generated(section.general, seed=section.seed, kind="general") if section.general else []
        write_jsonl(folder / "instructions.jsonl", long)
        write_jsonl(folder / "general.jsonl", general)
        lengths = sorted(i.length or 0 for i in long)
        return {"long": len(long), "general": len(general), "min_length": lengths[0], "max_length": lengths[-1]}

    # -- 2. agentwrite ------------------------------------------------------------------------
    def agentwrite(self) -> dict[str, Any]:
        return asyncio.run(self._agentwrite())

    async def _agentwrite(self) -> dict[str, Any]:
        section = self.config.agentwrite
        folder = self.run.stage("agentwrite")
        instructions = list(read_jsonl(self.run.root / "instructions" / "instructions.jsonl", Instruction))
        sampling = preset_sampling(section.preset) if section.sampling is None else section.sampling
        client = self.endpoints.client(self.config.teacher, sampling=sampling)
        agent = AgentWrite.preset(section.preset, client, **section.options)
        direct = [i for i in instructions if (i.length or 0) <= section.direct_max_words]
        planned = [i for i in instructions if i not in direct]
        summary: dict[str, Any] = {}
        with _Progress(self.say, "agentwrite", len(instructions)) as progress:
            stats = await run_batch(
                agent, planned, folder / "documents.jsonl", concurrency=self.config.teacher.concurrency,
                progress=lambda s: progress.update(s.done + s.truncated + s.failed + s.skipped),
            )  # fmt: skip
            summary["planned"] = _batch_summary(stats)
            if direct:
                plans = {i.id: _direct_plan(i) for i in direct}
                direct_stats = await run_batch(
                    agent, direct, folder / "direct.jsonl", mode="write", plans=plans,
                    concurrency=self.config.teacher.concurrency,
                    progress=lambda s: progress.update(len(planned) + s.done + s.truncated + s.failed + s.skipped),
                )  # fmt: skip
                summary["direct"] = _batch_summary(direct_stats)
        general = list(read_jsonl(self.run.root / "instructions" / "general.jsonl", Instruction))
        if general:
            summary["general"] = await self._general_answers(client, general, folder / "general.jsonl")
        await client.aclose()
        return summary

    async def _general_answers(self, client: ChatClient, general: list[Instruction], out: Path) -> dict[str, Any]:
        """Direct answers of the teacher to short general instructions, appended as SFT records (resumable)."""
        done = {r.id for r in read_jsonl(out, SFTRecord)} if out.exists() else set()
        todo = [i for i in general if i.id not in done]
        section = self.config.agentwrite
        temperature = AgentWrite.preset(section.preset, client, **section.options).temperature
        stopped = 0
        with JsonlWriter(out) as writer, _Progress(self.say, "general answers", len(todo)) as progress:

            async def answer(instruction: Instruction) -> None:
                nonlocal stopped
                reply = await client.complete(
                    [{"role": "user", "content": instruction.prompt}],
                    max_tokens=section.general_max_tokens,
                    temperature=temperature,
                )
                stopped += reply.finish_reason == "stop"
                messages = [
                    {"role": "user", "content": instruction.prompt},
                    {"role": "assistant", "content": reply.text},
                ]
                meta = {"finish_reason": reply.finish_reason, "source": "general"}
                writer.write(SFTRecord.model_validate({"id": instruction.id, "messages": messages, "meta": meta}))
                progress.advance()

            await asyncio.gather(*(answer(i) for i in todo))
        return {"answered": len(todo), "reused": len(done), "stopped": stopped}

    # -- 3. data ------------------------------------------------------------------------------
    def data(self) -> dict[str, Any]:
        from lw_data import SFTFilters, build_sft_file, mix, plot, read_table, write_table

        section = self.config.data
        folder = self.run.stage("data")
        filters = SFTFilters(
            min_words=section.min_words,
            max_repetition=section.max_repetition,
            keep_truncated=section.keep_truncated,
            strip_plan_echo=section.strip_plan_echo,
            strip_task_talk=section.strip_task_talk,
        )
        summary: dict[str, Any] = {}
        long_files = []
        for source in ("documents", "direct"):
            documents = self.run.root / "agentwrite" / f"{source}.jsonl"
            if not documents.exists():
                continue
            kept = folder / f"{source}.sft.jsonl"
            result = build_sft_file(documents, kept, folder / f"{source}.rejects.jsonl", filters)
            summary[source] = {"read": result.read, "kept": result.kept, "rejected": result.rejected}
            if result.kept:
                long_files.append(kept)
                plot(result.measures, folder / f"{source}.stats.png", title=f"{self.config.name}: {source}")
        if not long_files:
            raise PipelineError(
                f"no AgentWrite document passed lw-data's filters (see {folder}/*.rejects.jsonl); loosen data.* "
                "or change the teacher's settings"
            )
        long = _concat([read_table(path) for path in long_files])
        general = self._general_records()
        mixed = long
        if general:
            mixed = mix(long, _frame(general), long_fraction=section.long_fraction, seed=section.seed)
        write_table(mixed, folder / "train.jsonl")
        summary.update(long=long.height, general=len(general), train=mixed.height)
        return summary

    def _general_records(self) -> list[SFTRecord]:
        """General answers that stopped by themselves and do not loop: the rest would teach not stopping."""
        path = self.run.root / "agentwrite" / "general.jsonl"
        if not path.exists():
            return []
        limit = self.config.data.max_repetition
        return [
            r
            for r in read_jsonl(path, SFTRecord)
            if r.meta.get("finish_reason") == "stop" and repeated_ngram_ratio(r.messages[-1].content) <= limit
        ]

    # -- 4./6. benchmarks ---------------------------------------------------------------------
    def bench_base(self) -> dict[str, Any]:
        return self._bench("bench_base", "base", self._base_folder())

    def bench_sft(self) -> dict[str, Any]:
        return self._bench("bench_sft", "sft", str(self.run.root / "train" / "model"))

    def bench_dpo(self) -> dict[str, Any]:
        return self._bench("bench_dpo", "dpo", str(self.run.root / "dpo" / "model"))

    def _base_folder(self) -> str:
        from lw_serve import resolve_model

        return resolve_model(self.config.student.model).hf_folder()

    def _student_model(self, folder: str, label: str) -> tuple[str, str | None]:
        """What the student server loads: on llama.cpp, the GGUF export (same outtype for every model compared)."""
        backend = self.config.student.backend
        if backend != "llamacpp":
            return folder, backend
        from lw_serve import resolve_model

        return str(resolve_model(folder, name=label).gguf_file(self.config.train.export_outtype)), backend

    def _bench(self, stage: str, label: str, folder: str) -> dict[str, Any]:
        return asyncio.run(self._bench_async(stage, label, folder))

    async def _bench_async(self, stage: str, label: str, folder: str) -> dict[str, Any]:
        bench = self.config.bench
        out = self.run.stage(stage)
        student = self.config.student
        model, backend = self._student_model(folder, label)
        temperature, top_p, sampling = resolve.bench_sampling(self.config)
        client = self.endpoints.client(student, model=model, name=f"lw-{label}", sampling=sampling)
        judge_client = self.endpoints.client(self.config.judge)
        summary: dict[str, Any] = {"model": label}
        sets = [("longbench", bench.dataset, self._items(bench))]
        if bench.ruler:
            sets.append(("ruler", "longwrite_ruler", self._ruler_items(bench)))
        for name, dataset, items in sets:
            folder_ = out / name
            predictions_path, judgments_path = folder_ / "predictions.jsonl", folder_ / "judgments.jsonl"
            with _Progress(self.say, f"{stage} {name} predictions", len(items)) as progress:
                for cap, group in _token_caps(items, bench, student.context_length):
                    await predict(
                        client, group, predictions_path, max_tokens=cap, temperature=temperature,
                        top_p=top_p, concurrency=student.concurrency, on_record=lambda _: progress.advance(),
                    )  # fmt: skip
            predictions = [p for p in read_predictions(predictions_path) if p.id in {i.id for i in items}]
            if name == "longbench":
                options: dict[str, Any] = (
                    {} if bench.judge_max_tokens is None else {"max_tokens": bench.judge_max_tokens}
                )
                with _Progress(self.say, f"{stage} judgments", len(predictions)) as progress:
                    await judge(
                        judge_client, predictions, judgments_path, preset=bench.judge, retries=bench.judge_retries,
                        concurrency=self.config.judge.concurrency, **options,
                    )  # fmt: skip
            judgments = read_judgments(judgments_path) if judgments_path.exists() else []
            report = score_run(
                predictions, judgments, items=items, model=label, judge=judge_client.model, dataset=dataset,
                repetition_threshold=self.config.data.max_repetition,
            )  # fmt: skip
            write_bench_report(report, folder_)
            summary[name] = {
                "items": len(items),
                "predictions": len(predictions),
                "S_l": report.overall.length_score,
                "S_q": report.overall.quality_score,
                "S": report.overall.score,
                "degenerate": report.meta.get("degenerate"),
                "completion_tokens": sum(p.usage.completion_tokens for p in predictions),
            }
        await client.aclose()
        await judge_client.aclose()
        self.endpoints.stop(model, backend, name=f"lw-{label}")
        return summary

    def _items(self, bench: BenchSection) -> list[BenchItem]:
        items = load_items(bench.dataset, data_dir=bench.data_dir)
        if bench.max_required is not None:
            items = [i for i in items if i.length <= bench.max_required]
        return items[: bench.items] if bench.items else items

    def _ruler_items(self, bench: BenchSection) -> list[BenchItem]:
        items = load_items("longwrite_ruler", data_dir=bench.data_dir)
        if bench.ruler_max_required is not None:
            items = [i for i in items if i.length <= bench.ruler_max_required]
        if bench.ruler_items_per_length:
            per_length: dict[int, list[BenchItem]] = defaultdict(list)
            for item in items:
                per_length[item.length].append(item)
            items = [i for group in per_length.values() for i in group[: bench.ruler_items_per_length]]
        return items

    # -- 5. train -----------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        data, output_dir = self.run.root / "data" / "train.jsonl", self.run.stage("train") / "model"
        sft = resolve.sft_config(self.config, model=self._base_folder(), data=data, output_dir=output_dir)
        result = resolve.train(self.config, sft)  # in this process, or `accelerate launch` of train.processes
        return {"model": str(result.output_dir), **result.summary}

    # -- 7. dpo -------------------------------------------------------------------------------
    def dpo(self) -> dict[str, Any]:
        return asyncio.run(self._dpo())

    async def _dpo(self) -> dict[str, Any]:
        """The paper's DPO data: several sampled answers of the SFT model per instruction, judged and paired."""
        from lw_data import DPORule, build_dpo, mix, read_table, write_table
        from lw_train import DPOConfig, train_dpo

        section, bench = self.config.dpo, self.config.bench
        folder = self.run.stage("dpo")
        instructions = list(read_jsonl(self.run.root / "instructions" / "instructions.jsonl", Instruction))
        items = [
            BenchItem(id=i.id, prompt=i.prompt, length=i.length or 1) for i in instructions[: section.instructions]
        ]
        model, backend = self._student_model(str(self.run.root / "train" / "model"), "sft")
        client = self.endpoints.client(self.config.student, model=model, name="lw-sft", sampling=bench.sampling)
        judge_client = self.endpoints.client(self.config.judge)
        for cap, group in _token_caps(items, bench, self.config.student.context_length):
            await predict(client, group, folder / "samples.jsonl", samples=section.samples, max_tokens=cap,
                          temperature=bench.temperature, top_p=bench.top_p)  # fmt: skip
        samples = read_predictions(folder / "samples.jsonl")
        await judge(judge_client, samples, folder / "judgments.jsonl", preset=bench.judge)
        pairs, rejects = build_dpo(
            read_table(folder / "samples.jsonl"), read_table(folder / "judgments.jsonl"), DPORule(seed=section.seed)
        )
        if section.general_pairs is not None:
            pairs = mix(
                pairs, read_table(section.general_pairs), long_fraction=section.long_fraction, seed=section.seed
            )
        write_table(pairs, folder / "pairs.jsonl")
        write_table(rejects, folder / "rejects.jsonl")
        await client.aclose()
        await judge_client.aclose()
        self.endpoints.stop(model, backend, name="lw-sft")
        settings = {
            **section.settings,
            "model": str(self.run.root / "train" / "model"),
            "data": str(folder / "pairs.jsonl"),
            "output_dir": str(folder / "model"),
            "resume": True,
        }
        result = train_dpo(DPOConfig.validated(settings))
        return {"pairs": pairs.height, "unpaired": rejects.height, "model": str(result.output_dir), **result.summary}

    # -- 8. report ----------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        folder = self.run.stage("report")
        runs = {label: self._report(stage, "longbench") for label, stage in _LABELS}
        ruler = {label: self._report(stage, "ruler") for label, stage in _LABELS} if self.config.bench.ruler else None
        small_judge = not self.config.judge.base_url
        paths = compare_runs(
            {k: v for k, v in runs.items() if v is not None or k == "base"}, folder,
            ruler=ruler, small_judge=small_judge, threshold=self.config.data.max_repetition,
        )  # fmt: skip
        stages = _stage_table(self.run)
        heading = f"**Run {self.config.name}** (profile {self.config.profile}): {self.config.purpose}.\n\n"
        body = paths["md"].read_text(encoding="utf-8")
        atomic_write(paths["md"], heading + body + "\n## Stages\n\n" + stages + "\n")
        return {label: r.overall.length_score if r else None for label, r in runs.items()}

    def _report(self, stage: str, name: str) -> BenchReport | None:
        path = self.run.root / stage / name / "report.json"
        return BenchReport.model_validate_json(path.read_text(encoding="utf-8")) if path.exists() else None


_LABELS = (("base", "bench_base"), ("sft", "bench_sft"), ("dpo", "bench_dpo"))


def load_instructions(config: ReproduceConfig) -> list[Instruction]:
    """The run's long-writing instructions: the configured file, else lw-data's seeded generator."""
    section = config.instructions
    if section.file is not None:
        return list(read_jsonl(section.file, Instruction))
    return _generated(
        section.n, seed=section.seed, min_words=section.min_words, max_words=section.max_words,
        languages=tuple(section.languages),
    )  # fmt: skip


def _generated(n: int, **options: Any) -> list[Instruction]:
    from lw_data import generate_instructions

    return [Instruction.model_validate(row) for row in generate_instructions(n, **options).to_dicts()]


def _batch_summary(stats: Any) -> dict[str, Any]:
    return {
        "instructions": stats.total,
        "done": stats.done,
        "truncated": stats.truncated,
        "failed": stats.failed,
        "skipped": stats.skipped,
        "words": stats.words,
        "completion_tokens": stats.usage.completion_tokens,
        "errors": stats.errors,
    }


def _direct_plan(instruction: Instruction) -> Plan:
    """One section that is the whole answer: how a short request is answered directly through AgentWrite."""
    step = PlanStep(index=1, main_point=instruction.prompt, word_count=instruction.length)
    return Plan(instruction_id=instruction.id, steps=[step])


def _token_caps(
    items: list[BenchItem], bench: BenchSection, context_length: int | None
) -> Iterable[tuple[int, list[BenchItem]]]:
    """Items grouped by their new-token cap: ``max_tokens``, tightened per item by ``tokens_per_required_word``
    (an answer over 4x the required length scores S_l 0 whatever its length) and by the model's context."""
    groups: dict[int, list[BenchItem]] = defaultdict(list)
    for item in items:
        cap = bench.max_tokens
        if bench.tokens_per_required_word:
            cap = min(cap, math.ceil(item.length * bench.tokens_per_required_word))
        if context_length:
            cap = min(cap, context_length - 2 * count_words(item.prompt) - 64)
        groups[max(cap, 16)].append(item)
    return sorted(groups.items())


def _concat(frames: list[Any]) -> Any:
    import polars as pl

    return pl.concat(frames, how="diagonal_relaxed")


def _frame(records: list[SFTRecord]) -> Any:
    import polars as pl

    return pl.DataFrame([r.model_dump(mode="json") for r in records])


def _stage_table(run: RunDir) -> str:
    lines = ["| stage | minutes | summary |", "| --- | ---: | --- |"]
    for name in STAGES:
        if run.is_done(name):
            summary = run.summary(name)
            minutes = float(summary.pop("elapsed_s", 0.0)) / 60
            lines.append(f"| {name} | {minutes:.1f} | {_brief(summary)} |")
    return "\n".join(lines)


def _brief(summary: dict[str, Any], prefix: str = "") -> str:
    """A stage summary as ``key value`` pairs, one level of nesting, paths and long lists left out. Floats keep
    one decimal from 10 up and three significant digits below, so a fill of 0.9666 does not read as 1.0.

    >>> _brief({"long": 3, "S_l": 55.4761, "ruler": {"S_l": 88.2, "items": 1}, "model": "/tmp/x/model"})
    'long 3, S_l 55.5, ruler.S_l 88.2, ruler.items 1'
    >>> _brief({"pack_fill": 0.9666, "final_loss": 1.30531, "tokens_per_s": 132.12})
    'pack_fill 0.967, final_loss 1.31, tokens_per_s 132.1'
    """
    parts = []
    for key, value in summary.items():
        if isinstance(value, dict) and not prefix:
            inner = _brief(value, f"{key}.")
            parts += [inner] if inner else []
        elif isinstance(value, bool | int):
            parts.append(f"{prefix}{key} {value}")
        elif isinstance(value, float):
            parts.append(f"{prefix}{key} {value:.1f}" if abs(value) >= 10 else f"{prefix}{key} {value:.3g}")
        elif isinstance(value, str) and "/" not in value and len(value) <= 40:
            parts.append(f"{prefix}{key} {value}")
    return ", ".join(parts)


class _Progress:
    """A rich progress bar on a terminal; a line per 10 % elsewhere (logs, CI)."""

    def __init__(self, say: Say, label: str, total: int) -> None:
        from lw_core.cli import progress_bar
        from rich.console import Console

        self.say, self.label, self.total, self.done, self._shown = say, label, total, 0, 0
        self._bar = progress_bar() if Console(stderr=True).is_terminal else None  # the bar of every lw command
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self) -> None:
        self.update(self.done + 1)

    def update(self, done: int) -> None:
        self.done = done
        if self._bar is not None:
            self._bar.update(self._task, completed=done)
        elif self.total and done * 10 // self.total > self._shown:
            self._shown = done * 10 // self.total
            self.say(f"{self.label}: {done}/{self.total}")


def stage_records(run: RunDir) -> dict[str, dict[str, int]]:
    """Record counts of each stage's JSONL files (for `lw reproduce status`)."""
    counts: dict[str, dict[str, int]] = {}
    for name in STAGES:
        folder = run.root / name
        if folder.is_dir():
            counts[name] = {
                str(p.relative_to(folder)): sum(1 for line in p.open("rb") if line.strip())
                for p in sorted(folder.rglob("*.jsonl"))
            }
    return counts


__all__ = ["STAGES", "PipelineError", "load_instructions", "reproduce", "selected_stages", "stage_records"]
