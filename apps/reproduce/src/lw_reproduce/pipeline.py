"""`lw reproduce`: the paper's pipeline, composed from the packages, in a resumable run folder.

1. **instructions** — long-writing instructions (lw-data's seeded generator or a file) and short general ones.
2. **agentwrite** — the teacher plans and writes each long instruction section by section (AgentWrite); short
   requests get one direct section; general instructions get a direct answer (the general chats of the mix).
3. **data** — documents become filtered SFT records (lw-data), mixed with the general chats.
4. **bench_base** — LongBench-Write (and LongWrite-Ruler) of the base student: predictions, judgments, report.
5. **bench_agentwrite** — a reference row, when enabled: the base student answers the same items through AgentWrite.
6. **train** — SFT with lw-train on the mix.
7. **bench_sft** — the same benchmark, same backend and sampling, on the trained model.
8. **train_plan**, **bench_plan** — the paper's plan-augmented variant, when enabled: SFT on answers that write
   the AgentWrite plan first, benchmarked on the text after the plan.
9. **dpo_data**, **dpo**, **bench_dpo** — the paper's DPO stage, when enabled: answers sampled from the SFT model
   (or the base model) with the benchmark's backend and sampling, scored and paired; DPO; the benchmark.
   **dpo2_data**, **dpo2**, **bench_dpo2**: once more on the DPO model's own samples (``dpo.rounds = 2``).
   **grpo**, **bench_grpo** — GRPO when enabled (``lw_reproduce.grpo_stage``): the base (or SFT) model trained on
   generated prompts with lw-bench's rewards, then the same benchmark.
10. **report** — the comparison (lw-bench): a row per model (base, SFT, DPO, plan-augmented, AgentWrite, GRPO), table
   per length range, length scatter with loops marked, Ruler curve, and the time and tokens of every stage.

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

from lw_agentwrite import AgentWrite, BatchStats, preset_sampling, run_batch
from lw_bench import compare_runs, judge, load_items, predict, read_judgments, read_predictions, score_run
from lw_bench import write_report as write_bench_report
from lw_core import (
    DIMENSIONS,
    BenchItem,
    BenchReport,
    ChatClient,
    Document,
    Instruction,
    JsonlWriter,
    Judgment,
    OpenAIChatClient,
    Plan,
    PlanStep,
    Prediction,
    SFTRecord,
    atomic_write,
    count_words,
    loop_onset,
    read_jsonl,
    repeated_ngram_ratio,
    write_jsonl,
)

from lw_reproduce import grpo_stage, resolve
from lw_reproduce.config import BenchSection, ReproduceConfig
from lw_reproduce.endpoints import Endpoints
from lw_reproduce.errors import PipelineError
from lw_reproduce.rundir import RunDir

log = logging.getLogger(__name__)
Say = Callable[[str], None]

#: Stages in order; ``--from``/``--until`` take these names.
STAGES = (
    "instructions", "agentwrite", "data", "bench_base", "bench_agentwrite", "train", "bench_sft", "train_plan",
    "bench_plan", "dpo_data", "dpo", "bench_dpo", "dpo2_data", "dpo2", "bench_dpo2", "grpo", "bench_grpo", "report",
)  # fmt: skip


def selected_stages(config: ReproduceConfig, start: str | None = None, stop: str | None = None) -> list[str]:
    """The stages this configuration runs, from ``start`` to ``stop`` inclusive.

    >>> selected_stages(ReproduceConfig(), "train", "bench_sft")
    ['train', 'bench_sft']
    """
    for name in (start, stop):
        if name is not None and name not in STAGES:
            raise PipelineError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    enabled = [s for s in STAGES if stage_enabled(config, s)]
    first = STAGES.index(start) if start else 0
    last = STAGES.index(stop) if stop else len(STAGES) - 1
    return [s for s in enabled if first <= STAGES.index(s) <= last]


def stage_enabled(config: ReproduceConfig, stage: str) -> bool:
    """Whether a stage is switched on: SFT with ``train``, the variants and DPO with their sections."""
    dpo = config.dpo.enabled and (config.train.enabled or config.dpo.start == "base")
    switches = {
        "train": config.train.enabled,
        "bench_sft": config.train.enabled,
        "bench_agentwrite": config.agentwrite_bench.enabled,
        "train_plan": config.plan_sft.enabled,
        "bench_plan": config.plan_sft.enabled,
        **dict.fromkeys(("dpo_data", "dpo", "bench_dpo"), dpo),
        **dict.fromkeys(("dpo2_data", "dpo2", "bench_dpo2"), dpo and config.dpo.rounds >= 2),
        **dict.fromkeys(
            ("grpo", "bench_grpo"), config.grpo.enabled and (config.train.enabled or config.grpo.start == "base")
        ),
    }
    return switches.get(stage, True)


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
        return self._sft_data(self.run.stage("data"), plan_augmented=False)

    def _sft_data(self, folder: Path, *, plan_augmented: bool) -> dict[str, Any]:
        """The documents as lw-data's filtered SFT records, mixed with the general chats, in ``train.jsonl``."""
        from lw_data import build_sft_file, mix, plot, read_table, write_table

        section = self.config.data
        filters = section.filters(plan_augmented=plan_augmented)
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
            why = "; ".join(
                f"{source}: " + ", ".join(f"{n} {reason}" for reason, n in counts["rejected"].items())
                for source, counts in summary.items()
            )
            raise PipelineError(
                f"no AgentWrite document passed lw-data's filters ({why or 'no documents'}; see "
                f"{folder}/*.rejects.jsonl); loosen data.* or change the teacher's settings"
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

    # -- 4./5./7. benchmarks ---------------------------------------------------------------------
    def bench_base(self) -> dict[str, Any]:
        return self._bench("bench_base", "base", self._base_folder())

    def bench_sft(self) -> dict[str, Any]:
        return self._bench("bench_sft", "sft", str(self.run.root / "train" / "model"))

    def bench_dpo(self) -> dict[str, Any]:
        return self._bench("bench_dpo", "dpo", str(self.run.root / "dpo" / "model"))

    def bench_dpo2(self) -> dict[str, Any]:
        return self._bench("bench_dpo2", "dpo2", str(self.run.root / "dpo2" / "model"))

    def bench_plan(self) -> dict[str, Any]:
        return self._bench("bench_plan", "plan-sft", str(self.run.root / "train_plan" / "model"), answers="plan")

    def bench_agentwrite(self) -> dict[str, Any]:
        return self._bench("bench_agentwrite", "agentwrite", self._base_folder(), answers="agentwrite")

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

    def _serve_student(self, folder: str, label: str) -> tuple[OpenAIChatClient, Callable[[], None]]:
        """A client of the student model in ``folder`` on the benchmark's backend and server sampling, and what
        stops its server."""
        model, backend = self._student_model(folder, label)
        _, _, sampling = resolve.bench_sampling(self.config)
        client = self.endpoints.client(self.config.student, model=model, name=f"lw-{label}", sampling=sampling)
        return client, lambda: self.endpoints.stop(model, backend, name=f"lw-{label}")

    def _bench(self, stage: str, label: str, folder: str, *, answers: str = "direct") -> dict[str, Any]:
        return asyncio.run(self._bench_async(stage, label, folder, answers))

    async def _bench_async(self, stage: str, label: str, folder: str, answers: str = "direct") -> dict[str, Any]:
        """Predictions (``answers``: ``direct``, ``plan`` — scored on the text after the plan — or ``agentwrite``),
        judgments and the report of each benchmark set."""
        bench = self.config.bench
        out = self.run.stage(stage)
        student = self.config.student
        temperature, top_p, _ = resolve.bench_sampling(self.config)
        client, stop = self._serve_student(folder, label)
        judge_client = self.endpoints.client(self.config.judge)
        summary: dict[str, Any] = {"model": label}
        sets = [("longbench", bench.dataset, self._items(bench))]
        if bench.ruler:
            sets.append(("ruler", "longwrite_ruler", self._ruler_items(bench)))
        for name, dataset, items in sets:
            folder_ = out / name
            predictions_path, judgments_path = folder_ / "predictions.jsonl", folder_ / "judgments.jsonl"
            extra: dict[str, Any] = {}
            with _Progress(self.say, f"{stage} {name} predictions", len(items)) as progress:
                if answers == "agentwrite":
                    extra["agentwrite"] = await self._agentwrite_answers(client, items, folder_, progress)
                else:
                    for cap, group in _token_caps(items, bench, student.context_length):
                        await predict(
                            client, group, predictions_path, max_tokens=cap, temperature=temperature,
                            top_p=top_p, concurrency=student.concurrency, on_record=lambda _: progress.advance(),
                        )  # fmt: skip
            predictions = [p for p in read_predictions(predictions_path) if p.id in {i.id for i in items}]
            if answers == "plan":  # the paper scores the writing: the plan an answer starts with is not counted
                predictions, extra["answers_with_a_plan"] = _without_plans(predictions)
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
                "at_cap": report.meta.get("truncated"),
                "completion_tokens": sum(p.usage.completion_tokens for p in predictions),
                **extra,
            }
        await client.aclose()
        await judge_client.aclose()
        stop()
        return summary

    async def _agentwrite_answers(
        self, client: ChatClient, items: list[BenchItem], folder: Path, progress: _Progress
    ) -> dict[str, Any]:
        """AgentWrite at inference: each item planned and written section by section by the student, resumably
        (documents and step cache in ``folder``); ``predictions.jsonl`` is then rewritten from the documents."""
        section, teacher = self.config.agentwrite_bench, self.config.agentwrite
        preset = section.preset or teacher.preset
        options = {**(teacher.options if section.preset is None else {}), **section.options}
        agent = AgentWrite.preset(preset, client, **options)
        instructions = [
            Instruction(id=i.id, prompt=i.prompt, length=i.length, language=i.language, type=i.type) for i in items
        ]
        stats = await run_batch(
            agent, instructions, folder / "documents.jsonl", concurrency=self.config.student.concurrency,
            progress=lambda s: progress.update(s.skipped + s.finished),
        )  # fmt: skip
        documents = {d.id: d for d in read_jsonl(folder / "documents.jsonl", Document) if d.status != "failed"}
        answered = [
            _document_answer(documents[i.id], i, f"agentwrite:{client.model}") for i in items if i.id in documents
        ]
        write_jsonl(folder / "predictions.jsonl", answered)
        return {**_batch_summary(stats), "preset": preset}

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

    # -- 6. train -----------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        data, output_dir = self.run.root / "data" / "train.jsonl", self.run.stage("train") / "model"
        sft = resolve.sft_config(self.config, model=self._base_folder(), data=data, output_dir=output_dir)
        result = resolve.train(self.config, sft)  # in this process, or `accelerate launch` of train.processes
        return {"model": str(result.output_dir), **result.summary}

    # -- 8. plan-augmented SFT -----------------------------------------------------------------
    def train_plan(self) -> dict[str, Any]:
        """The paper's plan-augmented variant: the same documents, answers that start with their plan; SFT."""
        folder = self.run.stage("train_plan")
        summary = self._sft_data(folder, plan_augmented=True)
        sft = resolve.sft_config(
            self.config, model=self._base_folder(), data=folder / "train.jsonl", output_dir=folder / "model"
        )
        result = resolve.train(self.config, sft)
        return {"model": str(result.output_dir), "data": summary, **result.summary}

    # -- 9. dpo -------------------------------------------------------------------------------
    def dpo_data(self) -> dict[str, Any]:
        return asyncio.run(self._dpo_data(1))

    def dpo2_data(self) -> dict[str, Any]:
        return asyncio.run(self._dpo_data(2))

    def dpo(self) -> dict[str, Any]:
        return self._dpo_train(1)

    def dpo2(self) -> dict[str, Any]:
        return self._dpo_train(2)

    def _dpo_policy(self, round_: int) -> tuple[str, str]:
        """The model (folder, label) a DPO round samples from and starts training from."""
        if round_ == 2:
            return str(self.run.root / "dpo" / "model"), "dpo"
        if self.config.dpo.start == "base":
            return self._base_folder(), "base"
        return str(self.run.root / "train" / "model"), "sft"

    def _dpo_items(self) -> list[BenchItem]:
        """The first ``dpo.instructions`` of the run's long instructions (requiring at most ``dpo.max_required``)."""
        section = self.config.dpo
        instructions = read_jsonl(self.run.root / "instructions" / "instructions.jsonl", Instruction)
        chosen = [i for i in instructions if section.max_required is None or (i.length or 0) <= section.max_required]
        return [
            BenchItem(id=i.id, prompt=i.prompt, length=i.length or 1, language=i.language, type=i.type)
            for i in chosen[: section.instructions]
        ]

    async def _dpo_data(self, round_: int) -> dict[str, Any]:
        """``samples`` answers per instruction from the policy (appended to ``samples.jsonl``, resumable), judged
        (``judgments.jsonl``) when ``dpo.judge``, scored and paired (lw-data's ``build_dpo``) into ``pairs.jsonl``."""
        from lw_data import DPORule, build_dpo, mix, read_table, write_table

        section, bench = self.config.dpo, self.config.bench
        stage = "dpo_data" if round_ == 1 else "dpo2_data"
        folder = self.run.stage(stage)
        items = self._dpo_items()
        if not items:
            raise PipelineError(f"no instruction requires at most dpo.max_required = {section.max_required} words")
        wanted = {i.id for i in items}
        policy, label = self._dpo_policy(round_)
        temperature, top_p, _ = resolve.bench_sampling(self.config)
        client, stop = self._serve_student(policy, label)
        caps = bench.model_copy(update={"tokens_per_required_word": section.tokens_per_required_word or
                                        bench.tokens_per_required_word})  # fmt: skip
        with _Progress(self.say, f"{stage} samples", len(items) * section.samples) as progress:
            if (folder / "samples.jsonl").exists():  # resumed: the samples written before count as done
                progress.update(sum(p.id in wanted for p in read_predictions(folder / "samples.jsonl")))
            for cap, group in _token_caps(items, caps, self.config.student.context_length):
                await predict(
                    client, group, folder / "samples.jsonl", samples=section.samples, max_tokens=cap,
                    temperature=temperature, top_p=top_p, concurrency=self.config.student.concurrency,
                    on_record=lambda _: progress.advance(),
                )  # fmt: skip
        await client.aclose()
        stop()
        samples = [p for p in read_predictions(folder / "samples.jsonl") if p.id in wanted]
        judgments = None
        if section.judge:
            judge_client = self.endpoints.client(self.config.judge)
            options: dict[str, Any] = {} if bench.judge_max_tokens is None else {"max_tokens": bench.judge_max_tokens}
            with _Progress(self.say, f"{stage} judgments", len(samples)) as progress:
                await judge(
                    judge_client, samples, folder / "judgments.jsonl", preset=bench.judge,
                    retries=bench.judge_retries, concurrency=self.config.judge.concurrency,
                    on_record=lambda _: progress.advance(), **options,
                )  # fmt: skip
            await judge_client.aclose()
            judgments = _judgment_frame(read_judgments(folder / "judgments.jsonl"), wanted)
        rule = DPORule(
            seed=section.seed,
            rejected=section.rejected,
            length_measure=section.length_measure,
            length_weight=section.length_weight if section.judge else 1.0,
        )
        pairs, rejects = build_dpo(_sample_frame(samples), judgments, rule)
        if pairs.height == 0:
            raise PipelineError(
                f"no DPO pair from {len(samples)} samples of {len(items)} instructions (see {folder}/rejects.jsonl)"
            )
        summary = _dpo_summary(label, items, samples, pairs, rejects.height)
        if section.general_pairs is not None:
            general = read_table(section.general_pairs)
            pairs = mix(pairs, general, long_fraction=section.long_fraction, seed=section.seed)
            summary["pairs_with_general"] = pairs.height
        write_table(pairs, folder / "pairs.jsonl")
        write_table(rejects, folder / "rejects.jsonl")
        return summary

    def _dpo_train(self, round_: int) -> dict[str, Any]:
        """DPO (lw-train's ``train_dpo``, TRL) of the round's policy on its pairs; the reference is the policy."""
        from lw_train import DPOConfig, train_dpo

        policy, label = self._dpo_policy(round_)
        data = self.run.root / ("dpo_data" if round_ == 1 else "dpo2_data") / "pairs.jsonl"
        output_dir = self.run.stage("dpo" if round_ == 1 else "dpo2") / "model"
        settings = {**self.config.dpo.settings, "model": policy, "data": str(data), "output_dir": str(output_dir),
                    "resume": True}  # fmt: skip
        result = train_dpo(DPOConfig.validated(settings))
        return {"model": str(result.output_dir), "from": label, **result.summary}

    # -- GRPO (lw_reproduce.grpo_stage) -------------------------------------------------------
    def grpo(self) -> dict[str, Any]:
        section, bench = self.config.grpo, self.config.bench
        model = self._base_folder() if section.start == "base" else str(self.run.root / "train" / "model")
        held_out = load_items(bench.dataset, data_dir=bench.data_dir)
        if bench.ruler:
            held_out += load_items("longwrite_ruler", data_dir=bench.data_dir)
        return grpo_stage.train(section, model=model, folder=self.run.stage("grpo"), held_out=held_out)

    def bench_grpo(self) -> dict[str, Any]:
        return self._bench("bench_grpo", "grpo", str(self.run.root / "grpo" / "model"))

    # -- 10. report ----------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        folder = self.run.stage("report")
        rows = [(label, stage) for label, stage in _LABELS if stage_enabled(self.config, stage) or label == "base"]
        runs = {label: self._report(stage, "longbench") for label, stage in rows}
        ruler = {label: self._report(stage, "ruler") for label, stage in rows} if self.config.bench.ruler else None
        small_judge = not self.config.judge.base_url
        paths = compare_runs(
            runs, folder, ruler=ruler, small_judge=small_judge, threshold=self.config.data.max_repetition
        )
        stages = _stage_table(self.run)
        heading = f"**Run {self.config.name}** (profile {self.config.profile}): {self.config.purpose}.\n\n"
        body = paths["md"].read_text(encoding="utf-8")
        atomic_write(paths["md"], heading + body + "\n## Stages\n\n" + stages + "\n")
        return {label: r.overall.length_score if r else None for label, r in runs.items()}

    def _report(self, stage: str, name: str) -> BenchReport | None:
        path = self.run.root / stage / name / "report.json"
        return BenchReport.model_validate_json(path.read_text(encoding="utf-8")) if path.exists() else None


