"""The endpoint settings of a profile reach the servers lw-serve starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from lw_reproduce.config import Endpoint
from lw_reproduce.endpoints import Endpoints
from lw_serve import LlamaCppBackend, ResolvedModel, SGLangBackend

GGUF = ResolvedModel(name="m", gguf=Path("/models/m.gguf"))


class _Recorded:
    """Stands in for lw_serve.Server: records what it was asked to start."""

    started: ClassVar[list[_Recorded]] = []

    def __init__(self, model: ResolvedModel, backend: Any, **options: Any) -> None:
        self.model, self.backend, self.options = model, backend, options

    def __enter__(self) -> _Recorded:
        _Recorded.started.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[_Recorded]:
    _Recorded.started = []
    monkeypatch.setattr("lw_reproduce.endpoints.Server", _Recorded)
    monkeypatch.setattr("lw_reproduce.endpoints.resolve_model", lambda model, name=None: GGUF)
    return _Recorded.started


def test_context_length_reaches_the_llamacpp_command_line(tmp_path: Path, recorded: list[_Recorded]) -> None:
    endpoint = Endpoint(model="m", backend="llamacpp", context_length=16384, threads=1)
    with Endpoints(tmp_path) as endpoints:
        endpoints.server(endpoint.model, endpoint.backend, threads=endpoint.threads,
                         context_length=endpoint.context_length)  # fmt: skip
    [server] = recorded
    assert isinstance(server.backend, LlamaCppBackend)
    argv = server.backend.command(GGUF, "127.0.0.1", 1, binary="llama-server")
    slots = server.backend.parallel
    assert argv[argv.index("--ctx-size") + 1] == str(16384 * slots), "each slot holds the endpoint's context"
    assert argv[argv.index("--threads") + 1] == "1"


def test_context_length_reaches_sglang(tmp_path: Path, recorded: list[_Recorded]) -> None:
    with Endpoints(tmp_path) as endpoints:
        endpoints.server("m", "sglang", context_length=32768)
    [server] = recorded
    assert isinstance(server.backend, SGLangBackend) and server.backend.context_length == 32768


def test_no_context_length_keeps_the_backend_default(tmp_path: Path, recorded: list[_Recorded]) -> None:
    with Endpoints(tmp_path) as endpoints:
        endpoints.server("m", "llamacpp")
    assert recorded[0].backend == "llamacpp"
