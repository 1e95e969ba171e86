"""Causal-LM loss with ``token``, ``sequence`` or ``longwriter`` reduction, exact under accumulation and ranks.

The three reductions, for the trained tokens ``t`` of one optimizer step (all micro-batches on all ranks):

- ``token``: ``sum_t loss_t / T`` with ``T`` the trained tokens of the step: every token weighs the same, so a
  30k-token sample outweighs a 300-token one a hundred times.
- ``sequence`` (LongAlign's loss weighting, arXiv 2401.18058 §3.2, and its released code): each sample's mean
  token loss, averaged over the ``S`` trained samples of the step: every sample weighs the same.
- ``longwriter`` (the released LongWriter training code, THUDM/LongWriter@3fcfdff ``train/patch/modeling_*.py``
  with ``--pack_loss`` and ``train/main.py``'s ``DataCollatorForLMPackDataset``): each packed row's token mean,
  scaled by the number of samples in the row over 30 (``labels[1].sum() / 30``), averaged over the ``R`` rows of
  the step (DeepSpeed averages the ranks' losses; the scripts train one row per GPU, no accumulation).

Why global counts: a mean taken per micro-batch (or per rank) weights tokens of small batches more than tokens of
large ones, so the result changes with the accumulation steps and the number of GPUs. Here each micro-batch
returns its *sum* divided by the number of trained tokens (sequences, rows) of the whole optimizer step on all
ranks; summing the micro-batch gradients then gives exactly the global value.

A trainer does, per optimizer step::

    counts = sum((count_targets(b) for b in micro_batches), TargetCounts()).all_reduce()
    for b in micro_batches:
        model_loss(model, b, reduction="sequence", global_counts=counts).backward()

With DDP/FSDP, which *average* gradients over ranks, multiply each loss by the world size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .collators import IGNORE_INDEX
from .config import REDUCTIONS, Reduction
from .errors import LossError

#: The constant the released LongWriter code divides each row's sample count by (``train/main.py``).
LONGWRITER_DIVISOR = 30

__all__ = [
    "LONGWRITER_DIVISOR",
    "LossError",
    "Reduction",
    "TargetCounts",
    "chunked_cross_entropy",
    "count_targets",
    "lm_loss",
    "model_loss",
]


@dataclass(frozen=True)
class TargetCounts:
    """Trained tokens, trained sequences (samples with at least one trained token) and rows in a batch."""

    tokens: int = 0
    sequences: int = 0
    rows: int = 0

    def __add__(self, other: TargetCounts) -> TargetCounts:
        return TargetCounts(self.tokens + other.tokens, self.sequences + other.sequences, self.rows + other.rows)

    def all_reduce(self, group: Any = None) -> TargetCounts:
        """Sum over the data-parallel ranks (a no-op unless ``torch.distributed`` is initialized)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return self
        device = "cuda" if torch.distributed.get_backend(group) == "nccl" else "cpu"
        totals = torch.tensor([self.tokens, self.sequences, self.rows], dtype=torch.long, device=device)
        torch.distributed.all_reduce(totals, group=group)
        return TargetCounts(*(int(x) for x in totals.tolist()))


