"""lw-train: best-fit packing, padding-free collators and per-sequence loss weighting for long-output SFT.

``lw_train.packing`` is pure Python; everything that needs torch is imported on first use, so
``import lw_train`` stays cheap for data pipelines.
"""

from __future__ import annotations

import importlib
from typing import Any

from .packing import PackingError, pack, pack_fill

__version__ = "0.1.0"
__all__ = [
    "BinDataset",
    "PackedCollator",
    "PackingError",
    "PaddedCollator",
    "TargetCounts",
    "TokenizedChats",
    "chunked_cross_entropy",
    "count_targets",
    "lm_loss",
    "model_loss",
    "pack",
    "pack_fill",
    "segment_attention",
    "tokenize_chats",
    "use_segment_attention",
]

_LAZY = {
    "segment_attention": "attention",
    "use_segment_attention": "attention",
    "BinDataset": "collators",
    "PackedCollator": "collators",
    "PaddedCollator": "collators",
    "TargetCounts": "loss",
    "chunked_cross_entropy": "loss",
    "count_targets": "loss",
    "lm_loss": "loss",
    "model_loss": "loss",
    "TokenizedChats": "tokenization",
    "tokenize_chats": "tokenization",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lw_train' has no attribute {name!r}")
