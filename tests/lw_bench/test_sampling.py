"""Prediction sampling per model family, as THUDM/LongWriter@3fcfdff's evaluation/pred.py samples each model."""

from __future__ import annotations

import pytest
from lw_bench import PAPER_SAMPLING, BenchError, paper_sampling


def test_each_family_is_sampled_as_pred_py_samples_it():
    glm, llama = paper_sampling("THUDM/glm-4-9b"), paper_sampling("meta-llama/Meta-Llama-3.1-8B")
    assert (glm.temperature, glm.top_p, glm.top_k) == (0.5, 0.8, 50)  # chat(temperature=0.5), chat()'s top_p
    assert (llama.temperature, llama.top_p, llama.top_k) == (0.5, 0.9, 50)  # generate(temperature=0.5)
    assert glm != llama, "not one setting for all"
    assert paper_sampling("THUDM/LongWriter-glm4-9b") is PAPER_SAMPLING["glm"]
    assert paper_sampling("runs/x/LongWriter-llama3.1-8b") is PAPER_SAMPLING["llama"]
    assert llama.server_options() == {"top_k": 50}


def test_a_model_pred_py_does_not_sample_is_a_clear_error():
    with pytest.raises(BenchError, match="Llama and GLM-4 models only"):
        paper_sampling("Qwen/Qwen2.5-7B-Instruct")
