"""Packed SFT on ``transformers.Trainer``: lw-train's packing, collator and loss inside the standard training loop.

Why transformers' Trainer and not TRL's SFTTrainer: TRL's padding-free mode refuses custom collators, and its
packing joins all bins of a batch into one row; everything SFTTrainer adds on top of Trainer (dataset
formatting, its own packing and loss) is what lw-train replaces. So SFT needs no ``trl`` import (GPU images without
trl can train), and the loop, optimizer, scheduler, checkpoints, accelerate/FSDP/DeepSpeed stay transformers'.

What is plugged in:

- data: :func:`tokenize_chats` in the configured prompt format (over-long samples dropped and counted),
  :func:`pack` into bins of ``max_tokens``; with ``order="grouped"`` (ours) grouped into whole optimizer steps
  (``ranks x accumulation x packs_per_device`` bins of similar size) that :class:`StepShuffledSampler` shuffles per
  epoch from ``(seed, epoch)``, so a resumed run replays the same order; with ``order="original"`` the bins in
  packing order every epoch, the last one dropped, as THUDM/LongWriter trains;
- batches: :class:`PackedCollator` rows with restarting positions and ``cu_seq_lens``;
- loss: :func:`model_loss` inside the model's forward (so DDP, FSDP and DeepSpeed see an ordinary forward), with
  the counts of the whole optimizer step on all ranks, so the ``sequence`` and ``longwriter`` reductions do not
  depend on how a step is split over ranks and accumulation.
"""

from __future__ import annotations

import logging
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler, SequentialSampler
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.modeling_outputs import CausalLMOutputWithPast

from . import _run
from .attention import (
    PACKED_ATTENTIONS,
    use_flex_attention,
    use_segment_attention,
    use_varlen_attention,
    varlen_available,
)
from .collators import BinDataset, PackedCollator
from .config import Attention, SFTConfig
from .data import read_sft_records
from .errors import ConfigError, PackingError, TokenizationError
from .loss import Reduction, TargetCounts, count_targets, model_loss
from .models import resolve_model
from .packing import pack, pack_fill
from .tokenization import CHAT_TEMPLATES, Format, TokenizedChats, resolve_prompt_format, tokenize_chats

log = logging.getLogger("lw_train")

__all__ = ["PackedTrainer", "StepShuffledSampler", "train_sft"]


def train_sft(
    config: SFTConfig, *, callbacks: Sequence[TrainerCallback] = (), progress: bool = True
) -> _run.TrainResult:
    """Train ``config.model`` on ``config.data`` and write the final model to ``config.output_dir``.

    Returns the output folder, the summary (also saved as ``summary.json``) and the trained model. ``callbacks``
    are extra ``transformers.TrainerCallback`` s; ``progress`` shows the progress bar and prints the summary.
    """
    from transformers import set_seed

    began = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    args = _training_arguments(config)
    is_main = args.process_index == 0
    resume_from = _run.prepare_output(config, is_main=is_main)
    folder = resolve_model(config.model)
    tokenizer = _run.load_tokenizer(config, folder)
    prompt_format = _prompt_format(config, folder)
    records = read_sft_records(config.data, where=config.where("data"))
    samples = tokenize_chats(
        records, tokenizer, max_tokens=config.max_tokens, overlong="drop", prompt_format=prompt_format
    )
    _check_samples(config, samples, len(records))
    train_ids, eval_ids = _run.split(len(samples), config)
    step_bins = args.world_size * config.gradient_accumulation_steps * config.packs_per_device
    train_bins, dropped_with_bins = _bins(config, samples, train_ids, step_bins, last_dropped=True)
    eval_bins = _bins(config, samples, eval_ids, 1, last_dropped=False)[0] if eval_ids else []

    set_seed(config.seed)  # LoRA's initial adapters are random
    model = _load_model(config, folder)
    stats = _run.RunStats()
    show = progress and is_main
    trainer = PackedTrainer(
        model=model,
        args=args,
        train_dataset=BinDataset(samples, train_bins),
        eval_dataset=BinDataset(samples, eval_bins) if eval_bins else None,
        data_collator=PackedCollator(pad_token_id=_pad_id(tokenizer), pad_to_multiple_of=config.pad_to_multiple_of),
        processing_class=tokenizer,
        callbacks=[
            _run.CheckpointMarker(),
            _run.ProgressAndLog(config.output_dir / "log.jsonl", stats, show=show),
            *callbacks,
        ],
        sampler=(
            SequentialSampler(range(len(train_bins)))
            if config.order == "original"
            else StepShuffledSampler(len(train_bins), step_bins, config.seed)
        ),
        reduction=config.loss_reduction,
        chunk_size=config.loss_chunk_size,
        stats=stats,
    )
    train_seconds = _run.train(trainer, resume_from)
    eval_loss = trainer.evaluate()["eval_loss"] if eval_bins else None
    if prompt_format != "template":  # servers then prompt the model as it was trained
        tokenizer.chat_template = CHAT_TEMPLATES[prompt_format]
    _unpack_for_inference(trainer.model)
    trained = _run.save_final(trainer, config, tokenizer)
    lengths = samples.lengths
    summary = _run.summary(
        config, trainer, began=began, train_seconds=train_seconds, resume_from=resume_from,
        records=len(records), samples=len(train_ids) - dropped_with_bins, eval_samples=len(eval_ids),
        dropped_overlong=len(samples.dropped_overlong), dropped_untrained=len(samples.dropped_untrained),
        dropped_with_last_bins=dropped_with_bins, processes=args.world_size, prompt_format=prompt_format,
        packing=config.packing, order=config.order, bins=len(train_bins),
        pack_fill=round(pack_fill(train_bins, lengths, config.max_tokens), 4), trained_tokens=stats.trained_tokens,
        tokens_per_s=round(stats.trained_tokens / train_seconds, 2) if train_seconds > 0 else 0.0,
        **_run.loss_fields(trainer, eval_loss),
    )  # fmt: skip
    return _run.finish(config, summary, trained, is_main=is_main, show=show)


