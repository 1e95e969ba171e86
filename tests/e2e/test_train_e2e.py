"""A model trained by `lw_train.train_sft` is served by lw-serve and scored by lw-bench, as the pipeline does it."""

from __future__ import annotations

from pathlib import Path
from statistics import fmean

import pytest
from lw_bench import load_items, predict, read_predictions, score_run
from lw_core import count_words, length_score
from lw_serve import Server
from lw_train import SFTConfig, train_sft

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT.parent / "shared" / "data" / "longbench_write"


@pytest.mark.slow
@pytest.mark.timeout(1500)
async def test_trained_model_is_served_and_scored(tmp_path: Path) -> None:
    if not (DATA_DIR / "longbench_write_en.jsonl").is_file():
        pytest.skip(f"benchmark data not found at {DATA_DIR}")
    config = SFTConfig.from_file(
        ROOT / "recipes" / "cpu-sft.toml",
        [f"data={ROOT / 'recipes' / 'data' / 'sample-sft.jsonl'}", f"output_dir={tmp_path / 'sft'}", "max_steps=2"],
    )
    result = train_sft(config, progress=False)
    assert result.summary["steps"] == 2

    items = sorted(load_items("longbench_write_en", data_dir=DATA_DIR, download=False), key=lambda i: i.length)[:2]
    with Server(result.output_dir, name="lw-sft", log_path=tmp_path / "server.log") as server:
        done = await predict(server.client, items, tmp_path / "pred.jsonl", max_tokens=32, concurrency=2)
    assert (done.done, done.failed) == (2, 0), done.errors
    predictions = read_predictions(tmp_path / "pred.jsonl")
    report = score_run(predictions, dataset="longbench_write_en")
    assert all(p.response.strip() for p in predictions)  # the trained model answers, and its S_l is of those words
    expected = fmean(length_score(p.length, count_words(p.response)) for p in predictions)
    assert report.overall.n == 2 and report.overall.length_score == pytest.approx(expected)
