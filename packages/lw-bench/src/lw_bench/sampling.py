"""Prediction sampling per model family, as THUDM/LongWriter's ``evaluation/pred.py`` samples each released model.

``pred.py`` (commit 3fcfdff) does not use one setting for all: a model whose path contains ``llama`` is sampled
with ``model.generate(do_sample=True, temperature=0.5)`` (lines 33-43), so top_p and top_k are whatever the
checkpoint's ``generation_config.json`` and transformers' defaults say; any other model (GLM-4) goes through its
``chat()`` with ``temperature=0.5`` (line 46), which keeps ``chat()``'s own ``top_p=0.8`` (``train/patch/
modeling_chatglm.py`` line 877). transformers' ``generate`` samples with ``top_k=50`` unless a generation config
says otherwise, and neither checkpoint's does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lw_bench.errors import BenchError

__all__ = ["PAPER_SAMPLING", "Sampling", "model_family", "paper_sampling"]


@dataclass(frozen=True)
class Sampling:
    """How answers are sampled: temperature and top_p in the request, top_k as a server option; where it is from.

    >>> PAPER_SAMPLING["glm"].server_options()
    {'top_k': 50}
    """

    temperature: float
    top_p: float | None
    top_k: int | None
    source: str

    def server_options(self) -> dict[str, Any]:
        """What goes beside the OpenAI fields (``extra_body``): ``top_k``, which llama.cpp, SGLang and vLLM read."""
        return {"top_k": self.top_k} if self.top_k is not None else {}


#: The paper's prediction sampling by model family (``pred.py``); the family of a model is :func:`model_family`.
PAPER_SAMPLING: dict[str, Sampling] = {
    "glm": Sampling(
        temperature=0.5,
        top_p=0.8,
        top_k=50,
        source="pred.py line 46: model.chat(temperature=0.5), whose default top_p is 0.8 (modeling_chatglm.py line "
        "877); top_k: transformers' generate default",
    ),
    "llama": Sampling(
        temperature=0.5,
        top_p=0.9,
        top_k=50,
        source="pred.py lines 37-43: generate(do_sample=True, temperature=0.5); top_p from the checkpoint's "
        "generation_config.json, which a model trained from Meta-Llama-3.1-8B inherits (top_p 0.9); top_k: "
        "transformers' generate default",
    ),
}


def model_family(model: str) -> str | None:
    """``pred.py``'s rule for which branch samples a model: ``llama`` in its name; ``glm`` for GLM-4's ``chat()``.

    >>> model_family("meta-llama/Meta-Llama-3.1-8B"), model_family("THUDM/glm-4-9b"), model_family("Qwen/Qwen2.5-7B")
    ('llama', 'glm', None)
    """
    name = model.lower()
    if "llama" in name:
        return "llama"
    if "glm" in name:
        return "glm"
    return None


def paper_sampling(model: str) -> Sampling:
    """The paper's sampling for ``model`` (a hub id, path or name that says its family).

    >>> paper_sampling("THUDM/LongWriter-llama3.1-8b").top_p
    0.9
    """
    family = model_family(model)
    if family is None:
        raise BenchError(
            f"{model!r}: the paper's pred.py samples Llama and GLM-4 models only (by 'llama' in the name, else GLM-4's "
            "chat()); set the sampling yourself (temperature, top_p) for other models"
        )
    return PAPER_SAMPLING[family]
