"""lw-train: packed SFT, DPO and GRPO for long-output models (best-fit packing, padding-free collators, loss weighting).

``lw_train.packing``, the configs and the errors are importable without torch; everything that needs torch is
imported on first use, so ``import lw_train`` stays cheap for data pipelines.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import TYPE_CHECKING, Any

from .config import DPOConfig, GRPOConfig, RewardSpec, SFTConfig
from .errors import CollatorError, ConfigError, LossError, PackingError, TokenizationError, TrainError
from .packing import pack, pack_fill

if TYPE_CHECKING:  # the lazy exports below, typed for type checkers
    from ._run import TrainResult
    from .attention import segment_attention, use_segment_attention
    from .collators import BinDataset, PackedCollator, PaddedCollator
    from .dpo import train_dpo
    from .grpo import PolicyRollout, train_grpo
    from .loss import TargetCounts, chunked_cross_entropy, count_targets, lm_loss, model_loss
    from .sft import train_sft
    from .tokenization import TokenizedChats, tokenize_chats

__version__ = importlib.metadata.version("lw-train")  # written once: pyproject.toml
__all__ = [
    "BinDataset",
    "CollatorError",
    "ConfigError",
    "DPOConfig",
    "GRPOConfig",
    "LossError",
    "PackedCollator",
    "PackingError",
    "PaddedCollator",
    "PolicyRollout",
    "RewardSpec",
    "SFTConfig",
    "TargetCounts",
    "TokenizationError",
    "TokenizedChats",
    "TrainError",
    "TrainResult",
    "chunked_cross_entropy",
    "count_targets",
    "lm_loss",
    "model_loss",
    "pack",
    "pack_fill",
    "segment_attention",
    "tokenize_chats",
    "train_dpo",
    "train_grpo",
    "train_sft",
    "use_segment_attention",
]

_LAZY = {
    "TrainResult": "_run",
    "segment_attention": "attention",
    "use_segment_attention": "attention",
    "BinDataset": "collators",
    "PackedCollator": "collators",
    "PaddedCollator": "collators",
    "train_dpo": "dpo",
    "PolicyRollout": "grpo",
    "train_grpo": "grpo",
    "TargetCounts": "loss",
    "chunked_cross_entropy": "loss",
    "count_targets": "loss",
    "lm_loss": "loss",
    "model_loss": "loss",
    "train_sft": "sft",
    "TokenizedChats": "tokenization",
    "tokenize_chats": "tokenization",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lw_train' has no attribute {name!r}")
