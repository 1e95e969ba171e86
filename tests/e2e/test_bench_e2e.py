"""lw-bench end to end: the embedded SmolLM2-135M answers 3 LongBench-Write prompts and judges them itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lw_bench import judge, load_items, predict, read_judgments, read_predictions, score_run, write_report
from lw_core import DIMENSIONS

DATA_DIR = Path(__file__).parents[2].parent / "shared/data/longbench_write"


@pytest.mark.slow
async def test_predict_judge_score_report_with_the_embedded_model(embedded_server, tmp_path: Path) -> None:
    if not (DATA_DIR / "longbench_write_en.jsonl").is_file():
        pytest.skip(f"benchmark data not found at {DATA_DIR}")
    items = sorted(load_items("longbench_write_en", data_dir=DATA_DIR, download=False), key=lambda i: i.length)[:3]
    client = embedded_server.client

    predicted = await predict(client, items, tmp_path / "pred.jsonl", max_tokens=32, temperature=0.5, concurrency=3)
    assert (predicted.done, predicted.failed) == (3, 0), predicted.errors
    predictions = read_predictions(tmp_path / "pred.jsonl")
    assert all(p.response.strip() and p.usage.completion_tokens > 0 for p in predictions)

    # the 135M judge rarely writes all six scores: a failure is recorded (no retries here, to stay fast)
    judged = await judge(client, predictions, tmp_path / "judge.jsonl", retries=0, max_tokens=80, concurrency=3)
    judgments = read_judgments(tmp_path / "judge.jsonl")
    assert judged.done + judged.failed == 3 == len(judgments)
    assert all(j.judge == embedded_server.model_name and j.usage.calls >= 1 for j in judgments)
    assert all(set(j.scores) == set(DIMENSIONS) for j in judgments if j.status == "ok")

    report = score_run(predictions, judgments, dataset="longbench_write_en")
    assert report.overall.n == 3 and report.overall.n_judged + report.judge_failures == 3
    assert 0.0 <= report.overall.length_score <= 100.0
    paths = write_report(report, tmp_path / "report")
    assert json.loads(paths["json"].read_text())["overall"]["n"] == 3
    assert paths["png"].read_bytes().startswith(b"\x89PNG") and "S_l" in paths["md"].read_text()
    print(
        f"\nlw-bench e2e ({embedded_server.model_name}): S_l={report.overall.length_score:.1f} "
        f"S_q={report.overall.quality_score} judged={report.overall.n_judged} failures={report.judge_failures}"
    )
