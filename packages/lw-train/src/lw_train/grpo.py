"""GRPO with TRL's ``GRPOTrainer`` on lw ``Instruction`` prompts, with rewards named by import string.

Rewards are found at run time (``importlib``) from the config's ``rewards`` list, e.g. ``lw_bench.rewards:
length_reward``: lw-train never imports lw-bench, and any function in TRL's reward signature works. Rollouts come
from ``model.generate`` (TRL's own path) unless a :class:`PolicyRollout` is given: a copy of the policy served
elsewhere (lw-serve's llama.cpp policy server), synced after every optimizer step through an HF folder.

The run folder is :func:`lw_train.train_sft`'s (resumable checkpoints, ``log.jsonl``, ``summary.json``, the final
model in ``output_dir``) plus ``completions.jsonl`` (every rollout: step, id, required length, words, words before a
loop, text) and ``rewards.png`` (reward parts, completion lengths and the degenerate share per step). Each logged
step carries TRL's ``reward``, ``rewards/<name>/mean``, ``completions/mean_length`` (tokens) and
``completions/clipped_ratio``, and lw's ``completions/words``, ``completions/words_ratio`` (median words ÷ required),
``completions/degenerate`` (share above ``lw_core.REPETITION_THRESHOLD``) and ``completions/looped``.
"""

from __future__ import annotations

import importlib
import json
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from lw_core import (
    REPETITION_THRESHOLD,
    Instruction,
    JsonlWriter,
    RecordError,
    count_words,
    loop_free_words,
    loop_onset,
    repeated_ngram_ratio,
)
from transformers import TrainerCallback

from . import _run
from .config import GRPOConfig, RewardSpec
from .data import _line, _read
from .errors import ConfigError
from .models import resolve_model

__all__ = ["PolicyRollout", "plot_rewards", "read_prompts", "resolve_rewards", "train_grpo"]

log = logging.getLogger("lw_train")

ROLLOUT_FOLDER = "rollout-policy"
"""Under ``output_dir``: the HF folder of the current weights that a :class:`PolicyRollout` is synced from."""


class PolicyRollout(Protocol):
    """Where GRPO's completions come from instead of ``model.generate``: a copy of the policy served elsewhere.

    ``sync(folder)`` gets an HF folder (weights and tokenizer) of the current policy before the first rollout and
    after every optimizer step; ``generate`` samples one completion per prompt (prompts as token ids, already in
    the chat template) and returns its token ids and whether it ended by itself (an end-of-turn token) rather than
    at ``max_tokens``. lw-serve's ``PolicyServer`` is one (llama.cpp on a GGUF export); lw-train needs no import.
    """

    def sync(self, folder: Path) -> None: ...

    def generate(
        self,
        prompt_ids: list[list[int]],
        *,
        max_tokens: int,
        temperature: float,
        top_p: float,
        top_k: int,
        repetition_penalty: float,
        seed: int,
    ) -> list[tuple[list[int], bool]]: ...


