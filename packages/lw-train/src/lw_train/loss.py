"""Causal-LM loss with ``token`` or ``sequence`` reduction, exact under accumulation and data parallelism.

Why global counts: a mean taken per micro-batch (or per rank) weights tokens of small batches more than tokens of
large ones, so the result changes with the accumulation steps and the number of GPUs. Here each micro-batch
returns its *sum* divided by the number of trained tokens (or sequences) of the whole optimizer step on all ranks;
summing the micro-batch gradients then gives exactly the global mean.

A trainer does, per optimizer step::

    counts = sum((count_targets(b) for b in micro_batches), TargetCounts()).all_reduce()
    for b in micro_batches:
        model_loss(model, b, reduction="sequence", global_counts=counts).backward()

With DDP/FSDP, which *average* gradients over ranks, multiply each loss by the world size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lw_core import LWError
from torch.utils.checkpoint import checkpoint

from .collators import IGNORE_INDEX

Reduction = Literal["token", "sequence"]

__all__ = ["LossError", "Reduction", "TargetCounts", "chunked_cross_entropy", "count_targets", "lm_loss", "model_loss"]


class LossError(LWError):
    """The loss was asked for with inconsistent arguments."""


@dataclass(frozen=True)
class TargetCounts:
    """Trained tokens and trained sequences (samples with at least one trained token) in a batch."""

    tokens: int = 0
    sequences: int = 0

    def __add__(self, other: TargetCounts) -> TargetCounts:
        return TargetCounts(self.tokens + other.tokens, self.sequences + other.sequences)

    def all_reduce(self, group: Any = None) -> TargetCounts:
        """Sum over the data-parallel ranks (a no-op unless ``torch.distributed`` is initialized)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return self
        device = "cuda" if torch.distributed.get_backend(group) == "nccl" else "cpu"
        totals = torch.tensor([self.tokens, self.sequences], dtype=torch.long, device=device)
        torch.distributed.all_reduce(totals, group=group)
        return TargetCounts(int(totals[0]), int(totals[1]))


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
    """Trained tokens and sequences of one (micro-)batch from a collator; sum them over the optimizer step."""
    _, trained, segments = _targets_and_segments(batch["labels"], batch.get("cu_seq_lens_q"))
    return TargetCounts(int(trained.sum()), int(torch.unique(segments[trained]).numel()))


def chunked_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Per-token cross-entropy of ``hidden @ weight.T`` without materializing all logits.

    ``hidden`` is ``[N, H]``, ``targets`` ``[N]``. Logits exist for ``chunk_size`` tokens at a time, in forward
    and (by recomputation) in backward: memory is O(chunk_size x vocab) instead of O(N x vocab), which at 32k
    tokens and a 150k vocabulary is the difference between ~20 GB and ~0.6 GB. Logits are upcast to fp32.
    """
    if chunk_size < 1:
        raise LossError(f"chunk_size must be >= 1, got {chunk_size}")
    losses = [
        checkpoint(
            _chunk_loss,
            hidden[start : start + chunk_size],
            weight,
            bias,
            targets[start : start + chunk_size],
            use_reentrant=False,
        )
        if torch.is_grad_enabled()
        else _chunk_loss(hidden[start : start + chunk_size], weight, bias, targets[start : start + chunk_size])
        for start in range(0, hidden.shape[0], chunk_size)
    ]
    return torch.cat(losses) if losses else hidden.new_zeros(0, dtype=torch.float32)


def _chunk_loss(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor
) -> torch.Tensor:
    logits = F.linear(hidden, weight, bias).float()
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
) -> torch.Tensor:
    """Loss from the last hidden states ``[B, T, H]`` and the labels ``[B, T]`` (not shifted).

    ``token``: sum of token losses / global trained tokens. ``sequence`` (LongAlign): each sample's mean token loss,
    summed and divided by the global number of trained samples, so a 30k-token sample counts as much as a
    300-token one. ``cu_seq_lens`` marks the samples of a packed row; without it each row is a sample.
    ``global_counts`` defaults to this batch's own counts (one process, no accumulation).
    """
    if reduction not in ("token", "sequence"):
        raise LossError(f"unknown loss reduction {reduction!r}: use 'token' or 'sequence'")
    weight = lm_head if isinstance(lm_head, torch.Tensor) else lm_head.weight
    bias = None if isinstance(lm_head, torch.Tensor) else getattr(lm_head, "bias", None)
    targets, trained, segments = _targets_and_segments(labels, cu_seq_lens)
    token_losses = chunked_cross_entropy(
        hidden[:, :-1][trained], weight, targets[trained], bias=bias, chunk_size=chunk_size
    )
    if token_losses.numel() == 0:  # nothing trained here: a zero that still reaches every weight (DDP needs it)
        return (hidden.sum() + weight.sum()) * 0.0
    if global_counts is None:
        global_counts = count_targets({"labels": labels, "cu_seq_lens_q": cu_seq_lens})
    if reduction == "token":
        return token_losses.sum() / max(global_counts.tokens, 1)
    segment_of_token = segments[trained]
    tokens_per_segment = torch.bincount(segment_of_token).to(token_losses.dtype)
    return (token_losses / tokens_per_segment[segment_of_token]).sum() / max(global_counts.sequences, 1)


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
    outputs = model.get_decoder()(**inputs, use_cache=False)
    return lm_loss(
        outputs.last_hidden_state,
        batch["labels"],
        model.get_output_embeddings(),
        reduction=reduction,
        global_counts=global_counts,
        cu_seq_lens=batch.get("cu_seq_lens_q"),
        chunk_size=chunk_size,
    )
