"""The embedded GGUF converted to an HF folder is the same model (slow: loads the model).

Checked against the GGUF file itself, not against transformers reading it again: every tensor equals
the GGUF tensor dequantized by the ``gguf`` package (Q/K through llama.cpp's rotary layout), the
tokenizer splits text as llama.cpp does with that GGUF, and the chat template is the GGUF's.
"""

from __future__ import annotations

import ast
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from lw_serve import EMBEDDED_MODEL, resolve_model
from lw_serve.export import rotary_permute

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def converted() -> tuple[Path, Path]:
    model = resolve_model(EMBEDDED_MODEL)
    assert model.gguf is not None
    return model.gguf, Path(model.hf_folder())


def test_every_tensor_is_the_dequantized_gguf_tensor(converted: tuple[Path, Path]) -> None:
    from safetensors.torch import load_file

    source, folder = converted
    reader = gguf.GGUFReader(str(source))
    tensors = {t.name: gguf.quants.dequantize(t.data, t.tensor_type) for t in reader.tensors}
    config = json.loads((folder / "config.json").read_text())
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    weights = load_file(str(folder / "model.safetensors"))
    assert len(weights) == len(tensors), "no tensor lost or invented"
    for hf_name, value in weights.items():
        array = value.float().numpy()
        if hf_name.endswith("q_proj.weight"):
            array = rotary_permute(array, config["num_attention_heads"])
        elif hf_name.endswith("k_proj.weight"):
            array = rotary_permute(array, config["num_key_value_heads"])
        expected = tensors[names.get_name(hf_name, try_suffixes=(".weight",))]
        assert array.shape == expected.shape and abs(array - expected).max() <= 1e-6, hf_name


def test_tokenizer_splits_text_as_llama_cpp_does_with_the_gguf(
    converted: tuple[Path, Path], llama_tool: Callable[[str], Path], tokenizer_texts: list[str]
) -> None:
    from transformers import AutoTokenizer

    source, folder = converted
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    for text in tokenizer_texts:
        run = subprocess.run([str(llama_tool("llama-tokenize")), "-m", str(source), "-p", text, "--ids",
                              "--log-disable"], capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
        assert tokenizer(text).input_ids == ast.literal_eval(run.stdout.strip().splitlines()[-1]), repr(text)


def test_chat_template_and_special_tokens_are_the_ggufs(converted: tuple[Path, Path]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, folder = converted
    fields = gguf.GGUFReader(str(source)).fields
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert tokenizer.chat_template == fields["tokenizer.chat_template"].contents()
    assert tokenizer.eos_token_id == fields["tokenizer.ggml.eos_token_id"].contents()
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    assert getattr(model.config, "quantization_config", None) is None, "a plain, trainable model"
    assert model.config.tie_word_embeddings and "output.weight" not in {
        t.name for t in gguf.GGUFReader(str(source)).tensors
    }
