"""Exports as llama.cpp reads them (tiny random models): same tokens as transformers, same greedy continuations."""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from lw_serve import LlamaCppBackend, Server, export_gguf
from lw_serve.backends import llamacpp_available

pytestmark = pytest.mark.skipif(not llamacpp_available(), reason="needs lw-serve[llamacpp]")
torch = pytest.importorskip("torch")
TinyFactory = Callable[..., Path]
EXACT = {"flash_attn": "off", "extra_args": ("--cache-type-k", "f32", "--cache-type-v", "f32")}
"""llama.cpp computes in f32 throughout with these; its defaults (f16 KV cache, flash attention with f16 Q·K) move
logits by ~1e-3 relative, enough to flip near-ties of random models (whose distributions are flat)."""


@pytest.mark.parametrize("kind", ["gpt2", "smollm", "llama3", "qwen2", "bytefallback"])
def test_llama_cpp_tokenizes_like_transformers(
    tiny_folder: TinyFactory, llama_tool: Callable[[str], Path], tokenizer_texts: list[str], kind: str
) -> None:
    from transformers import AutoTokenizer

    folder = tiny_folder(arch="mistral" if kind == "bytefallback" else "llama", tokenizer=kind)
    out = export_gguf(folder, folder.parent / "m.gguf", "f32")
    hf = AutoTokenizer.from_pretrained(str(folder))
    for text in tokenizer_texts:
        run = subprocess.run([str(llama_tool("llama-tokenize")), "-m", str(out), "-p", text, "--ids", "--log-disable"],
                             capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
        assert ast.literal_eval(run.stdout.strip().splitlines()[-1]) == hf(text).input_ids, repr(text)


def greedy_pair(folder: Path, prompt_ids: list[int], tokens: int, server: Server) -> tuple[list[int], list[int]]:
    """(transformers' greedy continuation of ``prompt_ids``, llama.cpp's) — the same ids in, no template between."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                             max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)  # fmt: skip
    expected = out[0, len(prompt_ids) :].tolist()
    reply = httpx.post(
        server.base_url.removesuffix("/v1") + "/completion",
        json={"prompt": prompt_ids, "n_predict": tokens, "temperature": 0, "ignore_eos": True,
              "return_tokens": True, "cache_prompt": False},  # fmt: skip
        headers={"Authorization": f"Bearer {server.new_client().api_key}"} if server.new_client().api_key else {},
        timeout=120,
    )
    reply.raise_for_status()
    return expected, reply.json()["tokens"]


@pytest.mark.parametrize(
    ("arch", "tokenizer", "rope"),
    [
        ("llama", "gpt2", None),
        ("mistral", "bytefallback", None),
        ("qwen2", "qwen2", None),
        ("llama", "llama3", {"rope_type": "linear", "factor": 4.0}),
        ("llama", "llama3", {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 64}),  # fmt: skip
    ],
    ids=["llama", "mistral", "qwen2", "rope-linear", "rope-llama3"],
)
def test_served_export_continues_like_transformers(
    tiny_folder: TinyFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arch: str, tokenizer: str, rope: object
) -> None:
    from transformers import AutoTokenizer

    monkeypatch.setenv("LW_HOME", str(tmp_path / "home"))
    folder = tiny_folder(arch=arch, tokenizer=tokenizer, rope=rope)
    prompt = AutoTokenizer.from_pretrained(str(folder))("Long-form writing needs planning: outline, sections").input_ids
    with Server(folder, LlamaCppBackend(export_outtype="f32", parallel=1, ctx_size=512, **EXACT)) as server:
        expected, actual = greedy_pair(folder, prompt * 3, 24, server)  # ~100 positions: rope scaling matters
    assert actual == expected
