"""Where lw keeps converted models, downloaded data sets and caches."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir


def lw_home() -> Path:
    """``$LW_HOME`` if set, else the platform cache dir (``~/.cache/lw`` on Linux).

    Read at call time, never at import, so tests and embedding apps can redirect it.

    >>> import tempfile
    >>> from unittest import mock
    >>> home = tempfile.mkdtemp()
    >>> with mock.patch.dict("os.environ", {"LW_HOME": home}):
    ...     print(lw_home() == Path(home), cache_dir("models", "gguf") == Path(home, "models", "gguf"))
    True True
    """
    home = os.environ.get("LW_HOME")
    path = Path(home).expanduser() if home else Path(user_cache_dir("lw", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(*parts: str) -> Path:
    """A sub-directory of :func:`lw_home`, created on demand."""
    path = lw_home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
