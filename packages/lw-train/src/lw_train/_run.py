"""What SFT, DPO and GRPO runs share: the output folder, checkpoints that resume safely, progress, logs and the summary.

Layout of ``output_dir``::

    config.json, model.safetensors, tokenizer files   the final model (transformers loads the folder directly)
    summary.json                                      trained tokens, tokens/s, fill, dropped samples, memory, time
    log.jsonl                                         one line per logged step (loss, learning rate, tokens/s)
    checkpoints/lw-train-config.json                  the resolved config the checkpoints belong to
    checkpoints/checkpoint-<step>/                    transformers checkpoints; ``lw-complete`` marks finished ones
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from lw_core import JsonlWriter, atomic_write
from transformers import PrinterCallback, TrainerCallback

from .errors import ConfigError

if TYPE_CHECKING:
    from transformers import Trainer, TrainerControl, TrainerState, TrainingArguments

    from .config import _TrainConfig

log = logging.getLogger("lw_train")

CONFIG_FILE = "lw-train-config.json"
COMPLETE_MARKER = "lw-complete"
# Settings that may change between a run and its resumption without changing what is trained.
RESUMABLE_CHANGES = frozenset({"resume", "output_dir", "save_steps", "save_total_limit", "logging_steps", "threads"})
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class TrainResult:
    """What a training run returns: the folder of the final model, the summary (also in ``summary.json``), and the
    trained model itself (on the main process; ``None`` elsewhere)."""

    output_dir: Path
    summary: dict[str, Any]
    model: Any = None


@dataclass
class RunStats:
    """Counted by the trainer, read by the callbacks: trained tokens of this session and when training began."""

    trained_tokens: int = 0
    started: float = 0.0

    def tokens_per_s(self) -> float:
        elapsed = time.perf_counter() - self.started if self.started else 0.0
        return self.trained_tokens / elapsed if elapsed > 0 else 0.0


def checkpoints_dir(config: _TrainConfig) -> Path:
    return config.output_dir / "checkpoints"


def complete_checkpoints(folder: Path) -> list[Path]:
    """Finished checkpoints, oldest first (a checkpoint cut by a kill has no marker)."""
    if not folder.is_dir():
        return []
    found = [
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if (match := _CHECKPOINT.match(path.name)) and (path / COMPLETE_MARKER).is_file()
    ]
    return [path for _, path in sorted(found)]


def prepare_output(config: _TrainConfig, *, is_main: bool) -> Path | None:
    """Check the output folder against ``resume``; save the resolved config; return the checkpoint to resume from."""
    folder = checkpoints_dir(config)
    finished = complete_checkpoints(folder)
    saved = folder / CONFIG_FILE
    if not config.resume:
        if finished or (config.output_dir / "summary.json").exists():
            what = f"checkpoints up to {finished[-1].name}" if finished else "a finished model"
            raise ConfigError(
                f"{config.where('output_dir')}: {config.output_dir} already holds {what} of an earlier run; "
                "continue it with --resume (resume = true) or choose another output_dir"
            )
    elif saved.is_file():
        _check_same_config(config, json.loads(saved.read_text()))
    if is_main:
        folder.mkdir(parents=True, exist_ok=True)
        for partial in folder.glob("checkpoint-*"):  # cut by a kill during a save: never resumed from
            if partial.is_dir() and partial not in finished:
                shutil.rmtree(partial, ignore_errors=True)
        atomic_write(saved, json.dumps(config.resolved(), indent=2) + "\n")
    if config.resume and not finished:
        log.warning("resume: no finished checkpoint in %s, starting from the beginning", folder)
    return finished[-1] if config.resume and finished else None


def _check_same_config(config: _TrainConfig, saved: dict[str, Any]) -> None:
    current = config.resolved()
    keys = (current.keys() | saved.keys()) - RESUMABLE_CHANGES
    changed = sorted(k for k in keys if current.get(k) != saved.get(k))
    if changed:
        details = "; ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise ConfigError(
            f"{config.where(changed[0])}: differs from the config the checkpoints in {checkpoints_dir(config)} were "
            f"made with ({details}); resuming needs the same settings (or choose another output_dir)"
        )


def split(count: int, config: _TrainConfig) -> tuple[list[int], list[int]]:
    """Train and eval indices of ``count`` samples; the ``eval_fraction`` share is drawn with the seed."""
    if config.eval_fraction <= 0:
        return list(range(count)), []
    held = max(1, round(count * config.eval_fraction))
    if held >= count:
        raise ConfigError(f"{config.where('eval_fraction')}: leaves no training sample of {count}; lower it")
    chosen = set(np.random.default_rng([config.seed, 1]).choice(count, size=held, replace=False).tolist())
    return [i for i in range(count) if i not in chosen], sorted(chosen)


def load_tokenizer(config: _TrainConfig, folder: str) -> Any:
    """The model's tokenizer; a model that cannot be found, or needs code it was not allowed to run, is a
    ConfigError naming the field."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError) as error:
        problem = load_error(config, error)
        if problem is None:
            raise
        raise problem from None


