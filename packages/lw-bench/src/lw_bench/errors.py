"""lw-bench's errors, all under :class:`lw_core.LWError`."""

from __future__ import annotations

from lw_core import LWError


class BenchError(LWError):
    """A benchmark input or setting is unusable; the message says where and what to do.

    >>> issubclass(JudgmentParseError, BenchError), issubclass(BenchError, LWError)
    (True, True)
    """


class JudgmentParseError(BenchError):
    """A judge reply without a complete, in-range set of the six scores: the caller retries the judge."""
