"""The files lw-data writes are what TRL's trainers read: one batch each, with the loss on exactly the answers."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from lw_core import DIMENSIONS, PreferencePair, SFTRecord, read_jsonl
from lw_data import DPORule, SFTFilters, build_dpo, build_sft_file, to_dataset, write_table

pytestmark = pytest.mark.slow
datasets = pytest.importorskip("datasets")
trl = pytest.importorskip("trl")


def _args(cls: Any, tmp_path: Path, **kw: Any) -> Any:
    return cls(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=2,
        bf16=False,
        report_to=[],
        use_cpu=True,
        **kw,
    )


# SmolLM2's ChatML template with the assistant's answer (and its end-of-turn token) marked as {% generation %}: what
# TRL's assistant-only loss needs to tell the answer from the prompt in a `messages` row.
TRAINING_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_sft_records_train_exactly_the_answer_in_sfttrainer(
    tmp_path: Path, make: Any, tokenizer: Any, tiny_model: Any
) -> None:
    document, prose, chinese = make.document, make.prose, make.chinese
    sections = {"a": ["### Tides\n" + prose(60, 1), prose(60, 2)], "b": [chinese(100, 3)]}
    docs = make.write_lines(
        tmp_path / "docs.jsonl",
        [
            document("a", "Write a 120-word note on tides", sections["a"], length=120),
            document("b", "写一篇100字的短文", sections["b"]),
        ],
    )
    out = tmp_path / "sft.jsonl"
    build_sft_file(docs, out, filters=SFTFilters(min_words=50, system_prompt="You write long texts."))
    records = list(read_jsonl(out, SFTRecord))
    assert [r.id for r in records] == ["a", "b"]

    tokenizer = copy.copy(tokenizer)
    tokenizer.chat_template = TRAINING_TEMPLATE
    dataset = datasets.load_dataset("json", data_files=str(out), split="train")
    trainer = trl.SFTTrainer(
        model=tiny_model,
        args=_args(trl.SFTConfig, tmp_path, max_length=1024, assistant_only_loss=True),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 2
    for row, record in enumerate(records):
        messages = [m.model_dump() for m in record.messages]
        # what the model is shown before it answers, and the answer it must learn to give, tokenized on their own
        shown = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        prompt = tokenizer(shown, add_special_tokens=False)["input_ids"]
        answer = tokenizer(messages[-1]["content"] + "<|im_end|>", add_special_tokens=False)["input_ids"]
        ids, labels = batch["input_ids"][row].tolist(), batch["labels"][row].tolist()
        assert ids[: len(prompt) + len(answer)] == prompt + answer
        trained = [i for i, label in enumerate(labels) if label != -100]
        assert trained == list(range(len(prompt), len(prompt) + len(answer)))  # every prompt token is masked
        assert [labels[i] for i in trained] == answer  # and each answer token is its own label
        answer_text = "\n\n".join(sections[record.id]) + "<|im_end|>"  # the document, subtitle and all
        assert tokenizer.decode([ids[i] for i in trained]) == answer_text


def test_dpo_records_go_through_dpotrainer(tmp_path: Path, make: Any, tokenizer: Any, tiny_model: Any) -> None:
    prose, chinese = make.prose, make.chinese
    predictions = pl.DataFrame(
        [
            {"id": "a", "prompt": "Write 40 words on reefs", "response": prose(40, 1), "length": 40, "sample": 0},
            {"id": "a", "prompt": "Write 40 words on reefs", "response": prose(8, 2), "length": 40, "sample": 1},
            {"id": "b", "prompt": "写40字", "response": chinese(40, 1), "length": 40, "sample": 0},
            {"id": "b", "prompt": "写40字", "response": chinese(200, 2), "length": 40, "sample": 1},
        ]
    )
    scores = dict.fromkeys(DIMENSIONS, 4)
    judgments = pl.DataFrame([{"id": i, "sample": s, "scores": scores} for i in "ab" for s in (0, 1)])
    pairs, rejects = build_dpo(predictions, judgments, DPORule(system_prompt="Be concise."))
    assert rejects.height == 0
    path = write_table(pairs, tmp_path / "dpo.jsonl")
    assert [p.id for p in read_jsonl(path, PreferencePair)] == ["a", "b"]

    for dataset in (datasets.load_dataset("json", data_files=str(path), split="train"), to_dataset(pairs)):
        trainer = trl.DPOTrainer(
            model=tiny_model,
            ref_model=copy.deepcopy(tiny_model),
            args=_args(trl.DPOConfig, tmp_path, max_length=1024),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
        batch = next(iter(trainer.get_train_dataloader()))
        # TRL stacks the chosen rows, then the rejected rows, of a batch of 2 pairs
        assert batch["input_ids"].shape[0] == 4 and batch["completion_mask"].any(dim=1).all()
        rows = [tokenizer.decode(ids, skip_special_tokens=False) for ids in batch["input_ids"]]
        assert all("Be concise." in row for row in rows)
        # the loss covers exactly each answer (and its end of turn), never the system prompt or the question
        completions = [
            tokenizer.decode(ids[mask.bool()], skip_special_tokens=False)
            for ids, mask in zip(batch["input_ids"], batch["completion_mask"], strict=True)
        ]
        by_id = {p["id"]: p for p in pairs.to_dicts()}
        order = [row["id"] for row in dataset]
        expected = [by_id[i]["chosen"][0]["content"] for i in order] + [
            by_id[i]["rejected"][0]["content"] for i in order
        ]
        assert completions == [text + "<|im_end|>\n" for text in expected]
