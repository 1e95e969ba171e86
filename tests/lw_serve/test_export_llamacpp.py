"""Exports as llama.cpp reads them (tiny random models): same tokens as transformers, same greedy continuations."""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from lw_serve import LlamaCppBackend, Server, export_gguf
from lw_serve.backends import llamacpp_available

pytestmark = pytest.mark.skipif(not llamacpp_available(), reason="needs lw-serve[llamacpp]")
torch = pytest.importorskip("torch")
TinyFactory = Callable[..., Path]
GreedyPair = Callable[..., tuple[list[int], list[int]]]


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


@pytest.mark.parametrize(
    ("arch", "tokenizer", "rope"),
    [
        ("llama", "gpt2", None),
        ("mistral", "bytefallback", None),
        ("qwen2", "qwen2", None),
        ("llama", "llama3", {"rope_type": "linear", "factor": 4.0}),
        (
            "llama",
            "llama3",
            {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        ),
    ],
    ids=["llama", "mistral", "qwen2", "rope-linear", "rope-llama3"],
)
def test_served_export_continues_like_transformers(
    tiny_folder: TinyFactory,
    greedy_pair: GreedyPair,
    exact: dict[str, object],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    arch: str,
    tokenizer: str,
    rope: object,
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("LW_HOME", str(tmp_path / "home"))
    folder = tiny_folder(arch=arch, tokenizer=tokenizer, rope=rope)
    prompt = AutoTokenizer.from_pretrained(str(folder))("Long-form writing needs planning: outline, sections").input_ids
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    with Server(folder, LlamaCppBackend(export_outtype="f32", parallel=1, ctx_size=512, **exact)) as server:  # type: ignore[arg-type]
        expected, actual = greedy_pair(model, prompt * 3, 24, server)  # ~100 positions: rope scaling matters
    assert actual == expected
