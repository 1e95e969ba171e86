"""lw-train's errors: one package base under ``lw_core.LWError`` so callers can catch lw-train's failures at once.

Pure Python (no torch), so ``import lw_train`` can export every error eagerly.
"""

from __future__ import annotations

from lw_core import LWError
from lw_core.config import ConfigError as CoreConfigError

__all__ = ["CollatorError", "ConfigError", "LossError", "PackingError", "TokenizationError", "TrainError"]


class TrainError(LWError):
    """Base of every error lw-train raises on purpose."""


class PackingError(TrainError):
    """Packing was asked for something impossible (a sample longer than a bin, bad arguments)."""


class CollatorError(TrainError):
    """A batch cannot be built as configured (too long for a fixed shape, missing fields)."""


class LossError(TrainError):
    """The loss was asked for with inconsistent arguments."""


class TokenizationError(TrainError):
    """A record cannot be tokenized as asked (bad messages, unusable chat template, over-long with 'error')."""


class ConfigError(TrainError, CoreConfigError):
    """A training config or its data is unusable; the message names the file and the field, and what to do.

    Also a :class:`lw_core.config.ConfigError`, which every lw package's configuration errors are.
    """