def load_model(config: _TrainConfig, folder: str, **options: Any) -> Any:
    """The model in float32 (``options`` go to ``from_pretrained``); load failures as :func:`load_tokenizer`'s."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch.float32, trust_remote_code=config.trust_remote_code, **options
        )
    except (OSError, ValueError) as error:
        problem = load_error(config, error)
        if problem is None:
            raise
        raise problem from None


def load_error(config: _TrainConfig, error: Exception) -> ConfigError | None:
    """A model or tokenizer that did not load, as one line naming the field (and the opt-in it needs); ``None`` for
    an error that is not about loading."""
    if "trust_remote_code" in str(error):
        return ConfigError(
            f"{config.where('trust_remote_code')}: {config.model!r} needs the Python code in its repository to load "
            "(THUDM/glm-4-9b does); set trust_remote_code = true (--set trust_remote_code=true) if you trust it"
        )
    if isinstance(error, OSError):
        return ConfigError(f"{config.where('model')}: cannot load {config.model!r}: {error}")
    return None


def model_type(config: _TrainConfig, folder: str) -> str | None:
    """``model_type`` of the model's ``config.json``, read as data (no repository code runs)."""
    from transformers import PretrainedConfig

    try:
        values, _ = PretrainedConfig.get_config_dict(folder)
    except OSError as error:
        raise ConfigError(f"{config.where('model')}: cannot load {config.model!r}: {error}") from None
    found = values.get("model_type")
    return str(found) if found is not None else None


def mixed_precision(dtype: str) -> dict[str, bool]:
    """TrainingArguments flags for the compute dtype (weights stay fp32: the optimizer's master copy)."""
    if dtype == "auto":
        dtype = "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    return {"bf16": dtype == "bfloat16", "fp16": dtype == "float16"}


def common_arguments(config: _TrainConfig) -> dict[str, Any]:
    """TrainingArguments that SFT and DPO share, from the config."""
    return {
        "output_dir": str(checkpoints_dir(config)),
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.lr_scheduler,
        **warmup(config.warmup_ratio),
        "weight_decay": config.weight_decay,
        "adam_beta1": config.adam_beta1,
        "adam_beta2": config.adam_beta2,
        "max_grad_norm": config.max_grad_norm,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "seed": config.seed,
        "logging_steps": config.logging_steps,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": config.save_total_limit,
        "eval_strategy": "steps" if config.eval_fraction > 0 else "no",
        "eval_steps": config.save_steps,
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": not torch.cuda.is_available(),
        **mixed_precision(config.dtype),
        **checkpointing(config.gradient_checkpointing),
    }


def warmup(ratio: float) -> dict[str, Any]:
    """The warm-up as a share of the total steps, under the name this transformers reads as one: ``warmup_ratio``
    where it exists (before 5.0, ``warmup_steps`` is a step count and 0.03 would silently mean no warm-up), else
    ``warmup_steps``, which transformers >= 5 reads as a ratio when below 1."""
    from transformers import TrainingArguments

    if "warmup_ratio" in TrainingArguments.__dataclass_fields__:
        return {"warmup_ratio": ratio, "warmup_steps": 0}
    return {"warmup_steps": ratio}


def checkpointing(enabled: bool) -> dict[str, Any]:
    """Activation-checkpointing flags under the name this transformers uses (renamed in 5.2x), always explicit:
    TRL's configs default to on."""
    from transformers import TrainingArguments

    name = "activation" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__ else "gradient"
    kwargs = {f"{name}_checkpointing_kwargs": {"use_reentrant": False}} if enabled else {}
    return {f"{name}_checkpointing": enabled, **kwargs}


class CheckpointMarker(TrainerCallback):
    """Marks a checkpoint finished once every rank has written its part, so a kill mid-save is never resumed."""

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
        if state.is_world_process_zero:
            folder = Path(str(args.output_dir)) / f"checkpoint-{state.global_step}"
            atomic_write(folder / COMPLETE_MARKER, f"{state.global_step}\n")


