"""What a configuration resolves to when it runs, in one place for the pipeline and ``--dry-run``: the train stage's
lw-train config and how it is launched, the prompt formats, and the benchmark's sampling."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lw_bench.sampling import model_family, paper_sampling
from lw_train import SFTConfig

from lw_reproduce.config import ReproduceConfig, TrainSection

#: The released code's prompt format per model family (``lw_bench.model_family``'s names).
_FAMILY_FORMATS = {"llama": "llama-inst", "glm": "glm4"}
_DISTRIBUTED = {
    "ddp": "data parallel",
    "deepspeed-zero3": "DeepSpeed ZeRO-3 with THUDM/LongWriter's stage3.json: parameters and optimizer on the CPU",
    "fsdp2": "FSDP2",
}


def sft_config(config: ReproduceConfig, *, model: str, data: Path, output_dir: Path) -> SFTConfig:
    """The train stage's :class:`lw_train.SFTConfig`: the profile's ``train.settings`` with the run's model, data
    and folder, resumable (a re-run continues from the last finished checkpoint)."""
    settings = {
        **config.train.settings,
        "model": model,
        "data": str(data),
        "output_dir": str(output_dir),
        "resume": True,
    }
    return SFTConfig.validated(settings)


def launched(section: TrainSection) -> bool:
    """Whether the train stage goes through ``accelerate launch`` (else ``train_sft`` runs in this process)."""
    return section.processes > 1 or section.distributed != "ddp"


def train(config: ReproduceConfig, sft: SFTConfig) -> Any:
    """Train as configured: in this process, or ``processes`` processes under ``accelerate launch``."""
    if not launched(config.train):
        from lw_train import train_sft

        return train_sft(sft)
    from lw_train.launch import launch

    return launch("sft", sft, processes=config.train.processes, distributed=config.train.distributed, echo=_echo)


def bench_sampling(config: ReproduceConfig) -> tuple[float, float | None, dict[str, Any]]:
    """``(temperature, top_p, server options)`` the benchmark samples the student with: the configured ones, or the
    paper's for the student's family (``lw_bench.PAPER_SAMPLING``) with ``bench.sampling`` added."""
    bench = config.bench
    if bench.model_sampling == "fixed":
        return bench.temperature, bench.top_p, dict(bench.sampling)
    found = paper_sampling(config.student.model)
    return found.temperature, found.top_p, {**found.server_options(), **bench.sampling}


def describe(config: ReproduceConfig) -> list[str]:
    """The resolved launcher, processes, packing and prompt formats, as ``--dry-run`` prints them."""
    section = config.train
    settings = SFTConfig.validated({"model": "m", "data": "d.jsonl", "output_dir": "o", **section.settings})
    if launched(section):
        how = f"accelerate launch, {section.processes} process{'es' if section.processes > 1 else ''}"
        how += f", {section.distributed} ({_DISTRIBUTED[section.distributed]})"
    else:
        how = "in this process (train_sft), 1 process"
    trained_format: str = settings.prompt_format
    if trained_format == "longwriter":
        family = _FAMILY_FORMATS.get(model_family(config.student.model) or "")
        trained_format += f" → {family}" if family else " → from the model's config.json at train time"
    lines = [
        f"train launcher: {how}",
        f"train packing: {settings.packing}, order {settings.order}, loss {settings.loss_reduction}, "
        f"{settings.max_tokens} tokens a row",
        f"prompt format: training {trained_format}; the trained model's chat template is set to it, so the "
        "benchmark and DPO prompt it the same way"
        if settings.prompt_format != "template"
        else "prompt format: the tokenizer's chat template, in training and in the benchmark",
    ]
    if config.bench.model_sampling == "paper":
        temperature, top_p, options = bench_sampling(config)
        lines.append(
            f"bench sampling: the paper's for {model_family(config.student.model)} models: temperature {temperature}, "
            f"top_p {top_p}, {', '.join(f'{k} {v}' for k, v in options.items()) or 'no server options'}"
        )
    else:
        lines.append(f"bench sampling: temperature {config.bench.temperature}, top_p {config.bench.top_p} (fixed)")
    return lines


def _echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
