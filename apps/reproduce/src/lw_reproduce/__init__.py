"""lw-reproduce: the `lw` umbrella CLI and the paper pipeline end to end."""

__version__ = "0.1.0"
__all__: list[str] = []
