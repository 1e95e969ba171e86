"""Attention for packed rows: many samples in one row, each seeing only its own earlier tokens.

transformers' sdpa keeps them apart with a block-diagonal T x T mask derived from the restarting ``position_ids``,
which sends sdpa to its masked kernels: on an H200 (bf16, 316 M-parameter Llama, 16k-token rows) packed rows ran at
46.6 % of the dense limit (the same tokens as rows of one sequence). Three paths here need no T x T mask; each is
registered with transformers' attention interface (an ``attn_implementation`` name), so a model switched to it
takes :class:`~lw_train.PackedCollator` batches as is:

- :func:`segment_attention` (``lw_segments``): causal sdpa on each segment, ``sum(L_i^2)`` scores instead of
  ``T^2``. Best on the CPU (1.3x the masked sdpa on 2 cores); on the H200 its many small launches and a host sync
  per layer ran at 0.26x the masked sdpa.
- :func:`flex_attention` (``lw_flex``): torch's ``flex_attention``, compiled once per process, with the
  document-causal ``BlockMask`` that transformers builds once per forward from the restarting ``position_ids``
  (``masking_utils.flex_attention_mask``) and every layer shares: blocks outside every sample are skipped, blocks
  inside one run unmasked. Trains on CUDA; on the CPU torch runs it forward only (no backward there).
- :func:`varlen_attention` (``lw_varlen``): torch's own FlashAttention varlen kernels
  (``torch.nn.attention.varlen``, torch >= 2.9) on ``cu_seq_lens_q``: what FlashAttention-2 does, without the
  ``flash-attn`` package. CUDA only, bf16/fp16.

Which one ``attention="auto"`` picks, and the figures behind it: ``lw_train.sft._auto_attention``;
``benchmarks/train_throughput_cuda.py`` measures them all.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import math
from collections.abc import Callable
from itertools import pairwise
from typing import Any, cast

import torch
import torch.nn.functional as F

from .errors import ConfigError

#: The ``attn_implementation`` names this module registers.
SEGMENT_ATTENTION = "lw_segments"
FLEX_ATTENTION = "lw_flex"
VARLEN_ATTENTION = "lw_varlen"
#: Every name above: a model trained with one is switched back to sdpa before it is saved or served.
PACKED_ATTENTIONS = frozenset({SEGMENT_ATTENTION, FLEX_ATTENTION, VARLEN_ATTENTION})


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
    from transformers.masking_utils import sdpa_mask

    # sdpa's mask is still built (a boolean T x T, cheap next to the scores) for the batches that fall back to sdpa
    return _switch(model, SEGMENT_ATTENTION, segment_attention, sdpa_mask)


def flex_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Compiled ``flex_attention`` under the ``BlockMask`` of the forward (``[B, heads, T, dim]`` in,
    ``[B, T, heads, dim]`` out). What a plain call cannot do (a 4-D tensor mask given by the caller, logit
    soft-capping, attention sinks, dropout) goes to transformers' own flex attention, which handles or refuses it."""
    from torch.nn.attention.flex_attention import BlockMask

    plain = isinstance(attention_mask, BlockMask) and not dropout
    if not plain or kwargs.get("softcap") or kwargs.get("s_aux") is not None or kwargs.get("position_bias") is not None:
        from transformers.integrations.flex_attention import flex_attention_forward

        return flex_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    query, key, value = _autocast(query, key, value)
    flex = _eager_flex_attention() if torch.compiler.is_compiling() else _compiled_flex_attention()
    output = flex(
        query, key, value, block_mask=attention_mask, scale=scaling, enable_gqa=query.shape[1] != key.shape[1]
    )
    return output.transpose(1, 2).contiguous(), None


def _eager_flex_attention() -> Callable[..., torch.Tensor]:
    """Inside a compiled model the enclosing compile takes the plain function in."""
    from torch.nn.attention.flex_attention import flex_attention as flex

    return flex


@functools.cache
def _compiled_flex_attention() -> Callable[..., torch.Tensor]:
    """One compiled ``flex_attention`` per process, shared by training and evaluation.

    transformers' own wrapper compiles anew whenever a model switches between ``train()`` and ``eval()``; here the
    first call compiles for the shapes it sees, the first row of another length recompiles with dynamic shapes, and
    rows of further lengths reuse that.
    """
    return torch.compile(_eager_flex_attention())


def use_flex_attention(model: Any) -> Any:
    """Switch a transformers model to :func:`flex_attention` (registered once) and return it.

    >>> model = use_flex_attention(model.cuda())  # doctest: +SKIP
    >>> model_loss(model, to_cuda(PackedCollator()(samples))).backward()  # doctest: +SKIP
    """
    from transformers.masking_utils import flex_attention_mask

    return _switch(model, FLEX_ATTENTION, flex_attention, flex_attention_mask)


def varlen_available() -> bool:
    """Whether this torch has ``torch.nn.attention.varlen`` (torch >= 2.9) and a CUDA device to run it on."""
    return torch.cuda.is_available() and importlib.util.find_spec("torch.nn.attention.varlen") is not None


