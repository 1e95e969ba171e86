"""lw-bench end to end: the embedded SmolLM2-135M answers 3 LongBench-Write prompts and judges them itself."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import fmean

import pytest
from lw_bench import judge, load_items, predict, read_judgments, read_predictions, score_run, write_report
from lw_core import DIMENSIONS, count_words, length_score

SHARED_DATA = Path(__file__).parents[2].parent / "shared/data"


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["paper", "lw"])
async def test_predict_judge_score_report_with_the_embedded_model(
    embedded_server, tmp_path: Path, preset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not (SHARED_DATA / "longbench_write/longbench_write_en.jsonl").is_file():
        pytest.skip(f"benchmark data not found under {SHARED_DATA}")
    monkeypatch.setenv("LW_DATA_DIR", str(SHARED_DATA))  # the paper's judge.txt and the benchmark, no download
    items = sorted(load_items("longbench_write_en", download=False), key=lambda i: i.length)[:3]
    client = embedded_server.client

    predicted = await predict(client, items, tmp_path / "pred.jsonl", max_tokens=32, concurrency=3)
    assert (predicted.done, predicted.failed) == (3, 0), predicted.errors
    predictions = read_predictions(tmp_path / "pred.jsonl")
    assert all(p.response.strip() and p.usage.completion_tokens > 0 for p in predictions)

    # the 135M judge rarely writes all six scores: a failure is recorded (no retries here, to stay fast)
    judged = await judge(
        client, predictions, tmp_path / "judge.jsonl", preset=preset, retries=0, max_tokens=80, concurrency=3
    )
    judgments = read_judgments(tmp_path / "judge.jsonl")
    assert judged.done + judged.failed == 3 == len(judgments)
    assert all(j.judge == embedded_server.model_name and j.usage.calls >= 1 for j in judgments)
    assert all(set(j.scores) == set(DIMENSIONS) for j in judgments if j.status == "ok")

    report = score_run(predictions, judgments, items=items, dataset="longbench_write_en")
    assert report.overall.n == 3 and report.overall.n_judged + report.judge_failures == 3
    assert report.meta["coverage"]["share"] == 1.0
    # S_l is the mean of each answer's score for the words it holds (answers cut at 32 tokens score low, not any 0-100)
    expected = fmean(length_score(p.length, count_words(p.response)) for p in predictions)
    assert report.overall.length_score == pytest.approx(expected)
    paths = write_report(report, tmp_path / "report")
    assert json.loads(paths["json"].read_text())["overall"]["n"] == 3
    assert paths["png"].read_bytes().startswith(b"\x89PNG") and "S_l" in paths["md"].read_text()
    print(
        f"\nlw-bench e2e ({embedded_server.model_name}, judge preset {preset}): S_l={report.overall.length_score:.1f} "
        f"S_q={report.overall.quality_score} judged={report.overall.n_judged} failures={report.judge_failures}"
    )
