"""train_dpo on a tiny random model: a few steps of TRL's DPOTrainer on lw preference pairs grow the margin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lw_train import ConfigError, DPOConfig, train_dpo

CHOSEN, REJECTED = "A calm, complete answer that ends.", "no"


def _pairs(path: Path, count: int = 8) -> Path:
    with path.open("w") as out:
        for i in range(count):
            pair = {
                "prompt": [{"role": "user", "content": f"Question {i}?"}],
                "chosen": [{"role": "assistant", "content": CHOSEN}],
                "rejected": [{"role": "assistant", "content": REJECTED}],
            }
            out.write(json.dumps(pair) + "\n")
    return path


def _answer_logprob(model, tokenizer, prompt: str, answer: str) -> float:
    messages = [{"role": "user", "content": prompt}]
    start = len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"])
    ids = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": answer}], return_dict=True)
    ids = torch.tensor([ids["input_ids"]])
    with torch.no_grad():
        logits = model(ids, use_cache=False).logits[0, :-1]
    logprobs = F.log_softmax(logits.float(), dim=-1).gather(1, ids[0, 1:, None])[:, 0]
    return float(logprobs[start - 1 :].sum())


def _margin(model, tokenizer) -> float:
    return _answer_logprob(model, tokenizer, "Question 3?", CHOSEN) - _answer_logprob(
        model, tokenizer, "Question 3?", REJECTED
    )


@pytest.mark.parametrize("variant", ["full", "lora-precomputed-reference"])
def test_a_few_dpo_steps_grow_the_chosen_minus_rejected_margin(tiny_run, tmp_path, variant):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_folder, _ = tiny_run
    settings = {"lora": {"r": 8, "alpha": 16}, "precompute_ref_log_probs": True} if variant != "full" else {}
    config = DPOConfig.validated({
        "model": str(model_folder), "data": str(_pairs(tmp_path / "pairs.jsonl")), "output_dir": str(tmp_path / "out"),
        "max_tokens": 256, "max_steps": 6, "learning_rate": 1e-2 if variant != "full" else 3e-3,
        "warmup_ratio": 0.0, "pairs_per_device": 2, "beta": 0.1, **settings,
    })  # fmt: skip
    result = train_dpo(config, progress=False)
    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    before = _margin(AutoModelForCausalLM.from_pretrained(model_folder), tokenizer)
    after = _margin(AutoModelForCausalLM.from_pretrained(tmp_path / "out"), tokenizer)
    assert after > before + 1.0, (before, after)
    assert result.summary["steps"] == 6 and result.summary["final_margin"] > 0
    losses = [e["loss"] for e in result.summary["losses"]]
    assert losses[-1] < losses[0]


def test_pairs_over_max_tokens_are_dropped_and_counted_never_truncated(tiny_run, tmp_path):
    model_folder, _ = tiny_run
    data = _pairs(tmp_path / "pairs.jsonl", count=4)
    long_pair = {
        "prompt": [{"role": "user", "content": "Long?"}],
        "chosen": [{"role": "assistant", "content": "word " * 80}],
        "rejected": [{"role": "assistant", "content": "no"}],
    }
    with data.open("a") as out:
        out.write(json.dumps(long_pair) + "\n")
    values = {"model": str(model_folder), "data": str(data), "output_dir": str(tmp_path / "out"), "max_steps": 1}
    result = train_dpo(DPOConfig.validated({**values, "max_tokens": 200}), progress=False)
    assert result.summary["pairs"] == 4 and result.summary["dropped_overlong"] == 1
    with pytest.raises(ConfigError, match=r"field 'max_tokens': every one of the 5 pairs"):
        train_dpo(DPOConfig.validated({**values, "max_tokens": 20, "output_dir": str(tmp_path / "o2")}))