class ProgressAndLog(TrainerCallback):
    """A rich progress bar (loss, trained tokens/s) and ``log.jsonl``, on the main process."""

    def __init__(self, log_path: Path, stats: RunStats, *, show: bool) -> None:
        self.log_path, self.stats, self.show = log_path, stats, show
        self._progress: Any = None
        self._task: Any = None
        self.last: dict[str, float] = {}

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        self.stats.started = time.perf_counter()
        if state.is_world_process_zero and self.show:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"), console=Console(stderr=True),  # stdout stays the command's result
            )  # fmt: skip
            self._progress.start()
            self._task = self._progress.add_task("train", total=state.max_steps, completed=state.global_step, status="")

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: Any = None, **_: Any
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, int | float)}}
        self.last.update(record)
        with JsonlWriter(self.log_path) as writer:  # reopened per line: evaluation logs after training ends
            writer.write(record)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        if self._progress is not None:
            loss = self.last.get("loss")
            status = (f"loss {loss:.4f} · " if loss is not None else "") + f"{self.stats.tokens_per_s():.0f} tok/s"
            self._progress.update(self._task, completed=state.global_step, status=status)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        if self._progress is not None:
            self._progress.stop()


def lora_config(config: _TrainConfig) -> Any:
    """peft's ``LoraConfig`` for ``config.lora``; None trains every weight."""
    if config.lora is None:
        return None
    from peft import LoraConfig

    lora = config.lora
    return LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )  # fmt: skip


def save_final(trainer: Trainer, config: _TrainConfig, tokenizer: Any) -> Any:
    """Write the final model into ``output_dir`` as a plain HF folder (LoRA merged; the adapter in ``adapter/``).

    Returns the model as trained (merged with LoRA), or None on the processes of a LoRA run that do not write.
    """
    model: Any = trainer.model
    if config.lora is None:
        trainer.save_model(str(config.output_dir))
        return model
    if trainer.args.process_index == 0:
        model.save_pretrained(config.output_dir / "adapter")
        merged = model.merge_and_unload()
        merged.save_pretrained(config.output_dir)
        tokenizer.save_pretrained(config.output_dir)
        return merged
    return None


def peak_memory_mib() -> float:
    """Peak memory of this process: CUDA allocations on a GPU, else the resident set's high-water mark."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def losses(trainer: Trainer) -> list[dict[str, float]]:
    """``[{"step", "loss"}, ...]`` from the trainer's log history."""
    return [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e]


def train(trainer: Trainer, resume_from: Path | None) -> float:
    """Train (from ``resume_from`` when given) and return the seconds it took. The progress bar and ``log.jsonl``
    replace the dicts transformers' ``PrinterCallback`` would print."""
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    return time.perf_counter() - started


def summary(
    config: _TrainConfig,
    trainer: Trainer,
    *,
    began: float,
    train_seconds: float,
    resume_from: Path | None,
    **fields: Any,
) -> dict[str, Any]:
    """The run's ``summary.json``: what every trainer reports (folder, model, steps, times, peak memory, the
    checkpoint resumed from) around the trainer's own ``fields``, so the three summaries read alike."""
    return {
        "output_dir": str(config.output_dir),
        "model": config.model,
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 4),
        **fields,
        "train_seconds": round(train_seconds, 2),
        "wall_time_s": round(time.perf_counter() - began, 2),
        "peak_memory_mib": round(peak_memory_mib(), 1),
        "resumed_from": resume_from.name if resume_from else None,
    }


def loss_fields(trainer: Trainer, eval_loss: float | None) -> dict[str, Any]:
    """The summary's loss keys for the supervised trainers (SFT, DPO): the last, the evaluation's and the curve."""
    curve = losses(trainer)
    return {"final_loss": curve[-1]["loss"] if curve else None, "eval_loss": eval_loss, "losses": curve}


def finish(config: _TrainConfig, summary: dict[str, Any], trained: Any, *, is_main: bool, show: bool) -> TrainResult:
    """Write ``summary.json`` on the main process (without the per-step log) and return the run's result."""
    if is_main:
        write_summary(config, {k: v for k, v in summary.items() if k != "steps_log"}, show=show)
    return TrainResult(config.output_dir, summary, trained if is_main else None)


def write_summary(config: _TrainConfig, summary: dict[str, Any], *, show: bool) -> None:
    atomic_write(config.output_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    if show:
        from rich.console import Console

        brief = {k: v for k, v in summary.items() if k != "losses"}
        Console(stderr=True).print_json(json.dumps(brief))
