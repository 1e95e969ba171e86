"""`lw reproduce` end to end on the embedded model (a trimmed smoke profile): every stage's records, the trained
model on the same backend as the base model, the report; a rerun spends nothing."""

import json
from pathlib import Path

import pytest
from lw_core import BenchReport, Document, Judgment, Prediction, SFTRecord, read_jsonl
from lw_reproduce.config import ReproduceConfig
from lw_reproduce.pipeline import reproduce

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_reproduce_runs_every_stage_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LW_DATA_DIR", str(DATA))
    config = ReproduceConfig.load(
        "smoke",
        None,
        {
            "name": "tiny",
            "instructions.n": 2,
            "instructions.general": 2,
            "instructions.max_words": 250,
            "data.min_words": 20,
            "data.keep_truncated": True,  # the point here is the plumbing: a 135M teacher may not stop by itself
            "data.max_repetition": 0.9,
            "train.settings.max_steps": 2,
            "bench.items": 1,
        },
    )
    lines: list[str] = []
    run = reproduce(config, tmp_path, say=lines.append)
    root = run.root
    for stage in ("instructions", "agentwrite", "data", "bench_base", "train", "bench_sft", "report"):
        assert (root / stage / "done").exists(), stage

    documents = list(read_jsonl(root / "agentwrite" / "documents.jsonl", Document))
    assert len(documents) == 2 and all(d.plan is not None and d.plan.steps for d in documents)
    assert len(list(read_jsonl(root / "agentwrite" / "general.jsonl", SFTRecord))) == 2
    train_rows = (root / "data" / "train.jsonl").read_text().splitlines()
    assert train_rows and all("messages" in json.loads(row) for row in train_rows)

    summary = json.loads((root / "train" / "done").read_text())
    model = Path(summary["model"])
    assert (model / "config.json").exists() and (model / "tokenizer_config.json").exists()
    assert summary["trained_tokens"] > 0

    for stage in ("bench_base", "bench_sft"):
        predictions = list(read_jsonl(root / stage / "longbench" / "predictions.jsonl", Prediction))
        judgments = list(read_jsonl(root / stage / "longbench" / "judgments.jsonl", Judgment))
        assert len(predictions) == 1 and len(judgments) == 1
        report = BenchReport.model_validate_json((root / stage / "longbench" / "report.json").read_text())
        assert report.overall.n == 1 and report.overall.length_score is not None
        assert len(list(read_jsonl(root / stage / "ruler" / "predictions.jsonl", Prediction))) == 1
    served = (root / "logs").glob("server-lw-*.log")
    assert {p.name for p in served} == {"server-lw-base.log", "server-lw-sft.log"}  # both on llama.cpp
    comparison = (root / "report" / "comparison.md").read_text()
    assert "pipeline check" in comparison and "base" in comparison and "sft" in comparison
    assert "## Stages" in comparison and "| train |" in comparison
    assert (root / "report" / "comparison.png").stat().st_size > 1000
    assert any("report" in line for line in lines)

    rerun: list[str] = []
    reproduce(config, tmp_path, say=rerun.append)
    assert sum("done already, skipped" in line for line in rerun) == 7
