"""lw-reproduce's errors: one base under :class:`lw_core.LWError`; pure, so ``import lw_reproduce`` stays cheap.

>>> all(issubclass(e, ReproduceError) for e in (ConfigError, RunDirError, PipelineError))
True
>>> issubclass(ReproduceError, LWError)
True
"""

from __future__ import annotations

from lw_core import LWError
from lw_core.config import ConfigError as CoreConfigError

__all__ = ["ConfigError", "PipelineError", "ReproduceError", "RunDirError"]


class ReproduceError(LWError):
    """Base of every error ``lw reproduce`` raises on purpose."""


class ConfigError(ReproduceError, CoreConfigError):
    """The configuration file or a flag is invalid; the message names the file and the field (also a
    :class:`lw_core.config.ConfigError`)."""


class RunDirError(ReproduceError):
    """The run folder belongs to another configuration."""


class PipelineError(ReproduceError):
    """A stage cannot run (no usable instructions, no data left after the filters, a missing earlier stage)."""
