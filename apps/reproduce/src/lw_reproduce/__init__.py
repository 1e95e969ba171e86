"""lw-reproduce: the `lw` umbrella CLI and the paper pipeline end to end.

An application: its interface is the `lw` command; in Python it exports only its errors, all under
:class:`ReproduceError` (an ``lw_core.LWError``).
"""

import importlib.metadata

from lw_reproduce.errors import ConfigError, PipelineError, ReproduceError, RunDirError

__version__ = importlib.metadata.version("lw-reproduce")  # written once: pyproject.toml
__all__ = ["ConfigError", "PipelineError", "ReproduceError", "RunDirError"]
