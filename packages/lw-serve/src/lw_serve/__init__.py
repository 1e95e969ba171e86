"""lw-serve: model resolution and model-server lifecycles for lw (llama.cpp, transformers serve, SGLang).

No other lw package starts a model server: they take a ``ChatClient``, and this package hands one out.
"""

from lw_serve.backends import (
    BackendUnavailableError,
    LlamaCppBackend,
    SGLangBackend,
    TransformersBackend,
)
from lw_serve.engine import SGLangEngineClient
from lw_serve.models import EMBEDDED_MODEL, ModelNotFoundError, ResolvedModel, known_models, resolve_model
from lw_serve.server import Server, ServerError

__version__ = "0.1.0"
__all__ = [
    "EMBEDDED_MODEL",
    "BackendUnavailableError",
    "LlamaCppBackend",
    "ModelNotFoundError",
    "ResolvedModel",
    "SGLangBackend",
    "SGLangEngineClient",
    "Server",
    "ServerError",
    "TransformersBackend",
    "known_models",
    "resolve_model",
]