def train_grpo(
    config: GRPOConfig,
    *,
    rollout: PolicyRollout | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    progress: bool = True,
) -> _run.TrainResult:
    """GRPO of ``config.model`` on the prompts in ``config.data``; the final model is written to ``config.output_dir``.

    ``rollout`` replaces ``model.generate`` for the completions (see :class:`PolicyRollout`); its sampling is the
    config's (``temperature``, ``top_p``, ``top_k``, ``repetition_penalty``, ``max_completion_length``).
    """
    import torch
    from datasets import Dataset  # type: ignore[import-untyped]
    from transformers import set_seed
    from trl.trainer.grpo_config import GRPOConfig as TRLGRPOConfig
    from trl.trainer.grpo_trainer import GRPOTrainer

    began = time.perf_counter()
    if config.eval_fraction > 0:
        raise ConfigError(f"{config.where('eval_fraction')}: GRPO holds out no prompts; remove it (or set 0)")
    if config.threads:
        torch.set_num_threads(config.threads)
    rewards = resolve_rewards(config)
    per_device = config.completions_per_device or config.num_generations
    arguments = _run.common_arguments(config)
    try:
        args = TRLGRPOConfig(
            per_device_train_batch_size=per_device,
            num_generations=config.num_generations,
            max_completion_length=config.max_completion_length,
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k,
            repetition_penalty=config.repetition_penalty,
            beta=config.beta,
            loss_type=config.loss_type,
            scale_rewards=config.scale_rewards,
            multi_objective_aggregation=config.multi_objective_aggregation,
            epsilon=config.epsilon,
            epsilon_high=config.epsilon_high,
            num_iterations=config.num_iterations,
            mask_truncated_completions=config.mask_truncated_completions,
            reward_weights=[spec.weight for spec in config.rewards],
            **{**arguments, "eval_strategy": "no"},
        )
    except ValueError as error:  # TRL's batch checks: completions per step vs num_generations
        raise ConfigError(f"{config.where('completions_per_device')}: {error}") from None
    is_main = args.process_index == 0
    resume_from = _run.prepare_output(config, is_main=is_main)
    folder = resolve_model(config.model)
    tokenizer = _run.load_tokenizer(config, folder)
    prompts = read_prompts(config.data, where=config.where("data"))
    rows = [_row(instruction, config.system_prompt) for instruction in prompts]

    set_seed(config.seed)
    model = _run.load_model(config, folder)
    stats = _run.RunStats()
    show = progress and is_main
    log_path = config.output_dir / "log.jsonl"
    completions_path = config.output_dir / "completions.jsonl" if config.save_completions and is_main else None
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=list[Any](_measured(rewards, completions_path)),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=_run.lora_config(config),
        rollout_func=_rollout_func(rollout, config, tokenizer) if rollout is not None else None,
        callbacks=[
            _run.CheckpointMarker(),
            _GRPOProgress(log_path, stats, show=show),
            _RewardPlot(log_path, config.output_dir / "rewards.png", enabled=is_main),
            *callbacks,
        ],
    )
    train_seconds = _run.train(trainer, resume_from)
    trained = _run.save_final(trainer, config, tokenizer)
    history = [e for e in trainer.state.log_history if "reward" in e]
    summary = _run.summary(
        config, trainer, began=began, train_seconds=train_seconds, resume_from=resume_from,
        prompts=len(rows), rewards=[spec.model_dump(exclude_none=True) for spec in config.rewards],
        rollout=type(rollout).__name__ if rollout is not None else "model.generate",
        seconds_per_step=round(train_seconds / max(1, trainer.state.global_step - _step_of(resume_from)), 2),
        first_reward=history[0]["reward"] if history else None,
        final_reward=history[-1]["reward"] if history else None,
        steps_log=[{k: v for k, v in e.items() if k == "step" or "/" in k or k == "reward"} for e in history],
    )  # fmt: skip
    if is_main:
        plot_rewards(log_path, config.output_dir / "rewards.png")
    return _run.finish(config, summary, trained, is_main=is_main, show=show)


def read_prompts(path: Path, *, where: str = "data") -> list[Instruction]:
    """The Instruction records of ``path`` (JSONL or parquet); each must say its required ``length``."""
    instructions = _read(path, Instruction, where)
    for index, instruction in enumerate(instructions):
        if instruction.length is None:
            raise RecordError(
                str(path), _line(path, index), "length", "no required length: GRPO's length reward needs one per prompt"
            )
    return instructions


Reward = Callable[..., list[float | None]]
"""TRL's reward signature: ``f(prompts, completions, **columns) -> one float (or None: left out) per completion``."""


def resolve_rewards(config: GRPOConfig) -> list[Reward]:
    """Import each configured reward (``module:name``; a factory is called with its ``options``), in order.

    Names in logs are the functions' own (``length_reward``); a name used twice gets its position appended. A name
    that does not import is an error naming the config field, before any model loads:

    >>> config = GRPOConfig(model="m", data="p.jsonl", output_dir="o", rewards=[{"func": "no_such_module:reward"}])
    >>> resolve_rewards(config)
    Traceback (most recent call last):
    ...
    lw_train.errors.ConfigError: config: field 'rewards.0.func': cannot import 'no_such_module' (No module named \
'no_such_module'); is its package installed?
    """
    found: list[Reward] = []
    names: list[str] = []
    for index, spec in enumerate(config.rewards):
        func = _import(spec, config.where(f"rewards.{index}.func"))
        name = getattr(func, "__name__", type(func).__name__)
        names.append(name if name not in names else f"{name}_{index}")
        found.append(_Named(func, names[-1]))
    return found


