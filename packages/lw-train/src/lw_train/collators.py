"""Batch builders: a padded baseline and a padding-free packed collator.

Both return dicts of tensors that a Hugging Face causal LM's ``forward`` accepts (so a ``transformers.Trainer``
can use them as ``data_collator``), plus what :func:`lw_train.loss.model_loss` needs to weight the loss.
Samples are dicts with ``input_ids`` and ``labels`` (lists, numpy arrays or tensors; label ``-100`` = not
trained), as :func:`lw_train.tokenize_chats` produces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .errors import CollatorError

IGNORE_INDEX = -100

__all__ = ["IGNORE_INDEX", "BinDataset", "CollatorError", "PackedCollator", "PaddedCollator"]


def _as_tensor(values: Any, field: str, position: int) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(values, dtype=torch.long)
    except (TypeError, ValueError) as error:
        raise CollatorError(f"sample {position}: field '{field}' is not a sequence of token ids ({error})") from None
    if tensor.dim() != 1:
        raise CollatorError(f"sample {position}: field '{field}' must be 1-D, got shape {tuple(tensor.shape)}")
    return tensor


def _samples(features: Sequence[Mapping[str, Any]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Flatten features into (input_ids, labels) pairs; a feature whose ids are nested is a whole bin."""
    pairs = []
    for position, feature in enumerate(features):
        if "input_ids" not in feature:
            raise CollatorError(f"sample {position} has no 'input_ids' (keys: {sorted(feature)})")
        ids, labels = feature["input_ids"], feature.get("labels", feature["input_ids"])
        nested = not isinstance(ids, torch.Tensor) and len(ids) > 0 and hasattr(ids[0], "__len__")
        groups = zip(ids, labels, strict=True) if nested else [(ids, labels)]
        for sample_ids, sample_labels in groups:
            ids_tensor = _as_tensor(sample_ids, "input_ids", position)
            labels_tensor = _as_tensor(sample_labels, "labels", position)
            if ids_tensor.shape != labels_tensor.shape:
                raise CollatorError(
                    f"sample {position}: {len(ids_tensor)} input_ids but {len(labels_tensor)} labels; they must align"
                )
            pairs.append((ids_tensor, labels_tensor))
    return pairs