#: The report's rows: a label per benchmark stage, in the order the paper's table reads.
_LABELS = (
    ("base", "bench_base"), ("sft", "bench_sft"), ("dpo", "bench_dpo"), ("dpo2", "bench_dpo2"),
    ("plan-sft", "bench_plan"), ("agentwrite", "bench_agentwrite"), ("grpo", "bench_grpo"),
)  # fmt: skip


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


def _batch_summary(stats: BatchStats) -> dict[str, Any]:
    return {
        "instructions": stats.total,
        "done": stats.done,
        "truncated": stats.truncated,
        "failed": stats.failed,
        "fallback_plans": stats.fallback_plans,
        "skipped": stats.skipped,
        "words": stats.words,
        "completion_tokens": stats.usage.completion_tokens,
        "errors": stats.errors,
    }


def _document_answer(document: Document, item: BenchItem, model: str) -> Prediction:
    """An AgentWrite document as the answer to a bench item; ``truncated`` documents count as ended at the cap."""
    return Prediction(
        id=item.id, prompt=item.prompt, response=document.text, length=item.length, type=item.type,
        language=item.language, model=model, finish_reason="length" if document.status == "truncated" else "stop",
        usage=document.usage, elapsed_s=document.elapsed_s,
    )  # fmt: skip


def _without_plans(predictions: list[Prediction]) -> tuple[list[Prediction], int]:
    """Plan-augmented answers as the text after their plan (lw-data's ``split_plan_answer``), and how many had one."""
    from lw_data import split_plan_answer

    texts, planned = [], 0
    for prediction in predictions:
        plan, text = split_plan_answer(prediction.response)
        planned += bool(plan)
        texts.append(prediction.model_copy(update={"response": text, "word_count": count_words(text)}))
    return texts, planned


