"""Reports: the three files, their content, coverage, the Ruler table, and the side-by-side table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lw_bench import comparison_table, score_run, write_report
from lw_core import DIMENSIONS, BenchItem, BenchReport, Judgment, Prediction

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(model: str, words: int, score: int) -> BenchReport:
    predictions = [
        Prediction(id=f"{i}", prompt=f"p{i}", response="w " * words, length=length, type=kind, model=model)
        for i, (length, kind) in enumerate([(100, "Essay"), (1000, "Essay"), (5000, "Fiction"), (200, "Fiction")])
    ]
    judgments = [Judgment(id=p.id, scores={d: score for d in DIMENSIONS}, judge="judge-x") for p in predictions]
    return score_run(predictions, judgments, dataset="longbench_write")


def test_write_report_produces_markdown_json_and_png(tmp_path: Path) -> None:
    report = _run("model-a", 1000, 4)
    paths = write_report(report, tmp_path / "out", compare=[_run("model-b", 200, 3)])
    assert set(paths) == {"md", "json", "png"} and all(p.is_file() for p in paths.values())
    assert BenchReport.model_validate(json.loads(paths["json"].read_text())) == report
    assert paths["png"].read_bytes().startswith(PNG_MAGIC) and paths["png"].stat().st_size > 10_000
    markdown = paths["md"].read_text()
    assert "# LongBench-Write: model-a" in markdown and "judge: judge-x" in markdown
    assert f"S = {report.overall.score:.1f}" in markdown
    for name in ("[0, 500)", "[4000, ∞)", "Essay", "Fiction", *DIMENSIONS, "## Comparison", "model-b"):
        assert name in markdown
    assert not list((tmp_path / "out").glob(".*tmp"))  # atomic writes leave no temp files


def test_report_without_judgments_or_predictions_still_renders(tmp_path: Path) -> None:
    unjudged = score_run([Prediction(id="a", prompt="p", response="", length=100)])
    paths = write_report(unjudged, tmp_path)
    assert "S_l = 0.0" in paths["md"].read_text() and paths["png"].read_bytes().startswith(PNG_MAGIC)
    empty = score_run([])
    assert write_report(empty, tmp_path / "empty")["png"].read_bytes().startswith(PNG_MAGIC)


def test_comparison_table_has_one_row_per_run_in_order() -> None:
    runs = [_run("a", 1000, 5), _run("b|c", 100, 1)]
    table = comparison_table(runs).splitlines()
    assert len(table) == 4
    assert table[2].startswith("| a | judge-x | 4 |") and "| 100.0 | 100.0 | 100.0 |" not in table[3]
    assert table[3].startswith("| b\\|c |")  # a pipe in a model name does not break the table
    header = table[0].split(" | ")
    assert header[3:6] == ["S_l", "S_q", "S"] and "S_l [4000, ∞)" in table[0]
    row_a = table[2].split(" | ")
    assert row_a[4] == "100.0"  # S_q with all 5s


def test_the_report_states_coverage_and_warns_below_100_percent(tmp_path: Path) -> None:
    items = [BenchItem(prompt=f"p{i}", length=100) for i in range(3)]
    full = score_run([Prediction(id=i.id, prompt=i.prompt, response="w", length=100) for i in items], items=items)
    assert "Coverage: 3 of 3 items scored (100.0 %)." in write_report(full, tmp_path / "a")["md"].read_text()
    partial = score_run([Prediction(id=items[0].id, prompt="p0", response="w", length=100)], items=items)
    markdown = write_report(partial, tmp_path / "b")["md"].read_text()
    assert "WARNING — Coverage: 1 of 3 items scored (33.3 %)" in markdown and items[2].id in markdown


def test_a_ruler_report_has_the_output_length_table(tmp_path: Path) -> None:
    items = [BenchItem(prompt=f"p{i}", length=length) for i, length in enumerate([1000, 1000, 30000])]
    predictions = [Prediction(id=i.id, prompt=i.prompt, response="w " * 800, length=i.length) for i in items[:2]]
    report = score_run(predictions, items=items, dataset="longwrite_ruler")
    paths = write_report(report, tmp_path)
    markdown = paths["md"].read_text()
    assert markdown.startswith("# LongWrite-Ruler: ") and "## Output length per required length" in markdown
    assert "| 1000 | 2 | 2 | 800.0 | 800.0 | 800 | 87.5 |" in markdown
    assert "| 30000 | 1 | 0 | – | – | – | – |" in markdown
    assert paths["png"].read_bytes().startswith(PNG_MAGIC)
    other = score_run(predictions, items=items, dataset="longbench_write")
    assert "Output length per required length" not in write_report(other, tmp_path / "lb")["md"].read_text()


def test_writing_a_report_leaves_the_callers_matplotlib_backend_alone(tmp_path: Path) -> None:
    script = f"""
import matplotlib
matplotlib.use("svg")
from lw_bench import score_run, write_report
from lw_core import Prediction
write_report(score_run([Prediction(id="a", prompt="p", response="w", length=10)]), {str(tmp_path)!r})
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "report.png").read_bytes().startswith(PNG_MAGIC)
