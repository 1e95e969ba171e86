"""lw-data's errors: each says which file, line or column was wrong and what to do."""

from __future__ import annotations

from lw_core import LWError


class DataError(LWError):
    """Input data that lw-data cannot use: an unknown format, a missing column, an empty selection."""