class StepShuffledSampler(Sampler[int]):
    """Bin indices in whole optimizer steps (``step_bins`` consecutive bins), the steps shuffled per epoch.

    The order depends only on ``(seed, epoch)``, so a resumed run sees the same bins in the same steps; keeping
    steps whole keeps bins of similar size together (no rank waits for a longer row).

    >>> sampler = StepShuffledSampler(6, step_bins=2, seed=0)
    >>> sampler.set_epoch(1)
    >>> sorted(sampler) == list(range(6)), len(sampler)
    (True, 6)
    """

    def __init__(self, num_bins: int, step_bins: int, seed: int) -> None:
        self.num_bins, self.step_bins, self.seed, self.epoch = num_bins, step_bins, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_bins

    def __iter__(self) -> Iterator[int]:
        steps = -(-self.num_bins // self.step_bins)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(steps)
        for step in order.tolist():
            yield from range(step * self.step_bins, min((step + 1) * self.step_bins, self.num_bins))


@dataclass(frozen=True)
class _LossRequest:
    reduction: Reduction
    counts: TargetCounts | None
    chunk_size: int


_NOT_FOR_THE_DECODER = frozenset({"return_dict", "output_attentions", "output_hidden_states", "num_items_in_batch"})


def _packed_forward(self: Any, input_ids: Any = None, labels: Any = None, lw_loss: Any = None, **inputs: Any) -> Any:
    """The causal LM's forward with lw-train's loss: decoder, then the chunked loss (no full logits)."""
    if lw_loss is None:  # generation and any other ordinary call
        return type(self).forward(self, input_ids=input_ids, labels=labels, **inputs)
    batch = {k: v for k, v in inputs.items() if v is not None and k not in _NOT_FOR_THE_DECODER}
    batch |= {"input_ids": input_ids, "labels": labels}
    loss = model_loss(
        self, batch, reduction=lw_loss.reduction, global_counts=lw_loss.counts, chunk_size=lw_loss.chunk_size
    )
    return CausalLMOutputWithPast(loss=loss)


class PackedTrainer(Trainer):
    """``transformers.Trainer`` with lw-train's bin sampler and loss, counted over each whole optimizer step.

    ``get_batch_samples`` (called once per optimizer step with all its micro-batches) sums their
    :class:`TargetCounts` over the ranks; ``compute_loss`` passes them to the model's forward, where
    :func:`model_loss` divides by them, and multiplies by the number of processes because DDP/FSDP/DeepSpeed
    average gradients over ranks. The logged loss is then exactly the loss of the global batch.
    """

    loss_is_scaled_for_ga = True

    def __init__(
        self,
        model: Any,
        *args: Any,
        sampler: Sampler[int],
        reduction: Reduction,
        chunk_size: int = 1024,
        stats: _run.RunStats | None = None,
        **kwargs: Any,
    ) -> None:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        base.forward = types.MethodType(_packed_forward, base)
        super().__init__(model, *args, **kwargs)
        self.bin_sampler, self.reduction, self.chunk_size = sampler, reduction, chunk_size
        self.stats = stats or _run.RunStats()

    def _get_train_sampler(self, train_dataset: Any = None) -> Sampler[int]:
        return self.bin_sampler

    def _get_eval_sampler(self, eval_dataset: Any) -> Sampler[int] | None:
        return torch.utils.data.SequentialSampler(eval_dataset)

    def get_batch_samples(
        self, epoch_iterator: Iterator[Any], num_batches: int, device: torch.device
    ) -> tuple[list[Any], Any]:
        batches = []
        for _ in range(num_batches):
            try:
                batches.append(next(epoch_iterator))
            except StopIteration:
                break
        counts = sum((count_targets(b) for b in batches), TargetCounts()).all_reduce()
        self.stats.trained_tokens += counts.tokens
        return batches, counts

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        counts = num_items_in_batch if isinstance(num_items_in_batch, TargetCounts) else None
        outputs = model(**inputs, lw_loss=_LossRequest(self.reduction, counts, self.chunk_size))
        loss = outputs.loss
        if counts is not None:  # training: the ranks' gradients are averaged, the counts were global
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs = {**logs, "trained_tokens": self.stats.trained_tokens, "tokens_per_s": self.stats.tokens_per_s()}
        super().log(logs, start_time)


def _training_arguments(config: SFTConfig) -> TrainingArguments:
    return TrainingArguments(
        per_device_train_batch_size=config.packs_per_device,
        per_device_eval_batch_size=1,
        remove_unused_columns=False,
        prediction_loss_only=True,
        dataloader_drop_last=False,
        ddp_find_unused_parameters=False,
        **_run.common_arguments(config),
    )


def _check_samples(config: SFTConfig, samples: TokenizedChats, records: int) -> None:
    if len(samples) > 0:
        if samples.dropped_overlong:
            log.warning(
                "%d of %d records are longer than max_tokens=%d and were dropped (not truncated)",
                len(samples.dropped_overlong), records, config.max_tokens,
            )  # fmt: skip
        return
    if len(samples.dropped_overlong) == records:
        raise ConfigError(
            f"{config.where('max_tokens')}: every one of the {records} records in {config.data} is longer than "
            f"max_tokens={config.max_tokens} tokens, so nothing is left to train; raise max_tokens"
        )
    raise ConfigError(
        f"{config.where('data')}: no record of {config.data} has assistant tokens to train on "
        f"({len(samples.dropped_untrained)} without, {len(samples.dropped_overlong)} over-long)"
    )


def _prompt_format(config: SFTConfig, folder: str) -> Format:
    """The configured prompt format; ``longwriter`` becomes the released code's format for the model's family."""
    family = _run.model_type(config, folder) if config.prompt_format == "longwriter" else None
    try:
        return resolve_prompt_format(config.prompt_format, family)
    except TokenizationError as error:
        raise ConfigError(f"{config.where('prompt_format')}: {error}") from None


def _bins(
    config: SFTConfig, samples: TokenizedChats, ids: list[int], step_bins: int, *, last_dropped: bool
) -> tuple[list[list[int]], int]:
    """Bins of sample indices, a multiple of ``step_bins`` of them, and how many samples were left out with bins.

    ``order="grouped"``: bins are balanced over the ranks and grouped into steps of similar size, none dropped.
    ``order="original"``: THUDM/LongWriter's ``train/sort_and_group.py`` never writes the pack still open when its
    loop ends (lines 47-72: a pack is appended only when the next sample does not fit), and ``train/dataset.py``
    keeps a multiple of the GPU count (lines 58-59); here, with ``last_dropped``, the last bin goes and the rest is
    cut to a multiple of the step's bins, in packing order.
    """
    order = list(ids)
    if config.packing == "nextfit":  # the original packs its input after one shuffle (pre_tokenize_*.py)
        np.random.default_rng([config.seed, 2]).shuffle(order)
    lengths = samples.lengths
    original = config.order == "original"
    try:
        local = pack(
            [lengths[i] for i in order], config.max_tokens, config.packing, num_ranks=1 if original else step_bins
        )
    except PackingError as error:
        raise ConfigError(
            f"{config.where('gradient_accumulation_steps')}: {error} (one optimizer step takes ranks x "
            f"gradient_accumulation_steps x packs_per_device = {step_bins} bins)"
        ) from None
    bins = [[order[i] for i in b] for b in local]
    if not original:
        return bins, 0
    kept = bins[:-1] if last_dropped else bins
    kept = kept[: len(kept) // step_bins * step_bins]
    if not kept:
        raise ConfigError(
            f"{config.where('order')}: the original order drops the last bin and keeps a multiple of {step_bins} "
            f"(the bins of one optimizer step), which leaves none of the {len(bins)} bins; add data or use "
            "order = 'grouped'"
        )
    return kept, sum(map(len, bins)) - sum(map(len, kept))


def _pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def _load_model(config: SFTConfig, folder: str) -> Any:
    attention = config.attention
    if attention == "auto":
        attention, why = _auto_attention(torch.cuda.is_available(), _has_flash_attention(), varlen_available())
        log.info("attention: auto picked %r (%s)", attention, why)
    else:
        _check_attention(config, attention)
        log.info("attention: %r, as configured", attention)
    model = _run.load_model(
        config, folder, attn_implementation="sdpa" if attention in _SWITCHED_FROM_SDPA else attention
    )
    if attention in _SWITCHED_FROM_SDPA:
        _SWITCHED_FROM_SDPA[attention](model)
    model.config.use_cache = False
    if config.lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, _run.lora_config(config))
    return model


#: lw-train's own attention paths for packed rows (``lw_train.attention``): the model loads with sdpa, then switches.
_SWITCHED_FROM_SDPA: dict[str, Callable[[Any], Any]] = {
    "segments": use_segment_attention,
    "flex": use_flex_attention,
    "varlen": use_varlen_attention,
}

#: Packed-row training throughput on CUDA without flash-attn, as a multiple of sdpa with the block-diagonal mask:
#: ``benchmarks/train_throughput_cuda.py`` on an H200 (bf16, 316 M-parameter Llama, 16k-token rows, 2026-11-27).
#: ``auto`` picks the fastest path with a figure here. flex and varlen have none yet (the GPU measurement is
#: pending: ``benchmarks/gpu_check.sh``), so ``auto`` does not pick them until one is written here.
_CUDA_SPEED_VS_MASKED_SDPA: dict[Attention, float | None] = {
    "sdpa": 1.0,
    "segments": 0.26,
    "flex": None,
    "varlen": None,
}


def _auto_attention(cuda: bool, flash: bool, varlen: bool = False) -> tuple[Attention, str]:
    """The attention ``auto`` picks, and why (logged). On the CPU per-segment sdpa, 1.3x the masked sdpa on 2 cores;
    on CUDA FlashAttention-2 varlen when flash-attn is installed, else the fastest path measured on CUDA
    (``_CUDA_SPEED_VS_MASKED_SDPA``; ``varlen`` says whether this torch has torch's varlen attention).

    >>> _auto_attention(cuda=True, flash=False)[0], _auto_attention(cuda=False, flash=False)[0]
    ('sdpa', 'segments')
    """
    if not cuda:
        return "segments", "on the CPU per-segment sdpa measured 1.3x the masked sdpa"
    if flash:
        return "flash_attention_2", "flash-attn is installed: FlashAttention-2 varlen"
    measured = {
        name: speed
        for name, speed in _CUDA_SPEED_VS_MASKED_SDPA.items()
        if speed is not None and (name != "varlen" or varlen)
    }
    best = max(measured, key=lambda name: measured[name])
    why = f"the fastest measured on CUDA, {measured[best]:.2f}x the masked sdpa"
    unmeasured = [name for name, speed in _CUDA_SPEED_VS_MASKED_SDPA.items() if speed is None]
    return best, why + (f"; not measured on CUDA yet: {', '.join(unmeasured)}" if unmeasured else "")


def _check_attention(config: SFTConfig, attention: Attention) -> None:
    """flex and varlen train on CUDA only: say so before any training starts."""
    if attention not in ("flex", "varlen"):
        return
    where = config.where("attention")
    if not torch.cuda.is_available():
        kernel = "flex attention has no backward on the CPU" if attention == "flex" else "its kernels are CUDA's"
        raise ConfigError(
            f"{where}: attention={attention!r} trains on a CUDA GPU only ({kernel}); use 'auto' (segments here)"
        )
    if attention == "varlen" and not varlen_available():
        raise ConfigError(
            f"{where}: attention='varlen' needs torch >= 2.9 (torch.nn.attention.varlen); this is torch "
            f"{torch.__version__}: use 'flex' or 'auto'"
        )
    if attention == "varlen" and config.dtype == "float32":
        raise ConfigError(
            f"{where}: attention='varlen' runs bf16/fp16 kernels only; set dtype='bfloat16' or use 'flex'"
        )


def _has_flash_attention() -> bool:
    import importlib.util

    return importlib.util.find_spec("flash_attn") is not None


def _unpack_for_inference(model: Any) -> None:
    """Undo what packed training changed, so the saved model generates as a plain one (cache on, sdpa)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    vars(base).pop("forward", None)  # drop lw-train's loss forward (and accelerate's wrapper of it)
    base.config.use_cache = True
    if base.config._attn_implementation in PACKED_ATTENTIONS:  # servers and generate() get sdpa back
        base.set_attn_implementation("sdpa")
