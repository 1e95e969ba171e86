"""The real check of `train_sft`: the embedded SmolLM2-135M-Instruct, named as lw-serve names it, on 16 chats."""

import json

import pytest
import torch

pytestmark = pytest.mark.slow

TOPICS = ["rivers", "bridges", "winter", "markets", "lighthouses", "gardens", "letters", "trains"]


def _records(path):
    with path.open("w") as out:
        for i in range(16):
            topic = TOPICS[i % len(TOPICS)]
            answer = f"Here is a short note about {topic}. " + " ".join(
                f"{topic.capitalize()} matter to people in many ways, and note {i} says so plainly." for _ in range(3)
            )
            chat = [
                {"role": "user", "content": f"Write a short note about {topic}."},
                {"role": "assistant", "content": answer},
            ]
            out.write(json.dumps({"messages": chat}) + "\n")
    return path


def test_sft_of_the_embedded_model_lowers_the_loss_checkpoints_and_loads_in_transformers(tmp_path):
    from lw_train import SFTConfig, train_sft
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = SFTConfig.validated({
        "model": "smollm2-135m-instruct", "data": str(_records(tmp_path / "sft.jsonl")),
        "output_dir": str(tmp_path / "out"), "max_tokens": 512, "epochs": 2, "learning_rate": 1e-4,
        "warmup_ratio": 0.0, "save_steps": 3, "threads": 2,
    })  # fmt: skip
    result = train_sft(config, progress=False)
    losses = [e["loss"] for e in result.summary["losses"]]
    assert result.summary["samples"] == 16 and result.summary["steps"] == len(losses) >= 3
    assert losses[-1] < losses[0] * 0.8, losses
    assert any((tmp_path / "out" / "checkpoints").glob("checkpoint-*/lw-complete"))

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Write a short note about rivers."}], add_generation_prompt=True, return_dict=True
    )
    output = model.generate(torch.tensor([prompt["input_ids"]]), max_new_tokens=12, do_sample=False)
    assert "river" in tokenizer.decode(output[0, len(prompt["input_ids"]) :]).lower()
