"""The lw-bench command line end to end against a scripted server, and its user errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lw_bench.cli import app
from lw_core.testing import ScriptedServer
from typer.testing import CliRunner

runner = CliRunner()


def test_predict_judge_score_report_pipeline(
    tmp_path: Path, data_dir: Path, model_or_judge: Callable[[dict[str, Any]], str]
) -> None:
    with ScriptedServer(model_or_judge) as server:
        common = ["--base-url", server.base_url, "--model", "scripted"]
        pred = tmp_path / "pred.jsonl"
        result = runner.invoke(
            app,
            [
                "predict",
                *common,
                "--data",
                "longbench_write_en",
                "--data-dir",
                str(data_dir),
                "--limit",
                "3",
                "--max-tokens",
                "200",
                "--out",
                str(pred),
            ],
        )
        assert result.exit_code == 0, result.output
        assert len(pred.read_text().splitlines()) == 3
        judged = tmp_path / "judge.jsonl"
        result = runner.invoke(
            app, ["judge", *common, "--predictions", str(pred), "--out", str(judged), "--replicates", "2"]
        )
        assert result.exit_code == 0, result.output
        assert "6 new" in result.output
        assert "<User Request>" in server.calls[-1]["messages"][0]["content"]  # the paper's judge.txt by default
        assert server.calls[0]["top_p"] == 0.8
    result = runner.invoke(
        app,
        [
            "score",
            *("--predictions", str(pred), "--judgments", str(judged), "--out", str(tmp_path / "s.json")),
            *("--data", "longbench_write_en", "--data-dir", str(data_dir)),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "overall" in result.output and json.loads((tmp_path / "s.json").read_text())["overall"]["n"] == 3
    assert "WARNING — Coverage: 3 of 60 items scored (5.0 %)" in " ".join(result.output.split())
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "report",
            "--predictions",
            str(pred),
            "--judgments",
            str(judged),
            "--out",
            str(out),
            "--compare",
            str(tmp_path / "s.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"report.md", "report.json", "report.png"}
    report = json.loads((out / "report.json").read_text())
    assert report["overall"]["n_judged"] == 6 and report["meta"]["replicates"] == 2
    assert report["overall"]["quality_score"] == 100.0  # every answer starts with "good"
    assert "## Comparison" in (out / "report.md").read_text()


def test_ruler_writes_predictions_and_a_length_report(
    tmp_path: Path, data_dir: Path, model_or_judge: Callable[[dict[str, Any]], str]
) -> None:
    with ScriptedServer(model_or_judge) as server:
        result = runner.invoke(
            app,
            [
                "ruler",
                "--base-url",
                server.base_url,
                "--model",
                "m",
                "--data-dir",
                str(data_dir),
                "--limit",
                "2",
                "--out",
                str(tmp_path),
                "--max-tokens",
                "50",
            ],
        )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["overall"]["n"] == 2 and report["overall"]["quality_score"] is None
    assert report["dataset"] == "longwrite_ruler"
    assert report["meta"]["coverage"]["items"] == 2  # --limit 2: the set is the 2 items asked for
    assert "## Output length per required length" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["score", "--predictions", "{bad}"], "invalid JSON"),
        (["predict", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--out", "x", "--data", "nope"], "neither"),
        (["report", "--predictions", "{good}", "--out", "{tmp}", "--compare", "{bad}"], "not a lw-bench report"),
    ],
)
def test_user_errors_exit_1_with_a_message_and_no_traceback(tmp_path: Path, args: list[str], message: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n{}\n")
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"id": "a", "prompt": "p", "response": "hi", "length": 10}) + "\n")
    args = [a.format(bad=bad, good=good, tmp=tmp_path / "r") for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output


def test_usage_errors_exit_2() -> None:
    assert runner.invoke(app, ["predict"]).exit_code == 2
    assert runner.invoke(app, []).exit_code in (0, 2)  # no_args_is_help


def test_judge_lw_preset_uses_our_template(tmp_path: Path, model_or_judge: Callable[[dict[str, Any]], str]) -> None:
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"id": "a", "prompt": "Write 100 words", "response": "good text", "length": 100}) + "\n")
    with ScriptedServer(model_or_judge) as server:
        args = ["judge", "--base-url", server.base_url, "--model", "j", "--predictions", str(pred)]
        result = runner.invoke(app, [*args, "--out", str(tmp_path / "j.jsonl"), "--preset", "lw"])
    assert result.exit_code == 0, result.output
    assert "<<<RESPONSE" in server.calls[0]["messages"][0]["content"]
    assert runner.invoke(app, [*args, "--out", str(tmp_path / "k.jsonl"), "--preset", "gpt"]).exit_code == 2
