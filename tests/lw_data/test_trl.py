"""The files lw-data writes are what TRL's trainers read: load them and tokenize one batch."""

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


def test_sft_records_go_through_sfttrainer(tmp_path: Path, make: Any, tokenizer: Any, tiny_model: Any) -> None:
    document, prose, chinese = make.document, make.prose, make.chinese
    docs = make.write_lines(
        tmp_path / "docs.jsonl",
        [
            document("a", "Write a 120-word note on tides", [prose(60, 1), prose(60, 2)], length=120),
            document("b", "写一篇100字的短文", [chinese(100, 3)]),
        ],
    )
    out = tmp_path / "sft.jsonl"
    build_sft_file(docs, out, filters=SFTFilters(min_words=50, system_prompt="You write long texts."))
    records = list(read_jsonl(out, SFTRecord))
    assert [r.id for r in records] == ["a", "b"]

    dataset = datasets.load_dataset("json", data_files=str(out), split="train")
    trainer = trl.SFTTrainer(
        model=tiny_model,
        args=_args(trl.SFTConfig, tmp_path, max_length=512),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 2
    text = tokenizer.decode(batch["input_ids"][0])
    assert "You write long texts." in text and "<|im_start|>assistant" in text
    # the prompt is masked out of the loss only when assistant-only loss is asked for; labels exist either way
    assert (batch["labels"] != -100).any()


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
            args=_args(trl.DPOConfig, tmp_path, max_length=512),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
        batch = next(iter(trainer.get_train_dataloader()))
        # TRL stacks the chosen rows, then the rejected rows, of a batch of 2 pairs
        assert batch["input_ids"].shape[0] == 4 and batch["completion_mask"].any(dim=1).all()
        rows = [tokenizer.decode(ids, skip_special_tokens=False) for ids in batch["input_ids"]]
        assert all("Be concise." in row for row in rows)
        first_words = {p["chosen"][0]["content"][:12] for p in pairs.to_dicts()}
        first_words |= {p["rejected"][0]["content"][:12] for p in pairs.to_dicts()}
        assert all(any(w in row for row in rows) for w in first_words)
