"""DPO with TRL's ``DPOTrainer`` on lw preference pairs, sized for long answers.

TRL's defaults suit short chats: ``max_length=1024`` with truncation would cut a long answer and its end-of-turn
token, and the pair would teach the model to stop nowhere. Here ``max_length`` is ``max_tokens`` (default 32k) and
pairs longer than that are dropped and counted, never truncated, as in SFT. The run folder (resumable checkpoints,
``log.jsonl``, ``summary.json``, the final model in ``output_dir``) is the same as :func:`lw_train.train_sft`'s.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from lw_core import PreferencePair
from transformers import TrainerCallback

from . import _run
from .config import DPOConfig
from .data import read_pairs
from .errors import ConfigError
from .models import resolve_model

__all__ = ["train_dpo"]


def train_dpo(
    config: DPOConfig, *, callbacks: Sequence[TrainerCallback] = (), progress: bool = True
) -> _run.TrainResult:
    """DPO of ``config.model`` on the pairs in ``config.data``; the final model is written to ``config.output_dir``.

    ``precompute_ref_log_probs`` computes the reference model's log-probabilities once before training (the
    reference model then leaves memory); with ``lora`` the reference is the base model with adapters disabled.
    """
    import torch
    from datasets import Dataset  # type: ignore[import-untyped]
    from transformers import set_seed
    from trl.trainer.dpo_config import DPOConfig as TRLDPOConfig
    from trl.trainer.dpo_trainer import DPOTrainer

    began = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    args = TRLDPOConfig(
        max_length=config.max_tokens,
        beta=config.beta,
        loss_type=[config.loss_type, "sft"] if config.sft_weight else [config.loss_type],
        loss_weights=[1.0, config.sft_weight] if config.sft_weight else None,
        precompute_ref_log_probs=config.precompute_ref_log_probs,
        per_device_train_batch_size=config.pairs_per_device,
        per_device_eval_batch_size=config.pairs_per_device,
        **_run.common_arguments(config),
    )
    is_main = args.process_index == 0
    resume_from = _run.prepare_output(config, is_main=is_main)
    folder = resolve_model(config.model)
    tokenizer = _run.load_tokenizer(config, folder)
    pairs = read_pairs(config.data, where=config.where("data"))
    kept, overlong = _within(config, pairs, tokenizer)
    rows = [_conversational(pair) for pair in kept]
    train_ids, eval_ids = _run.split(len(rows), config)
    train_rows, eval_rows = [rows[i] for i in train_ids], [rows[i] for i in eval_ids]

    set_seed(config.seed)
    model = _run.load_model(config, folder)
    stats = _run.RunStats()
    show = progress and is_main
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=_run.lora_config(config),
        callbacks=[
            _run.CheckpointMarker(),
            _run.ProgressAndLog(config.output_dir / "log.jsonl", stats, show=show),
            *callbacks,
        ],
    )
    train_seconds = _run.train(trainer, resume_from)
    eval_loss = trainer.evaluate()["eval_loss"] if eval_rows else None
    trained = _run.save_final(trainer, config, tokenizer)
    margins = [e["rewards/margins"] for e in trainer.state.log_history if "rewards/margins" in e]
    summary = _run.summary(
        config, trainer, began=began, train_seconds=train_seconds, resume_from=resume_from,
        pairs=len(train_rows), eval_pairs=len(eval_rows), dropped_overlong=overlong,
        final_margin=margins[-1] if margins else None, **_run.loss_fields(trainer, eval_loss),
    )  # fmt: skip
    return _run.finish(config, summary, trained, is_main=is_main, show=show)


def _conversational(pair: PreferencePair) -> dict[str, list[dict[str, str]]]:
    """TRL's conversational format: message lists under prompt/chosen/rejected."""
    return {
        field: [{"role": m.role, "content": m.content} for m in getattr(pair, field)]
        for field in ("prompt", "chosen", "rejected")
    }


def _within(config: DPOConfig, pairs: list[PreferencePair], tokenizer: Any) -> tuple[list[PreferencePair], int]:
    """Pairs whose prompt + chosen and prompt + rejected both fit ``max_tokens``, and how many did not."""

    def length(messages: list[dict[str, str]]) -> int:
        ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        return len(ids)

    kept = []
    for pair in pairs:
        row = _conversational(pair)
        if max(length(row["prompt"] + row["chosen"]), length(row["prompt"] + row["rejected"])) <= config.max_tokens:
            kept.append(pair)
    if not kept:
        raise ConfigError(
            f"{config.where('max_tokens')}: every one of the {len(pairs)} pairs in {config.data} is longer than "
            f"max_tokens={config.max_tokens} tokens, so nothing is left to train; raise max_tokens"
        )
    return kept, len(pairs) - len(kept)