def _import(spec: RewardSpec, where: str) -> Callable[..., Any]:
    module_name, _, attribute = spec.func.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"{where}: cannot import {module_name!r} ({error}); is its package installed?") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"{where}: {module_name!r} has no {attribute!r}") from None
    if spec.options is not None:
        try:
            target = target(**spec.options)
        except TypeError as error:
            raise ConfigError(f"{where}: {spec.func} does not take these options ({error})") from None
    if not callable(target):
        raise ConfigError(f"{where}: {spec.func} is not callable; a reward is f(prompts, completions, **columns)")
    return target  # type: ignore[no-any-return]


class _Named:
    """A reward under a given name (TRL labels its log columns with ``__name__``)."""

    def __init__(self, func: Callable[..., Any], name: str) -> None:
        self.func, self.__name__ = func, name

    def __call__(self, *args: Any, **kwargs: Any) -> list[float | None]:
        return self.func(*args, **kwargs)  # type: ignore[no-any-return]


class _Measure(_Named):
    """The first reward, which also measures the completions with lw-core (words, loops, degenerate share) for the
    log, and appends them to ``completions.jsonl``: the run's record of what the model learned to write."""

    def __init__(self, reward: _Named, completions_path: Path | None) -> None:
        super().__init__(reward.func, reward.__name__)
        self.completions_path = completions_path

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        texts = [_text(c) for c in completions]
        required = kwargs.get("length") or [None] * len(texts)
        words = [count_words(t) for t in texts]
        loop_free = [loop_free_words(t) for t in texts]
        degenerate = [repeated_ngram_ratio(t) > REPETITION_THRESHOLD for t in texts]
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and texts:
            log_metric("completions/words", statistics.fmean(words))
            ratios = [w / r for w, r in zip(words, required, strict=True) if r]
            if ratios:
                log_metric("completions/words_ratio", statistics.median(ratios))
            log_metric("completions/degenerate", sum(degenerate) / len(texts))
            log_metric("completions/looped", sum(loop_onset(t) is not None for t in texts) / len(texts))
        if self.completions_path is not None:
            state = kwargs.get("trainer_state")
            step = state.global_step + 1 if state is not None else None
            ids = kwargs.get("id") or [None] * len(texts)
            with JsonlWriter(self.completions_path) as writer:
                for i, text in enumerate(texts):
                    writer.write({
                        "step": step, "id": ids[i], "length": required[i], "words": words[i],
                        "loop_free_words": loop_free[i], "degenerate": degenerate[i], "text": text,
                    })  # fmt: skip
        return self.func(prompts=prompts, completions=completions, **kwargs)  # type: ignore[no-any-return]


def _measured(rewards: list[Reward], completions_path: Path | None) -> list[Reward]:
    first = rewards[0]
    assert isinstance(first, _Named)
    return [_Measure(first, completions_path), *rewards[1:]]


def _text(completion: Any) -> str:
    """A completion's text: TRL hands plain strings or ``[{"role": "assistant", "content": ...}]``. (lw-bench's
    ``completion_text`` does the same for rewards; lw-train cannot import it.)"""
    if isinstance(completion, str):
        return completion
    return "\n\n".join(m["content"] for m in completion if isinstance(m.get("content"), str))


