"""`lw reproduce`: the paper's pipeline, composed from the packages, in a resumable run folder.

1. **agentwrite** — the base model plans and writes each instruction section by section (AgentWrite).
2. **data** — documents become filtered `messages` SFT records, with a rejects file and stats plot.
3. **bench_base** — LongBench-Write predictions of the base model, judged, scored and reported.
4. **train** — SFT on the AgentWrite data: packed rows, per-sequence loss (lw-train's collator and loss).
5. **bench_trained** — the same benchmark on the trained model (the base model stays the judge).
6. **compare** — one table, base vs trained.

Every stage writes into ``runs/<name>/<stage>/`` and leaves a ``done`` marker; run the command again to
resume after a crash — finished stages are skipped and interrupted ones resume from their JSONL records.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from lw_agentwrite import AgentWrite, run_batch
from lw_bench import comparison_table, judge, load_items, predict, read_judgments, read_predictions, score_run
from lw_bench import write_report as write_bench_report
from lw_core import BenchReport, ChatClient, Instruction, JsonlWriter, LWError, SFTRecord, atomic_write, read_jsonl
from lw_data import SFTFilters, build_sft_file, plot
from lw_serve import Server

from lw_reproduce.config import ReproduceConfig
from lw_reproduce.rundir import RunDir

log = logging.getLogger(__name__)
Say = Callable[[str], None]


class PipelineError(LWError):
    """A stage could not run (e.g. no usable instructions)."""


def demo_instructions() -> Path:
    """The bundled bilingual demo instructions (our own text)."""
    return Path(str(resources.files("lw_reproduce") / "data" / "instructions.jsonl"))


def reproduce(config: ReproduceConfig, runs: Path = Path("runs"), *, fresh: bool = False, say: Say = print) -> RunDir:
    """Run (or resume) every stage; returns the run folder."""
    run = RunDir.open(runs, config, fresh=fresh)
    say(f"run folder: {run.root}")
    started = time.perf_counter()
    with Server(config.model, config.backend, log_path=run.stage("logs") / "server-base.log") as base:
        say(f"serving {base.model_name} at {base.base_url} ({base.backend.name})")
        _stage(run, "agentwrite", say, lambda: asyncio.run(_agentwrite(run, base.client, say)))
        _stage(run, "data", say, lambda: _data(run))
        _stage(run, "bench_base", say, lambda: asyncio.run(_bench(run, "bench_base", base.client, base.client, say)))
        _stage(run, "train", say, lambda: _train(run, base.model.hf_folder(), say))
        trained = run.summary("train").get("model")
        if trained:
            with Server(trained, "transformers", name="lw-sft", log_path=run.stage("logs") / "server-sft.log") as sft:
                say(f"serving the trained model at {sft.base_url}")

                def bench_trained() -> dict[str, Any]:  # judged by the base model, like the base run
                    return asyncio.run(_bench(run, "bench_trained", sft.client, base.client, say))

                _stage(run, "bench_trained", say, bench_trained)
    _stage(run, "compare", say, lambda: _compare(run))
    run.write_manifest(elapsed_s=round(time.perf_counter() - started, 1))
    say((run.root / "compare" / "comparison.md").read_text())
    return run


def _stage(run: RunDir, name: str, say: Say, body: Callable[[], dict[str, Any]]) -> None:
    if run.is_done(name):
        say(f"[{name}] done already, skipped")
        return
    say(f"[{name}] running")
    started = time.perf_counter()
    summary = body()
    summary["elapsed_s"] = round(time.perf_counter() - started, 1)
    run.mark_done(name, summary)
    say(f"[{name}] {json.dumps(summary, ensure_ascii=False, default=str)}")


async def _agentwrite(run: RunDir, client: ChatClient, say: Say) -> dict[str, Any]:
    config = run.config
    source = config.instructions or demo_instructions()
    instructions = list(read_jsonl(source, Instruction))[: config.n_instructions]
    if not instructions:
        raise PipelineError(f"{source}: no instructions")
    agent = AgentWrite(client, max_section_words=config.max_section_words)
    out = run.stage("agentwrite") / "documents.jsonl"
    stats = await run_batch(agent, instructions, out, concurrency=config.write_concurrency)
    say(f"[agentwrite] {stats.summary()}")
    return {
        "instructions": stats.total,
        "done": stats.done,
        "truncated": stats.truncated,
        "failed": stats.failed,
        "words": stats.words,
        "completion_tokens": stats.usage.completion_tokens,
        "errors": stats.errors,
        "documents": str(out),
    }


def _data(run: RunDir) -> dict[str, Any]:
    config = run.config
    folder = run.stage("data")
    filters = SFTFilters(min_words=config.min_words, max_repetition=config.max_repetition)
    result = build_sft_file(
        run.root / "agentwrite" / "documents.jsonl", folder / "sft.jsonl", folder / "rejects.jsonl", filters
    )
    if result.kept:
        plot(result.measures, folder / "stats.png", title=f"{config.name}: SFT data")
    return {"read": result.read, "kept": result.kept, "rejected": result.rejected, "sft": str(folder / "sft.jsonl")}


async def _bench(run: RunDir, stage: str, model: ChatClient, judge_client: ChatClient, say: Say) -> dict[str, Any]:
    config = run.config
    folder = run.stage(stage)
    items = load_items(config.bench_dataset, data_dir=config.bench_data_dir, limit=config.bench_items)
    predictions_path, judgments_path = folder / "predictions.jsonl", folder / "judgments.jsonl"
    predicted = await predict(model, items, predictions_path, max_tokens=config.bench_max_tokens)
    predictions = read_predictions(predictions_path)
    judged = await judge(judge_client, predictions, judgments_path, max_tokens=config.judge_max_tokens)
    report = score_run(
        predictions,
        read_judgments(judgments_path),
        model=model.model,
        judge=judge_client.model,
        dataset=config.bench_dataset,
    )
    paths = write_bench_report(report, folder)
    return {
        "predictions": predicted.done + predicted.skipped,
        "prediction_failures": predicted.failed,
        "judge_failures": judged.failed,
        "S_l": report.overall.length_score,
        "S_q": report.overall.quality_score,
        "S": report.overall.score,
        "report": str(paths["md"]),
    }


def _train(run: RunDir, base_folder: str, say: Say) -> dict[str, Any]:
    """A short packed SFT run with lw-train's tokenizer, packer, collator and per-sequence loss."""
    config = run.config
    records = list(read_jsonl(run.root / "data" / "sft.jsonl", SFTRecord))
    if config.train_steps == 0 or not records:
        reason = "train_steps is 0" if config.train_steps == 0 else "no SFT records passed the filters"
        say(f"[train] skipped: {reason}")
        return {"skipped": reason, "model": None}

    import torch
    from lw_train import PackedCollator, count_targets, model_loss, pack, tokenize_chats
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_folder)
    model = AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.float32)
    model.train()
    chats = tokenize_chats(records, tokenizer, max_tokens=config.train_max_tokens, overlong="truncate")
    bins = pack(chats.lengths, config.train_max_tokens, strategy="bfd")
    collate = PackedCollator(pad_token_id=tokenizer.pad_token_id or 0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    losses: list[float] = []
    log_path = run.stage("train") / "log.jsonl"
    for step in range(config.train_steps):
        members = [chats[i] for i in bins[step % len(bins)]]
        batch = collate(members)
        loss = model_loss(model, batch, reduction=config.loss_reduction, global_counts=count_targets(batch))  # type: ignore[arg-type]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss))
        with JsonlWriter(log_path) as writer:
            writer.write({"step": step + 1, "loss": losses[-1], "tokens": int(batch["input_ids"].numel())})
        say(f"[train] step {step + 1}/{config.train_steps} loss {losses[-1]:.4f}")
    target = run.stage("train") / "model"
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".model-"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return {
        "model": str(target),
        "steps": config.train_steps,
        "bins": len(bins),
        "samples": len(chats),
        "losses": losses,
    }


def _compare(run: RunDir) -> dict[str, Any]:
    reports = [
        BenchReport.model_validate_json((run.root / stage / "report.json").read_text())
        for stage in ("bench_base", "bench_trained")
        if (run.root / stage / "report.json").exists()
    ]
    labelled = [
        r.model_copy(update={"model": f"{stage}: {r.model}"})
        for r, stage in zip(reports, ("base", "trained"), strict=False)
    ]
    table = comparison_table(labelled)
    atomic_write(run.root / "compare" / "comparison.md", f"# {run.config.name}: LongBench-Write\n\n{table}\n")
    return {"models": [r.model for r in labelled]}
