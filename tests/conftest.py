"""Shared by every test folder: `gpu` tests run only where CUDA is available, and the tiny random Llama.

Each package's tests must run with only that package installed (.ci/package-tests), so a fixture here imports what
it needs (torch, transformers) when it is used, never at the top.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import pytest


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items and not _cuda_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_llama() -> Callable[..., Any]:
    """``tiny_llama(attn_implementation="sdpa", vocab_size=97, **config)``: a seeded random Llama for mechanics.

    Two layers, hidden size 32, 4 heads (2 KV heads), tied embeddings, fp32: sub-second steps on a CPU with a small
    vocabulary (the vocabulary dominates: SmolLM2's 49k makes every step seconds). Any ``LlamaConfig`` field given
    overrides the default; the same arguments give the same weights.
    """

    def build(attn_implementation: str = "sdpa", vocab_size: int = 97, **config: Any) -> Any:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        settings: dict[str, Any] = {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
            "tie_word_embeddings": True,
            **config,
        }
        torch.manual_seed(0)
        llama = LlamaConfig(vocab_size=vocab_size, attn_implementation=attn_implementation, **settings)
        return LlamaForCausalLM(llama).float()

    return build