def _row(instruction: Instruction, system_prompt: str | None) -> dict[str, Any]:
    """A TRL conversational prompt row; every other column reaches the rewards."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": instruction.prompt})
    return {"prompt": messages, "length": instruction.length, "id": instruction.id}


def _rollout_func(rollout: PolicyRollout, config: GRPOConfig, tokenizer: Any) -> Callable[[list[Any], Any], Any]:
    """TRL's ``rollout_func`` around a :class:`PolicyRollout`: save and sync the weights when the step moved on,
    tokenize the prompts as TRL would, and return token ids (an end-of-turn token added where the server stopped
    on one, so TRL counts the completion as finished and trains the model to stop there)."""
    folder = config.output_dir / ROLLOUT_FOLDER
    synced: list[int] = []
    eos = tokenizer.eos_token_id

    def rollout_func(prompts: list[Any], trainer: Any) -> dict[str, Any]:
        step = trainer.state.global_step
        if not synced or synced[-1] != step:
            policy = trainer.accelerator.unwrap_model(trainer.model)
            policy.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            rollout.sync(folder)
            synced.append(step)
        prompt_ids = [
            tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
            for p in prompts
        ]
        outputs = rollout.generate(
            prompt_ids,
            max_tokens=config.max_completion_length,
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k,
            repetition_penalty=config.repetition_penalty,
            seed=config.seed + step,
        )
        completion_ids = [
            [*ids, eos] if finished and (not ids or ids[-1] != eos) and len(ids) < config.max_completion_length else ids
            for ids, finished in outputs
        ]
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}

    return rollout_func


class _GRPOProgress(_run.ProgressAndLog):
    """The progress bar shows the reward and its parts, completion length and the degenerate share."""

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self._progress is None:
            return
        last = self.last
        parts = ", ".join(
            f"{key.split('/')[1].removesuffix('_reward')} {value:+.2f}"
            for key, value in last.items()
            if key.startswith("rewards/") and key.endswith("/mean")
        )
        status = []
        if "reward" in last:
            status.append(f"reward {last['reward']:+.3f}" + (f" ({parts})" if parts else ""))
        if "completions/mean_length" in last:
            status.append(f"{last['completions/mean_length']:.0f} tok")
        if "completions/degenerate" in last:
            status.append(f"degenerate {last['completions/degenerate']:.0%}")
        self._progress.update(self._task, completed=state.global_step, status=" · ".join(status))


class _RewardPlot(TrainerCallback):
    """Redraws ``rewards.png`` at every checkpoint, so a long run shows its curve before it ends."""

    def __init__(self, log_path: Path, png: Path, *, enabled: bool) -> None:
        self.log_path, self.png, self.enabled = log_path, png, enabled

    def on_save(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self.enabled:
            plot_rewards(self.log_path, self.png)


def plot_rewards(log_path: Path, png: Path) -> Path | None:
    """Reward parts, completion lengths and the degenerate share per step from ``log.jsonl``, drawn into ``png``.

    The last line of a step wins (a resumed run logs the steps after its checkpoint again). Returns None, drawing
    nothing, when the log holds no reward yet.
    """
    if not log_path.is_file():
        return None
    by_step: dict[int, dict[str, float]] = {}
    for line in log_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            if "reward" in record:
                by_step[int(record["step"])] = record
    if not by_step:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = sorted(by_step)
    rows = [by_step[s] for s in steps]

    def series(key: str) -> list[float]:
        return [float(r[key]) if r.get(key) is not None else float("nan") for r in rows]

    figure = Figure(figsize=(8, 9), layout="constrained")  # its own canvas: the caller's backend stays as it is
    FigureCanvasAgg(figure)
    top, middle, bottom = figure.subplots(3, 1, sharex=True)
    top.plot(steps, series("reward"), label="reward (weighted sum)", color="black", linewidth=2)
    for key in sorted(k for k in rows[-1] if k.startswith("rewards/") and k.endswith("/mean")):
        top.plot(steps, series(key), label=key.split("/")[1])
    top.set_ylabel("reward")
    top.legend(fontsize=8)
    middle.plot(steps, series("completions/mean_length"), label="tokens (mean)")
    if "completions/words" in rows[-1]:
        middle.plot(steps, series("completions/words"), label="words (mean)")
    middle.set_ylabel("completion length")
    middle.legend(fontsize=8)
    for key, label in (
        ("completions/degenerate", "degenerate share"),
        ("completions/looped", "share with a loop"),
        ("completions/clipped_ratio", "share cut at max_completion_length"),
        ("completions/words_ratio", "words ÷ required (median)"),
    ):
        if key in rows[-1]:
            bottom.plot(steps, series(key), label=label)
    bottom.set_xlabel("step")
    bottom.legend(fontsize=8)
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f".{png.name}.tmp.png")
    figure.savefig(tmp, dpi=100)
    tmp.replace(png)
    return png


def _step_of(checkpoint: Path | None) -> int:
    return int(checkpoint.name.rsplit("-", 1)[1]) if checkpoint is not None else 0