def varlen_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    max_length_q: int | None = None,
    position_ids: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """torch's varlen attention over the samples of one unpadded row (``[1, heads, T, dim]`` in, ``[1, T, heads,
    dim]`` out). The bounds come from ``cu_seq_lens_q``, else from where ``position_ids`` restart at 0, else the row
    is one sequence. Padded batches and generation with a cache go to transformers' sdpa with its mask, which
    :func:`use_varlen_attention`'s mask function builds only for them."""
    if attention_mask is not None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if dropout or kwargs.get("softcap"):
        raise ConfigError(
            "attention='varlen' runs no attention dropout or logit soft-capping (this model asks for "
            f"dropout={dropout}, softcap={kwargs.get('softcap')}); use attention='flex' or 'sdpa'"
        )
    query, key, value = _autocast(query, key, value)
    bounds, longest = _row_bounds(query, cu_seq_lens_q, max_length_q, position_ids)
    window = kwargs.get("sliding_window")
    output = _varlen_kernel(
        query[0].transpose(0, 1),
        key[0].transpose(0, 1),
        value[0].transpose(0, 1),
        bounds,
        longest,
        scale=scaling,
        window=(window - 1, 0) if window else (-1, 0),
    )
    return output[None], None


def _row_bounds(
    query: torch.Tensor,
    cu_seq_lens: torch.Tensor | None,
    max_length: int | None,
    position_ids: torch.Tensor | None,
) -> tuple[torch.Tensor, int]:
    """Sample bounds (int32, on the query's device) and the longest sample of one row."""
    length = query.shape[2]
    if cu_seq_lens is None:
        if position_ids is not None:
            starts = torch.nonzero(position_ids.reshape(-1) == 0).flatten()
            if starts.numel() == 0 or int(starts[0]) != 0:
                starts = torch.cat([starts.new_zeros(1), starts])
        else:
            starts = torch.zeros(1, dtype=torch.long, device=query.device)
        cu_seq_lens = torch.cat([starts, starts.new_tensor([length])])
        max_length = None
    cu_seq_lens = cu_seq_lens.to(device=query.device, dtype=torch.int32, non_blocking=True)
    if max_length is None:
        max_length = int(cu_seq_lens.diff().max())
    return cu_seq_lens, max_length


def _varlen_kernel(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seq_lens: torch.Tensor,
    max_length: int,
    *,
    scale: float | None,
    window: tuple[int, int],
) -> torch.Tensor:
    """``varlen_attn`` on ``[T, heads, dim]`` tensors, whichever of its signatures this torch has.

    torch 2.9 takes ``is_causal`` and no scale; later versions take ``window_size`` ((-1, 0) is causal) and
    ``scale``; torch 2.13 adds ``enable_gqa`` (before it, the FlashAttention kernel takes fewer key/value heads as
    is).
    """
    if query.dtype not in (torch.float16, torch.bfloat16):
        raise ConfigError(
            f"attention='varlen' runs FlashAttention kernels, which take bf16 or fp16, not {query.dtype}; train "
            "with dtype='bfloat16' (the default on CUDA) or use attention='flex'"
        )
    from torch.nn.attention.varlen import varlen_attn

    accepts = _parameters(varlen_attn)
    options: dict[str, Any] = {}
    if "window_size" in accepts:
        options["window_size"] = window
    elif window == (-1, 0):
        options["is_causal"] = True
    else:
        raise ConfigError("attention='varlen' needs torch >= 2.10 for sliding-window layers; use attention='flex'")
    if "scale" in accepts:
        options["scale"] = scale
    elif scale is not None and not math.isclose(scale, query.shape[-1] ** -0.5, rel_tol=1e-6):
        raise ConfigError(f"this torch's varlen attention has no scale argument (the model uses {scale}); use 'flex'")
    if "enable_gqa" in accepts and query.shape[1] != key.shape[1]:
        options["enable_gqa"] = True
    output = varlen_attn(query, key, value, cu_seq_lens, cu_seq_lens, max_length, max_length, **options)
    return cast(torch.Tensor, output)  # without return_aux, only the output


@functools.cache
def _parameters(function: Callable[..., Any]) -> frozenset[str]:
    return frozenset(inspect.signature(function).parameters)


def _varlen_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset: Any = 0,
    kv_offset: Any = 0,
    attention_mask: torch.Tensor | None = None,
    **kwargs: Any,
) -> Any:
    """No mask for one unpadded row without a cache (varlen reads its bounds, so a packed row costs no T x T
    mask); sdpa's mask for the batches that fall back to sdpa."""
    from transformers.masking_utils import sdpa_mask

    if batch_size == 1 and q_length == kv_length and not q_offset and not kv_offset and attention_mask is None:
        return None
    return sdpa_mask(
        batch_size=batch_size,
        q_length=q_length,
        kv_length=kv_length,
        q_offset=q_offset,
        kv_offset=kv_offset,
        attention_mask=attention_mask,
        **kwargs,
    )


def use_varlen_attention(model: Any) -> Any:
    """Switch a transformers model to :func:`varlen_attention` (registered once) and return it.

    >>> model = use_varlen_attention(model.cuda().bfloat16())  # doctest: +SKIP
    >>> model_loss(model, to_cuda(PackedCollator()(samples))).backward()  # doctest: +SKIP
    """
    return _switch(model, VARLEN_ATTENTION, varlen_attention, _varlen_mask)


def _switch(model: Any, name: str, attention: Callable[..., Any], mask: Callable[..., Any]) -> Any:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(name, attention)
    AttentionMaskInterface.register(name, mask)
    model.set_attn_implementation(name)
    return model


def _autocast(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Cast to the autocast dtype where autocast is on, as sdpa would be: under mixed precision the rotary
    embedding leaves queries and keys in fp32 beside bf16 values, and the kernels here want one dtype."""
    device = tensors[0].device.type
    if not torch.is_autocast_enabled(device):
        return tensors
    dtype = torch.get_autocast_dtype(device)
    return tuple(t.to(dtype) for t in tensors)
