"""`lw reproduce` end to end on the embedded model: every stage's files appear, and a rerun spends nothing."""

import json
from pathlib import Path

import pytest
from lw_core import BenchReport, Document, read_jsonl
from lw_reproduce.config import ReproduceConfig
from lw_reproduce.pipeline import reproduce

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "longbench_write"


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_reproduce_runs_every_stage_and_resumes(tmp_path: Path) -> None:
    config = ReproduceConfig(
        name="tiny",
        n_instructions=2,
        max_section_words=80,
        min_words=30,
        train_steps=1,
        train_max_tokens=1024,
        bench_items=2,
        bench_max_tokens=96,
        judge_max_tokens=256,
        bench_data_dir=DATA,
    )
    lines: list[str] = []
    run = reproduce(config, tmp_path, say=lines.append)
    root = run.root
    for stage in ("agentwrite", "data", "bench_base", "train", "compare"):
        assert (root / stage / "done").exists(), stage
    documents = list(read_jsonl(root / "agentwrite" / "documents.jsonl", Document))
    assert len(documents) == 2 and all(d.plan is not None and d.plan.steps for d in documents)
    base = BenchReport.model_validate_json((root / "bench_base" / "report.json").read_text())
    assert base.overall.n == 2 and base.overall.length_score is not None
    assert (root / "bench_base" / "report.png").stat().st_size > 1000
    train = json.loads((root / "train" / "done").read_text())
    if json.loads((root / "data" / "done").read_text())["kept"]:
        assert (Path(train["model"]) / "config.json").exists()
        assert (root / "bench_trained" / "report.json").exists()
        assert len(train["losses"]) == 1 and train["losses"][0] > 0
    assert "| base: " in (root / "compare" / "comparison.md").read_text()

    rerun: list[str] = []
    reproduce(config, tmp_path, say=rerun.append)
    assert sum("done already, skipped" in line for line in rerun) >= 5