def _sample_frame(samples: list[Prediction]) -> Any:
    import polars as pl

    columns = {"id": pl.String, "prompt": pl.String, "response": pl.String, "length": pl.Int64, "sample": pl.Int64,
               "word_count": pl.Int64}  # fmt: skip
    return pl.DataFrame([{c: getattr(p, c) for c in columns} for p in samples], schema=columns)


def _judgment_frame(judgments: list[Judgment], wanted: set[str]) -> Any:
    """The judge's complete scores of the wanted samples, as the table lw-data's ``build_dpo`` reads."""
    import polars as pl

    rows = [
        {"id": j.id, "sample": j.sample, "replicate": j.replicate, "scores": j.scores}
        for j in judgments
        if j.id in wanted and j.status == "ok" and set(DIMENSIONS) <= set(j.scores)
    ]
    scores = pl.Struct(dict.fromkeys(DIMENSIONS, pl.Int64))
    return pl.DataFrame(rows, schema={"id": pl.String, "sample": pl.Int64, "replicate": pl.Int64, "scores": scores})


def _dpo_summary(
    policy: str, items: list[BenchItem], samples: list[Prediction], pairs: Any, unpaired: int
) -> dict[str, Any]:
    """What a DPO data stage sampled and paired: loops and caps among the samples, the pairs' length scores."""
    meta = pairs["meta"].struct.unnest()
    return {
        "policy": policy,
        "instructions": len(items),
        "samples": len(samples),
        "looping_samples": sum(loop_onset(p.response) is not None for p in samples),
        "samples_at_cap": sum(p.finish_reason == "length" for p in samples),
        "pairs": pairs.height,
        "unpaired": unpaired,
        "chosen_S_l": round(float(meta["chosen_length_score"].mean()), 1),
        "rejected_S_l": round(float(meta["rejected_length_score"].mean()), 1),
        "completion_tokens": sum(p.usage.completion_tokens for p in samples),
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


__all__ = [
    "STAGES", "PipelineError", "load_instructions", "reproduce", "selected_stages", "stage_enabled", "stage_records",
]  # fmt: skip