def _targets_and_segments(
    labels: torch.Tensor, cu_seq_lens: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Next-token targets ``[B, T-1]``, which of them are trained, and the sample each belongs to."""
    targets = labels[:, 1:]
    trained = targets != IGNORE_INDEX
    if cu_seq_lens is None:  # padded batch: one sample per row
        segments = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(targets)
    else:  # packed rows: samples are contiguous spans of the flattened batch
        if labels.shape[0] != 1:
            raise LossError(f"packed batches have one row; got labels of shape {tuple(labels.shape)}")
        next_position = torch.arange(1, labels.shape[1], device=labels.device)
        boundaries = cu_seq_lens[1:].to(device=labels.device, dtype=torch.long)
        segments = torch.searchsorted(boundaries, next_position, right=True)[None]
    return targets, trained, segments


def count_targets(batch: Mapping[str, Any]) -> TargetCounts:
    """Trained tokens, sequences and rows of one (micro-)batch; sum them over the optimizer step."""
    labels = batch["labels"]
    _, trained, segments = _targets_and_segments(labels, batch.get("cu_seq_lens_q"))
    return TargetCounts(int(trained.sum()), int(torch.unique(segments[trained]).numel()), int(labels.shape[0]))


def chunked_cross_entropy(
    hidden: torch.Tensor,
    head: torch.Tensor | torch.nn.Module,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    chunk_size: int = 1024,
    softcap: float | None = None,
) -> torch.Tensor:
    """Per-token cross-entropy of the LM head applied to ``hidden``, without materializing all logits.

    ``hidden`` is ``[N, H]``, ``targets`` ``[N]``; ``head`` is the output-embedding weight ``[V, H]`` or the LM-head
    module itself (called chunk by chunk, so DeepSpeed ZeRO-3 gathers its weight and LoRA layers apply). Logits
    exist for ``chunk_size`` tokens at a time, in forward and (by recomputation) in backward: memory is
    O(chunk_size x vocab) instead of O(N x vocab), which at 32k tokens and a 150k vocabulary is the difference
    between ~20 GB and ~0.6 GB. Logits are upcast to fp32; ``softcap`` applies Gemma-style logit soft-capping.
    """
    if chunk_size < 1:
        raise LossError(f"chunk_size must be >= 1, got {chunk_size}")
    losses = []
    for start in range(0, hidden.shape[0], chunk_size):
        args = (hidden[start : start + chunk_size], head, bias, targets[start : start + chunk_size], softcap)
        if torch.is_grad_enabled():
            losses.append(checkpoint(_chunk_loss, *args, use_reentrant=False))
        else:
            losses.append(_chunk_loss(*args))
    return torch.cat(losses) if losses else hidden.new_zeros(0, dtype=torch.float32)


def _chunk_loss(
    hidden: torch.Tensor,
    head: torch.Tensor | torch.nn.Module,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    softcap: float | None,
) -> torch.Tensor:
    logits = (F.linear(hidden, head, bias) if isinstance(head, torch.Tensor) else head(hidden)).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, targets, reduction="none")


def lm_loss(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    lm_head: torch.nn.Module | torch.Tensor,
    *,
    reduction: Reduction = "token",
    global_counts: TargetCounts | None = None,
    cu_seq_lens: torch.Tensor | None = None,
    chunk_size: int = 1024,
    softcap: float | None = None,
) -> torch.Tensor:
    """Loss from the last hidden states ``[B, T, H]`` and the labels ``[B, T]`` (not shifted).

    ``reduction`` is ``token``, ``sequence`` or ``longwriter`` (see the module docstring); ``cu_seq_lens`` marks the
    samples of a packed row (without it each row is one sample); ``global_counts`` are the counts of the whole
    optimizer step on all ranks (default: this batch's own, i.e. one process and no accumulation).
    """
    if reduction not in REDUCTIONS:
        raise LossError(f"unknown loss reduction {reduction!r}: use one of {', '.join(REDUCTIONS)}")
    targets, trained, segments = _targets_and_segments(labels, cu_seq_lens)
    token_losses = chunked_cross_entropy(
        hidden[:, :-1][trained], lm_head, targets[trained], chunk_size=chunk_size, softcap=softcap
    )
    if token_losses.numel() == 0:  # nothing trained here: a zero that still reaches every weight (DDP needs it)
        weights = [lm_head] if isinstance(lm_head, torch.Tensor) else list(lm_head.parameters())
        return (hidden.sum() + sum(w.sum() for w in weights)) * 0.0
    if global_counts is None:
        global_counts = count_targets({"labels": labels, "cu_seq_lens_q": cu_seq_lens})
    if reduction == "token":
        return token_losses.sum() / max(global_counts.tokens, 1)
    segment_of_token = segments[trained]
    if reduction == "sequence":
        tokens_per_segment = torch.bincount(segment_of_token).to(token_losses.dtype)
        return (token_losses / tokens_per_segment[segment_of_token]).sum() / max(global_counts.sequences, 1)
    rows = labels.shape[0]
    row_of_token = torch.arange(rows, device=labels.device)[:, None].expand_as(targets)[trained]
    tokens_per_row = torch.bincount(row_of_token, minlength=rows).to(token_losses.dtype)
    trained_segments = torch.unique(segment_of_token)
    row_of_segment = trained_segments if cu_seq_lens is None else torch.zeros_like(trained_segments)
    sequences_per_row = torch.bincount(row_of_segment, minlength=rows).to(token_losses.dtype)
    row_weight = sequences_per_row / LONGWRITER_DIVISOR / tokens_per_row.clamp(min=1)
    return (token_losses * row_weight[row_of_token]).sum() / max(global_counts.rows, 1)


def model_loss(
    model: torch.nn.Module,
    batch: Mapping[str, Any],
    *,
    reduction: Reduction = "token",
    global_counts: TargetCounts | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Run a Hugging Face causal LM on a collator batch and return :func:`lm_loss`.

    Calls the decoder (not the LM head) with ``use_cache=False`` (required for sample isolation in packed rows
    with sdpa/eager), then computes the chunked loss through the model's output embeddings.
    """
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    causal_lm: Any = model  # a transformers PreTrainedModel (or a peft wrapper of one)
    outputs = causal_lm.get_decoder()(**inputs, use_cache=False)
    return lm_loss(
        outputs.last_hidden_state,
        batch["labels"],
        causal_lm.get_output_embeddings(),
        reduction=reduction,
        global_counts=global_counts,
        cu_seq_lens=batch.get("cu_seq_lens_q"),
        chunk_size=chunk_size,
        softcap=getattr(causal_lm.config, "final_logit_softcapping", None),
    )
