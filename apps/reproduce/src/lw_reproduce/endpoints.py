"""Model endpoints of a run: servers started here by lw-serve (shared when two roles use the same model), or remote
OpenAI-compatible endpoints whose key is read from an environment variable at start."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from lw_core import Capabilities, OpenAIChatClient
from lw_serve import LlamaCppBackend, Server, SGLangBackend, resolve_model

from lw_reproduce.config import Endpoint
from lw_reproduce.errors import ConfigError


class Endpoints:
    """Starts servers on first use and stops them all on exit (or one by one with :meth:`stop`)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self._stack = ExitStack()
        self._servers: dict[tuple[str, str | None, str | None], Server] = {}

    def __enter__(self) -> Endpoints:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self._servers.clear()

    def client(
        self,
        endpoint: Endpoint,
        *,
        model: str | None = None,
        name: str | None = None,
        sampling: dict[str, Any] | None = None,
    ) -> OpenAIChatClient:
        """A client for ``endpoint`` (``model`` overrides its model, e.g. a trained folder), with server sampling."""
        extra_body = dict(sampling or {})
        if endpoint.base_url:
            return OpenAIChatClient(
                base_url=endpoint.base_url,
                model=model or endpoint.model,
                api_key=_api_key(endpoint),
                concurrency=endpoint.concurrency,
                capabilities=Capabilities(concurrency=endpoint.concurrency),
                extra_body=extra_body,
            )
        server = self.server(
            model or endpoint.model, endpoint.backend, name=name, threads=endpoint.threads,
            context_length=endpoint.context_length,
        )  # fmt: skip
        return server.new_client(concurrency=endpoint.concurrency, extra_body=extra_body)

    def server(
        self,
        model: str,
        backend: str | None,
        *,
        name: str | None = None,
        threads: int | None = None,
        context_length: int | None = None,
    ) -> Server:
        """The server of ``model`` on ``backend``, started on first use, with ``context_length`` tokens of context
        (on llama.cpp: per slot) where given, else the backend's default."""
        key = (model, backend, name)
        if key not in self._servers:
            label = name or Path(model).name or "model"
            engine: str | LlamaCppBackend | SGLangBackend | None = backend
            if backend == "llamacpp" and (threads or context_length):
                engine = LlamaCppBackend(threads=threads, ctx_size=context_length or LlamaCppBackend.ctx_size)
            elif backend == "sglang" and context_length:
                engine = SGLangBackend(context_length=context_length)
            server = Server(resolve_model(model, name=name), engine, log_path=self.logs / f"server-{label}.log")
            self._servers[key] = self._stack.enter_context(server)
        return self._servers[key]

    def stop(self, model: str, backend: str | None, *, name: str | None = None) -> None:
        server = self._servers.pop((model, backend, name), None)
        if server is not None:
            server.stop()


def _api_key(endpoint: Endpoint) -> str | None:
    if endpoint.api_key_env is None:
        return None
    key = os.environ.get(endpoint.api_key_env)
    if not key:
        raise ConfigError(
            f"{endpoint.base_url}: the API key variable {endpoint.api_key_env} is not set; export it before the run"
        )
    return key
