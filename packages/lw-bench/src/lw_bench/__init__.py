"""lw-bench, part of the lw LongWriter toolkit."""

__version__ = "0.1.0"
__all__: list[str] = []
