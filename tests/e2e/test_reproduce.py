"""`lw reproduce` end to end on the embedded model (a trimmed smoke profile): every stage's records, the trained
model on the same backend as the base model, the report; a rerun spends nothing."""

import json
from pathlib import Path

import pytest
from lw_core import BenchReport, Document, Judgment, Prediction, PreferencePair, SFTRecord, read_jsonl
from lw_reproduce.config import ReproduceConfig
from lw_reproduce.pipeline import reproduce

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

#: The point here is the plumbing, with two documents of a 135M teacher sampled on this CPU's llama.cpp build: keep
#: whatever it wrote (CI on f3b985c rejected both, so that run had no data). The filters are tested in tests/lw_data.
PLUMBING_FILTERS = {
    "data.min_words": 1,
    "data.keep_truncated": True,
    "data.min_length_ratio": 0.0,
    "data.max_length_ratio": 1000.0,
    "data.max_repetition": 1.0,
}


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
            **PLUMBING_FILTERS,
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


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_trimmed_cpu_profile_with_the_dpo_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cpu profile's recipe with its DPO stage on, at a tiny scale: samples of the SFT model on llama.cpp,
    loop-aware length-only pairs, TRL's DPO, the DPO model's GGUF on the same backend, its row in the report."""
    monkeypatch.setenv("LW_DATA_DIR", str(DATA))
    config = ReproduceConfig.load(
        "cpu",
        None,
        {
            "name": "cpu-dpo",
            "instructions.n": 2,
            "instructions.general": 0,
            "instructions.min_words": 100,
            "instructions.max_words": 200,
            **PLUMBING_FILTERS,
            "data.strip_task_talk": False,  # a section of task talk alone becomes empty and rejects its document
            "train.settings.max_steps": 1,
            "train.settings.max_tokens": 2048,
            "bench.items": 1,
            "bench.max_required": 100,
            "bench.tokens_per_required_word": 1.5,
            "bench.ruler": False,
            "dpo.enabled": True,
            "dpo.instructions": 2,
            "dpo.samples": 2,
            "dpo.tokens_per_required_word": 1.0,
            "dpo.settings.max_steps": 1,
            "dpo.settings.max_tokens": 2048,
        },
    )
    lines: list[str] = []
    run = reproduce(config, tmp_path, say=lines.append)
    root = run.root
    stages = ("instructions", "agentwrite", "data", "bench_base", "train", "bench_sft", "dpo_data", "dpo", "bench_dpo")
    for stage in (*stages, "report"):
        assert (root / stage / "done").exists(), stage

    samples = list(read_jsonl(root / "dpo_data" / "samples.jsonl", Prediction))
    assert len(samples) == 4 and {p.sample for p in samples} == {0, 1}
    assert not (root / "dpo_data" / "judgments.jsonl").exists()  # the cpu recipe pairs by loop-aware length alone
    pairs = list(read_jsonl(root / "dpo_data" / "pairs.jsonl", PreferencePair))
    assert 1 <= len(pairs) <= 2 and all(p.meta["chosen_length_score"] >= p.meta["rejected_length_score"] for p in pairs)
    trained = json.loads((root / "dpo" / "done").read_text())
    assert trained["from"] == "sft" and (Path(trained["model"]) / "config.json").exists()
    served = {p.name for p in (root / "logs").glob("server-lw-*.log")}
    assert {"server-lw-base.log", "server-lw-sft.log", "server-lw-dpo.log"} <= served  # all on llama.cpp
    report = BenchReport.model_validate_json((root / "bench_dpo" / "longbench" / "report.json").read_text())
    assert report.overall.n == 1 and report.overall.length_score is not None
    comparison = (root / "report" / "comparison.md").read_text()
    assert all(f"| {label} | 1 / 1 |" in comparison for label in ("base", "sft", "dpo"))
    assert "| dpo_data |" in comparison and "| dpo |" in comparison  # the stage table

    rerun: list[str] = []
    reproduce(config, tmp_path, say=rerun.append)
    assert sum("done already, skipped" in line for line in rerun) == len(stages) + 1