def _round_up(value: int, multiple: int | None) -> int:
    return value if not multiple else -(-value // multiple) * multiple


def _pin(batch: dict[str, Any]) -> dict[str, Any]:
    if not torch.cuda.is_available():
        return batch
    return {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@dataclass
class PaddedCollator:
    """The baseline: one sample per row, right-padded to the longest row rounded up to ``pad_to_multiple_of``.

    >>> batch = PaddedCollator(pad_token_id=0)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}])
    >>> batch["input_ids"].shape, batch["attention_mask"].sum().item()
    (torch.Size([1, 8]), 3)
    """

    pad_token_id: int = 0
    pad_to_multiple_of: int | None = 8
    pin_memory: bool = False

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        samples = _samples(features)
        if not samples:
            raise CollatorError("cannot collate an empty batch")
        lengths = torch.tensor([len(ids) for ids, _ in samples])
        width = _round_up(int(lengths.max()), self.pad_to_multiple_of)
        attention_mask = torch.arange(width)[None, :] < lengths[:, None]
        input_ids = torch.full((len(samples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
        input_ids[attention_mask] = torch.cat([ids for ids, _ in samples])
        labels[attention_mask] = torch.cat([lab for _, lab in samples])
        batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask.long()}
        return _pin(batch) if self.pin_memory else batch


@dataclass
class PackedCollator:
    """Padding-free: all samples of a batch become one row, isolated from each other.

    Outputs ``input_ids``/``labels``/``position_ids`` of shape ``[1, T]``; ``position_ids`` restart at 0 for every
    sample; ``cu_seq_lens_q/k`` (int32) and ``max_length_q/k`` let FlashAttention-2/3 (``attn_implementation=
    "flash_attention_2"``) run varlen kernels. The first label of every sample is ``-100``, so no sample is
    trained to follow the previous one.

    Isolation without varlen kernels (sdpa/eager/CPU): transformers (>= 4.56) derives a block-diagonal mask from
    restarting ``position_ids`` only when no KV cache is created, so the forward must run with ``use_cache=False``
    (:func:`lw_train.model_loss` does). ``block_mask=True`` instead adds an explicit additive 4-D
    ``attention_mask`` ``[1, 1, T, T]`` that isolates samples with any attention implementation, at O(T^2) memory.

    ``pad_to_multiple_of`` appends a loss-free dummy segment so T is a multiple of it (tensor-core friendly);
    ``fixed_length`` pads every row to exactly that many tokens (static shapes for ``torch.compile``/CUDA graphs).

    >>> collate = PackedCollator()
    >>> batch = collate([{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}, {"input_ids": [4, 5], "labels": [4, 5]}])
    >>> batch["position_ids"].tolist(), batch["labels"].tolist(), batch["cu_seq_lens_q"].tolist()
    ([[0, 1, 2, 0, 1]], [[-100, 2, 3, -100, 5]], [0, 3, 5])
    """

    pad_token_id: int = 0
    pad_to_multiple_of: int | None = None
    fixed_length: int | None = None
    block_mask: bool = False
    mask_dtype: torch.dtype = torch.float32
    pin_memory: bool = False

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        samples = _samples(features)
        if not samples:
            raise CollatorError("cannot collate an empty batch")
        lengths = torch.tensor([len(ids) for ids, _ in samples], dtype=torch.long)
        input_ids = torch.cat([ids for ids, _ in samples])
        labels = torch.cat([lab for _, lab in samples])
        total = int(lengths.sum())
        width = _round_up(total, self.pad_to_multiple_of)
        if self.fixed_length is not None:
            if total > self.fixed_length:
                raise CollatorError(
                    f"batch has {total} tokens but fixed_length is {self.fixed_length}: pack bins with "
                    f"max_tokens <= {self.fixed_length} and use one bin per batch"
                )
            width = self.fixed_length
        if width > total:  # loss-free dummy segment
            lengths = torch.cat([lengths, torch.tensor([width - total])])
            input_ids = torch.cat([input_ids, torch.full((width - total,), self.pad_token_id, dtype=torch.long)])
            labels = torch.cat([labels, torch.full((width - total,), IGNORE_INDEX, dtype=torch.long)])
        cu_seq_lens = torch.zeros(len(lengths) + 1, dtype=torch.int32)
        cu_seq_lens[1:] = torch.cumsum(lengths, 0)
        starts = cu_seq_lens[:-1].long()
        position_ids = torch.arange(width) - torch.repeat_interleave(starts, lengths)
        labels[starts] = IGNORE_INDEX
        max_length = int(lengths.max())
        batch: dict[str, Any] = {
            "input_ids": input_ids[None],
            "labels": labels[None],
            "position_ids": position_ids[None],
            "cu_seq_lens_q": cu_seq_lens,
            "cu_seq_lens_k": cu_seq_lens.clone(),
            "max_length_q": max_length,
            "max_length_k": max_length,
        }
        if self.block_mask:
            batch["attention_mask"] = block_diagonal_mask(lengths, self.mask_dtype)
        return _pin(batch) if self.pin_memory else batch


def block_diagonal_mask(lengths: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive causal mask ``[1, 1, T, T]`` letting each token see only earlier tokens of its own segment.

    Additive (0 / dtype min) rather than boolean: transformers' eager attention adds the mask to the scores.
    """
    segment = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    position = torch.arange(len(segment))
    allowed = (segment[:, None] == segment[None, :]) & (position[:, None] >= position[None, :])
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


class BinDataset(torch.utils.data.Dataset[dict[str, list[Any]]]):
    """Items are whole bins (``{"input_ids": [[...], ...], "labels": [[...], ...]}``), ready for PackedCollator.

    Lets a ``transformers.Trainer`` train packed with ``per_device_train_batch_size=1`` and
    ``data_collator=PackedCollator()``; samples are referenced, not copied.
    """

    def __init__(self, samples: Sequence[Mapping[str, Any]], bins: Sequence[Sequence[int]]) -> None:
        self.samples, self.bins = samples, bins

    def __len__(self) -> int:
        return len(self.bins)

    def __getitem__(self, index: int) -> dict[str, list[Any]]:
        members = [self.samples[i] for i in self.bins[index]]
        return {"input_ids": [s["input_ids"] for s in members], "labels": [s["labels"] for s in members]}
