"""The comparison report: labelled by name, the paper's table, degenerate share, plots, and the CLI."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from lw_bench import BenchError, compare_runs, score_run, write_report
from lw_bench.cli import app
from lw_bench.compare import SMALL_JUDGE_CAVEAT, paired_length_difference, paper_table
from lw_core import DIMENSIONS, BenchItem, BenchReport, Judgment, Prediction
from typer.testing import CliRunner

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ITEMS = [BenchItem(prompt=f"p{i}", length=length) for i, length in enumerate([300, 1000, 3000, 6000])]
LOOP = "I am a writer. "  # 4 words, loops


def _words(n: int) -> str:
    """n distinct letter-only words (digits would not count as words to the paper)."""
    return " ".join("w" + "".join(chr(97 + k // 26**p % 26) for p in range(3)) for k in range(n))


def _report(model: str, words: float, score: int, *, loop: bool = False, items: int = 4) -> BenchReport:
    predictions = [
        Prediction(
            id=i.id,
            prompt=i.prompt,
            response=(LOOP * int(i.length * words / 4)) if loop else _words(int(i.length * words)),
            length=i.length,
            model=model,
        )
        for i in ITEMS[:items]
    ]
    judgments = [Judgment(id=p.id, scores=dict.fromkeys(DIMENSIONS, score), judge="tiny") for p in predictions]
    return score_run(predictions, judgments, items=ITEMS, dataset="longbench_write")


def test_rows_are_labelled_by_name_and_a_missing_run_keeps_its_own_row(tmp_path: Path) -> None:
    trained = _report("m-sft", 1.0, 4)
    table = paper_table({"base": None, "sft": trained}).splitlines()
    assert table[2].startswith("| base | missing |")
    assert table[3].startswith("| sft | 4 / 4 | 87.5 | 100.0 | 75.0 | 0.0 % |")  # S = (100 + 75) / 2
    header = table[0]
    assert "[4000, ∞) S_l" in header and "[0, 500) S_q" in header and "degenerate" in header


def test_comparison_files_and_figures(tmp_path: Path) -> None:
    base, sft = _report("m", 0.3, 2, loop=True, items=3), _report("m-sft", 1.0, 4)
    ruler = {"base": _report("m", 0.3, 2), "sft": _report("m-sft", 1.0, 4)}
    paths = compare_runs({"base": base, "sft": sft, "dpo": None}, tmp_path, ruler=ruler, small_judge=True)
    assert set(paths) == {"md", "json", "png", "ruler_png"}
    assert all(paths[k].read_bytes().startswith(PNG_MAGIC) for k in ("png", "ruler_png"))
    document = json.loads(paths["json"].read_text())
    assert document["labels"] == ["base", "sft", "dpo"] and document["runs"]["dpo"] is None
    assert document["runs"]["base"]["degenerate_share"] == 1.0 and document["runs"]["sft"]["degenerate_share"] == 0.0
    assert document["runs"]["base"]["coverage"] == 0.75 and document["runs"]["sft"]["S_l"] == 100.0
    assert [row["required"] for row in document["ruler"]["sft"]] == [300, 1000, 3000, 6000]
    markdown = paths["md"].read_text()
    assert SMALL_JUDGE_CAVEAT in markdown and "| dpo | missing |" in markdown
    assert "- base: WARNING — Coverage: 3 of 4 items scored" in markdown
    assert "## LongWrite-Ruler: output length per required length" in markdown
    assert "| 1000 | 300.0 | 300.0 | 300 | 1000.0 | 1000.0 | 1000 |" in markdown
    assert not list(tmp_path.glob(".*tmp"))


def test_no_caveat_without_a_small_judge_and_threshold_is_respected(tmp_path: Path) -> None:
    looping = _report("m", 1.0, 3, loop=True)
    markdown = compare_runs({"base": looping}, tmp_path, threshold=1.0)["md"].read_text()
    assert SMALL_JUDGE_CAVEAT not in markdown and "| 0.0 % |" in markdown and "above 1.0." in markdown


def test_nothing_to_compare_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="nothing to compare"):
        compare_runs({}, tmp_path)


runner = CliRunner()


def test_cli_compare_by_label_from_run_folders_and_reports(tmp_path: Path) -> None:
    base_dir, sft_dir = tmp_path / "base", tmp_path / "sft"
    write_report(_report("m", 0.5, 2), base_dir)
    sft_dir.mkdir()
    sft = _report("m-sft", 1.0, 4)
    (sft_dir / "predictions.jsonl").write_text(  # a folder with predictions only is scored on the fly
        "".join(
            Prediction(id=i.id, prompt=i.prompt, response="w " * i.length, length=i.length).model_dump_json() + "\n"
            for i in ITEMS
        )
    )
    ruler = tmp_path / "ruler.json"
    ruler.write_text(sft.model_dump_json())
    out = tmp_path / "cmp"
    result = runner.invoke(
        app,
        ["compare", str(base_dir), str(sft_dir), "--labels", "base,sft", "--out", str(out), "--ruler", f"sft={ruler}"],
    )
    assert result.exit_code == 0, result.output
    document = json.loads((out / "comparison.json").read_text())
    assert document["labels"] == ["base", "sft"] and document["runs"]["sft"]["S_l"] == 100.0
    assert document["runs"]["base"]["S_l"] == 50.0 and (out / "ruler.png").is_file()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["{a}", "{a}", "--labels", "base"], 2, "1 labels for 2 runs"),
        (["{a}", "{a}", "--labels", "x,x"], 2, "labels must differ"),
        (["{missing}", "--labels", "base"], 1, "no report.json or predictions.jsonl"),
        (["{a}", "--ruler", "nolabel"], 2, "LABEL=PATH"),
    ],
)
def test_cli_compare_errors(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    write_report(_report("m", 1.0, 3), tmp_path / "a")
    filled = [a.format(a=tmp_path / "a", missing=tmp_path / "nope") for a in args]
    result = runner.invoke(app, ["compare", *filled, "--out", str(tmp_path / "out")])
    assert result.exit_code == code, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output


def test_five_rows_with_cap_and_length_ratio_and_loops_marked_in_the_scatter(tmp_path: Path) -> None:
    looping = _report("m-dpo", 1.0, 3, loop=True)
    capped = looping.model_copy(update={"meta": {**looping.meta, "truncated": 3}})
    runs = {
        "base": _report("m", 0.5, 2),
        "sft": capped,
        "dpo": _report("m-dpo", 1.2, 4),
        "plan-sft": None,
        "agentwrite": _report("m", 0.9, 3, items=3),
    }
    table = paper_table(runs).splitlines()
    assert table[0].startswith("| model | items | S | S_l | S_q | degenerate | at cap | words ÷ required |")
    assert table[3].startswith("| sft | 4 / 4 |") and "| 100.0 % | 3 | 1.00 |" in table[3]
    assert "| 0.0 % | 0 | 0.50 |" in table[2] and "| 0.0 % | 0 | 1.20 |" in table[4]
    assert table[5].startswith("| plan-sft | missing |") and "| 0.0 % | 0 | 0.90 |" in table[6]
    paths = compare_runs(runs, tmp_path)
    document = json.loads(paths["json"].read_text())
    assert document["runs"]["sft"]["at_cap"] == 3 and document["runs"]["dpo"]["words_per_required"] == 1.2
    assert paths["png"].read_bytes().startswith(PNG_MAGIC)

    from lw_bench.report import new_figure, plot_lengths

    mixed = score_run(
        [Prediction(id=f"{k}", prompt="p", response=LOOP * 50 if k % 2 else _words(200), length=200) for k in range(6)]
    )
    axes = new_figure(4, 4).subplots()
    plot_lengths(axes, mixed)
    drawn = {c.get_label(): len(c.get_offsets()) for c in axes.collections}
    assert drawn == {"items": 3, "degenerate (repeated 4-grams > 0.3)": 3}


def test_runs_are_set_against_the_first_item_by_item(tmp_path: Path) -> None:
    base, sft = _report("m", 0.5, 2, items=3), _report("m-sft", 1.0, 4)  # sft: every item on length
    paths = compare_runs({"base": base, "sft": sft, "same": base}, tmp_path)
    paired = json.loads(paths["json"].read_text())["paired_length"]
    assert paired["baseline"] == "base" and set(paired["runs"]) == {"sft", "same"}
    gain = paired["runs"]["sft"]
    # the item base lacks is unpaired
    assert gain["n"] == 3 and (gain["better"], gain["worse"], gain["same"]) == (3, 0, 0)
    assert gain["low"] <= gain["mean"] <= gain["high"] and gain["mean"] > 0
    assert paired["runs"]["same"] == {"n": 3, "mean": 0.0, "low": 0.0, "high": 0.0, "better": 0, "worse": 0, "same": 3}
    markdown = paths["md"].read_text()
    assert "## S_l against base, item by item" in markdown
    assert "| same | 3 | +0.0 | +0.0 … +0.0 | 0 / 0 / 3 |" in markdown


def test_the_paired_interval_is_seeded_and_holds_zero_for_noise() -> None:
    def run(words: list[int]) -> BenchReport:
        return score_run(
            [Prediction(id=str(k), prompt="p", response=_words(n), length=100) for k, n in enumerate(words)]
        )

    noise = paired_length_difference(run([100, 40, 100, 40, 70, 100]), run([40, 100, 40, 100, 100, 70]))
    assert noise is not None and noise.low < 0 < noise.high and noise.mean == 0.0
    assert noise == paired_length_difference(run([100, 40, 100, 40, 70, 100]), run([40, 100, 40, 100, 100, 70]))
    older = run([100]).model_copy(update={"meta": {k: v for k, v in run([100]).meta.items() if k != "length_scores"}})
    assert paired_length_difference(older, run([100])) is None  # a report scored before per-output scores
    assert paired_length_difference(run([100]), run([])) is None
    with pytest.raises(BenchError, match="confidence"):
        paired_length_difference(run([100]), run([100]), confidence=1.0)
    paths_md = compare_runs({"old": older, "new": run([100])}, Path(tempfile.mkdtemp()))["md"].read_text()
    assert "| new | – | no per-output scores in one of the reports" in paths_md
