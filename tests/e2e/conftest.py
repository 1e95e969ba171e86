"""Cross-package fixtures: one real CPU model server for the whole test session.

``embedded_server`` is a started :class:`lw_serve.Server` with the embedded SmolLM2 model on the
CPU default backend (llama.cpp when ``lw-serve[llamacpp]`` is installed, else ``transformers
serve``). Use ``embedded_server.client`` (a fresh ``OpenAIChatClient`` per access, with the
backend's ``capabilities``) and keep ``max_tokens`` small: the machine has few cores.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lw_serve import EMBEDDED_MODEL, Server


@pytest.fixture(scope="session")
def embedded_server() -> Iterator[Server]:
    with Server(EMBEDDED_MODEL, startup_timeout=300) as server:
        yield server
