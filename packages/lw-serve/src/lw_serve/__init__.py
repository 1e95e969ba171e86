"""lw-serve: model resolution, model-server lifecycles (llama.cpp, transformers serve, SGLang) and GGUF export.

No other lw package starts a model server: they take a ``ChatClient``, and this package hands one out.
"""

import importlib.metadata

from lw_serve.backends import LlamaCppBackend, SGLangBackend, TransformersBackend
from lw_serve.engine import SGLangEngineClient
from lw_serve.errors import (
    BackendUnavailableError,
    ConversionError,
    ModelNotFoundError,
    ServeError,
    ServerError,
)
from lw_serve.export import export_gguf
from lw_serve.models import EMBEDDED_MODEL, ResolvedModel, known_models, resolve_model
from lw_serve.server import Server

__version__ = importlib.metadata.version("lw-serve")  # written once: pyproject.toml
__all__ = [
    "EMBEDDED_MODEL",
    "BackendUnavailableError",
    "ConversionError",
    "LlamaCppBackend",
    "ModelNotFoundError",
    "ResolvedModel",
    "SGLangBackend",
    "SGLangEngineClient",
    "ServeError",
    "Server",
    "ServerError",
    "TransformersBackend",
    "export_gguf",
    "known_models",
    "resolve_model",
]
