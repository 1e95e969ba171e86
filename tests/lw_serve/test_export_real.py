"""The embedded model and a fine-tuned checkpoint, exported and served by llama.cpp (slow: real model, real server).

What a user relies on when lw reproduce scores a trained model on llama.cpp: the served export
continues exactly as transformers does on the folder, and the tokenizer and chat template came along.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from lw_core import run_sync
from lw_serve import EMBEDDED_MODEL, LlamaCppBackend, Server, export_gguf, resolve_model
from lw_serve.backends import llamacpp_available

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not llamacpp_available(), reason="needs lw-serve[llamacpp]")]
torch = pytest.importorskip("torch")
GreedyPair = Callable[..., tuple[list[int], list[int]]]
PROMPTS = [
    "Write a long story about a lighthouse keeper who finds a message in a bottle.",
    "Explain in detail how a refrigerator works, step by step.",
    "List the planets of the solar system with one fact about each.",
]
TOKENS = 48
SFT_REPLY = "Zebra lanterns hum over copper rivers while seven clocks argue about purple arithmetic."


@pytest.fixture(scope="module")
def embedded_folder() -> Path:
    return Path(resolve_model(EMBEDDED_MODEL).hf_folder())


@pytest.fixture(scope="module")
def sft_folder(embedded_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint after a few plain AdamW steps on one chat (lw-train's trainer is not needed for this)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(embedded_folder))
    model = AutoModelForCausalLM.from_pretrained(str(embedded_folder), dtype=torch.float32)
    chat = [{"role": "user", "content": PROMPTS[0]}, {"role": "assistant", "content": SFT_REPLY}]
    ids = tokenizer.apply_chat_template(chat, return_tensors="pt", return_dict=True)["input_ids"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    torch.manual_seed(0)
    model.train()
    for _ in range(4):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    folder = tmp_path_factory.mktemp("sft") / "final"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _load(folder: Path) -> tuple[object, object]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(
        str(folder)
    )


def _prompt_ids(tokenizer: object, prompt: str) -> list[int]:
    chat = [{"role": "user", "content": prompt}]
    return list(tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_dict=True)["input_ids"])  # type: ignore[attr-defined]


def _check_served_like_transformers(folder: Path, server: Server, greedy_pair: GreedyPair) -> list[list[int]]:
    model, tokenizer = _load(folder)
    continuations = []
    for prompt in PROMPTS:
        expected, actual = greedy_pair(model, _prompt_ids(tokenizer, prompt), TOKENS, server)
        assert len(expected) >= 32 and actual == expected, prompt
        continuations.append(expected)
    # the same through the chat endpoint: the GGUF's own tokenizer and chat template build the prompt
    ids = _prompt_ids(tokenizer, PROMPTS[1])
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=40, do_sample=False)  # type: ignore[attr-defined]
    text = tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)  # type: ignore[attr-defined]
    completion = server.client.complete([{"role": "user", "content": PROMPTS[1]}], max_tokens=40, temperature=0.0)
    assert run_sync(completion).text == text
    return continuations


def test_embedded_folder_export_serves_the_same_greedy_tokens(
    embedded_folder: Path, tmp_path: Path, greedy_pair: GreedyPair, exact: dict[str, object]
) -> None:
    out = export_gguf(embedded_folder, tmp_path / "embedded.f32.gguf", "f32")
    with Server(out, LlamaCppBackend(parallel=1, **exact)) as server:  # type: ignore[arg-type]
        _check_served_like_transformers(embedded_folder, server, greedy_pair)


def test_trained_checkpoint_is_exported_into_lw_home_and_served(
    embedded_folder: Path,
    sft_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    greedy_pair: GreedyPair,
    exact: dict[str, object],
) -> None:
    """Changed weights: the test cannot pass by serving the original GGUF again."""
    monkeypatch.setenv("LW_HOME", str(tmp_path / "home"))
    base_model, tokenizer = _load(embedded_folder)
    with Server(sft_folder, LlamaCppBackend(export_outtype="f32", parallel=1, **exact)) as server:  # type: ignore[arg-type]
        assert server.model_name == "final"
        trained = _check_served_like_transformers(sft_folder, server, greedy_pair)
    exports = list((tmp_path / "home" / "gguf").glob("final-*.f32.gguf"))
    assert len(exports) == 1, "exported once into $LW_HOME/gguf"
    with torch.inference_mode():
        ids = _prompt_ids(tokenizer, PROMPTS[0])
        out = base_model.generate(torch.tensor([ids]), max_new_tokens=TOKENS, min_new_tokens=TOKENS, do_sample=False)  # type: ignore[attr-defined]
    assert trained[0] != out[0, len(ids) :].tolist(), "the fine-tuned checkpoint answers differently from the base"

    stamp = exports[0].stat().st_mtime_ns
    with Server(sft_folder, "llamacpp") as server:  # the defaults: an f16 export, made once and then reused
        reply = server.client.complete([{"role": "user", "content": PROMPTS[0]}], max_tokens=12, temperature=0.0)
        completion = run_sync(reply)
        print("f16 export says:", completion.text)
        assert completion.usage.completion_tokens == 12
    assert exports[0].stat().st_mtime_ns == stamp
    assert len(list((tmp_path / "home" / "gguf").glob("final-*.f16.gguf"))) == 1


def test_f32_export_loads_back_in_transformers_with_logits_within_1e_4(embedded_folder: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    out = export_gguf(embedded_folder, tmp_path / "embedded.f32.gguf", "f32")
    source, tokenizer = _load(embedded_folder)
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=out.name, dtype=torch.float32).eval()
    ids = torch.tensor([_prompt_ids(tokenizer, PROMPTS[0] + " In 2024, 12345 cats; naïve café.")])
    with torch.inference_mode():
        diff = (source(ids).logits - reloaded(ids).logits).abs().max()  # type: ignore[operator]
    assert float(diff) <= 1e-4
