"""lw-serve's errors: one package base under :class:`lw_core.LWError`, so callers can catch lw-serve alone."""

from __future__ import annotations

from lw_core import LWError


class ServeError(LWError):
    """Base of every lw-serve error."""


class ModelNotFoundError(ServeError):
    """The model reference is neither a known name, an existing file/folder, nor a hub id."""


class ConversionError(ServeError):
    """Converting between a GGUF file and a Hugging Face folder failed (either direction)."""


class BackendUnavailableError(ServeError):
    """The backend's server is not installed here, or cannot serve this model; the message says what to do."""


class ServerError(ServeError):
    """A server could not start (port in use, crashed, not healthy in time); the message quotes its log."""
