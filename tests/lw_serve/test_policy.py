"""PolicyServer on tiny random models: serves the weights of the last sync, greedy like transformers, one sample per
slot with its own seed, and stops and restarts llama-server cleanly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from lw_serve import LlamaCppBackend, ServerError
from lw_serve.backends import llamacpp_available
from lw_serve.policy import PolicyServer

pytestmark = pytest.mark.skipif(not llamacpp_available(), reason="needs lw-serve[llamacpp]")
torch = pytest.importorskip("torch")


def _greedy(folder: Path, prompt: list[int], tokens: int) -> tuple[list[int], bool]:
    """transformers' greedy continuation, as PolicyServer reports it: ids without the end of turn, and whether it
    came."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=tokens, do_sample=False)[0, len(prompt) :].tolist()
    eos = model.config.eos_token_id
    return (out[: out.index(eos)], True) if eos in out else (out, False)


def test_the_server_serves_the_weights_of_the_last_sync(
    tiny_folder: Callable[..., Path], exact: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoTokenizer

    monkeypatch.setenv("LW_HOME", str(tmp_path / "home"))
    first, second = tiny_folder(seed=0), tiny_folder(seed=1)
    prompt = AutoTokenizer.from_pretrained(str(first))("Long-form writing needs a plan").input_ids
    backend = LlamaCppBackend(parallel=2, ctx_size=256, **exact)  # type: ignore[arg-type]
    with PolicyServer(backend, outtype="f32", workdir=tmp_path / "policy") as server:
        with pytest.raises(ServerError, match="call sync"):
            server.generate([prompt], max_tokens=4)
        server.sync(first)
        assert server.generate([prompt], max_tokens=16, temperature=0.0) == [_greedy(first, prompt, 16)]
        pid = server.server.pids if server.server else None
        server.sync(second)
        assert server.server is not None and server.server.pids != pid  # restarted on the new export
        assert server.generate([prompt], max_tokens=16, temperature=0.0) == [_greedy(second, prompt, 16)]
        samples = server.generate([prompt] * 4, max_tokens=12, temperature=1.5, seed=3)
        assert len({tuple(ids) for ids, _ in samples}) > 1  # one seed per request: a group is not 4 copies
        assert samples == server.generate([prompt] * 4, max_tokens=12, temperature=1.5, seed=3)  # seeded
        assert len(server.sync_seconds) == 2 and len(server.generate_seconds) == 4
        running = server.server
    assert not running.running and (tmp_path / "policy" / "policy.gguf").is_file()
    assert server.server_cpu_seconds > 0  # both servers' CPU time, read before each was stopped
