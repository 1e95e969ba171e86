"""lw-reproduce: the `lw` umbrella CLI and the paper pipeline end to end."""

import importlib.metadata

__version__ = importlib.metadata.version("lw-reproduce")  # written once: pyproject.toml
__all__: list[str] = []
