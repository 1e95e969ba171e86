"""Per-segment attention for packed rows on the CPU, where FlashAttention varlen is not available.

sdpa with the block-diagonal mask of a packed row still computes all T x T scores and throws most away; running
causal sdpa on each segment computes only sum(L_i^2). That wins on the CPU (1.3x on 2 cores); on a GPU the many small
launches and a host sync per layer lose: on an H200 (bf16, 316 M parameters, 16k-token rows) it ran at 0.26x the
masked sdpa, so use FlashAttention-2 varlen there, or sdpa with the mask (``benchmarks/train_throughput_cuda.py``).
Registered with transformers' attention interface, so a model opts in with :func:`use_segment_attention` and then
takes :class:`~lw_train.PackedCollator` batches as is.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F

#: The ``attn_implementation`` name this module registers.
SEGMENT_ATTENTION = "lw_segments"


def segment_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal sdpa run separately on each segment of a packed ``[1, heads, T, dim]`` row (bounds from
    ``cu_seq_lens_q``). Anything else goes to transformers' sdpa with its mask: padded batches, generation with a
    cache, and layers with a sliding window or logit soft-capping (plain causal sdpa would ignore them)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    packed_row = query.shape[0] == 1 and query.shape[2] == key.shape[2]
    if cu_seq_lens_q is None or not packed_row or kwargs.get("sliding_window") or kwargs.get("softcap"):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    bounds = cu_seq_lens_q.tolist()
    gqa = query.shape[1] != key.shape[1]
    outputs = [
        F.scaled_dot_product_attention(
            query[:, :, start:end],
            key[:, :, start:end],
            value[:, :, start:end],
            dropout_p=dropout,
            is_causal=True,
            scale=scaling,
            enable_gqa=gqa,
        )
        for start, end in pairwise(bounds)
    ]
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


def use_segment_attention(model: Any) -> Any:
    """Switch a transformers model to :func:`segment_attention` (registered once) and return it.

    >>> model = use_segment_attention(model)  # doctest: +SKIP
    >>> model_loss(model, PackedCollator()(samples)).backward()  # doctest: +SKIP
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(SEGMENT_ATTENTION, segment_attention)
    # sdpa's mask is still built (a boolean T x T, cheap next to the scores) for the batches that fall back to sdpa
    AttentionMaskInterface.register(SEGMENT_ATTENTION, sdpa_mask)
    model.set_attn_implementation(SEGMENT_ATTENTION)
    return model
