"""The lw-data command line, end to end on small files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from lw_core import DIMENSIONS, Instruction, PreferencePair, SFTRecord, read_jsonl
from lw_data.cli import app
from typer.testing import CliRunner

runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def test_help_and_usage() -> None:
    assert run("--help").exit_code == 0
    for command in ("instructions", "build-sft", "build-dpo", "mix", "stats", "export"):
        assert run(command, "--help").exit_code == 0
    assert run("build-sft").exit_code == 2  # missing argument


def test_instructions(tmp_path: Path) -> None:
    src = tmp_path / "prompts.csv"
    pl.DataFrame({"prompt": ["Write 5000 words", "write 5000 words!", "写一篇两千字的散文", "A poem"]}).write_csv(src)
    result = run("instructions", src, "-o", tmp_path / "out.jsonl", "--min-length", 1000, "--require-length",
                 "--dropped", tmp_path / "dropped.jsonl")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "near duplicate: 1" in result.output
    assert [json.loads(line)["length"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == [5000, 2000]
    assert json.loads((tmp_path / "dropped.jsonl").read_text())["reason"] == "near duplicate"


def test_instructions_generated_without_an_input(tmp_path: Path) -> None:
    out = tmp_path / "generated.jsonl"
    args = ("instructions", "--n", 40, "--seed", 3, "--out", out, "--language", "en", "--language", "zh")
    result = run(*args, "--min-length", 200, "--max-length", 1500)
    assert result.exit_code == 0, result.output
    assert "40 long instructions (en: " in result.output
    records = list(read_jsonl(out, Instruction))
    assert len(records) == 40 and {r.language for r in records} == {"en", "zh"}
    assert all(r.length is not None and 200 <= r.length <= 1500 for r in records)
    first = out.read_bytes()
    assert run(*args, "--min-length", 200, "--max-length", 1500).exit_code == 0 and out.read_bytes() == first
    result = run("instructions", "-n", 10, "--kind", "general", "-o", tmp_path / "general.jsonl")
    assert result.exit_code == 0 and all(r.length is None for r in read_jsonl(tmp_path / "general.jsonl", Instruction))
    assert run("instructions", "--dropped", tmp_path / "d.jsonl").exit_code == 2  # only with an input file
    result = run("instructions", "--kind", "medium", "-o", tmp_path / "x.jsonl")
    assert result.exit_code == 2 and "'medium' is not one of" in result.output  # a usage error


def test_build_sft_and_stats(tmp_path: Path, make: Any) -> None:
    docs = [make.document(f"d{i}", "Write 600 words", [make.prose(300, i), make.prose(300, i + 50)]) for i in range(4)]
    docs[1]["status"] = "failed"
    src = make.write_lines(tmp_path / "docs.jsonl", docs)
    out, png = tmp_path / "sft.jsonl", tmp_path / "sft.png"
    result = run("build-sft", src, "-o", out, "--system", "You write long.", "--png", png)
    assert result.exit_code == 0, result.output
    assert "4 documents, 3 kept" in result.output and "failed: 1" in result.output
    records = list(read_jsonl(out, SFTRecord))
    assert len(records) == 3 and records[0].messages[0].content == "You write long."
    assert json.loads((tmp_path / "sft.rejects.jsonl").read_text())["reason"] == "failed"
    assert png.read_bytes()[:4] == b"\x89PNG"
    result = run("stats", out, "--png", tmp_path / "again.png")
    assert result.exit_code == 0 and "all" in result.output and (tmp_path / "again.png").exists()


def test_build_sft_cleaning_flags_reach_the_filters(tmp_path: Path, make: Any) -> None:
    body = make.prose(120, 1)
    section = f"Paragraph 1 - Main point: tides\nHere is a rewritten version of your text:\n{body}"
    src = make.write_lines(tmp_path / "docs.jsonl", [make.document("d", "Write 120 words", [section])])
    answers = {}
    for flags in ((), ("--strip-plan-echo",), ("--strip-plan-echo", "--strip-task-talk")):
        out = tmp_path / f"sft{len(flags)}.jsonl"
        result = run("build-sft", src, "-o", out, "--min-words", 10, *flags)
        assert result.exit_code == 0, result.output
        answers[flags] = next(read_jsonl(out, SFTRecord)).messages[-1].content
    assert answers[()] == section
    assert answers[("--strip-plan-echo",)] == f"Here is a rewritten version of your text:\n{body}"
    assert answers[("--strip-plan-echo", "--strip-task-talk")] == body


def test_build_sft_data_levers_reach_the_filters(tmp_path: Path, make: Any) -> None:
    body = make.prose(120, 1)
    doc = make.document("d", "Write a 200-word note.", [f"## Tides\n\n{body}"])
    doc["plan"]["steps"] = [{"index": 1, "main_point": "Tides", "word_count": 200}]
    src = make.write_lines(tmp_path / "docs.jsonl", [doc])
    out = tmp_path / "sft.jsonl"
    flags = ("--strip-headings", "--relabel-length", "--plan-augmented")
    result = run("build-sft", src, "-o", out, "--min-words", 10, *flags)
    assert result.exit_code == 0, result.output
    record = next(read_jsonl(out, SFTRecord))
    assert record.messages[0].content == "Write a 120-word note."
    assert record.messages[1].content == f"Paragraph 1 - Main Point: Tides - Word Count: 120 words\n\n{body}"


@pytest.mark.parametrize("words", [1_234, 23_456])
def test_stats_table_never_cuts_values(tmp_path: Path, make: Any, words: int) -> None:
    prompts = [f"Write {words} words", f"写一篇{words}字的报告"]
    docs = [make.document(f"d{i}", prompts[i % 2], [make.prose(words + i, i)]) for i in range(4)]
    out = tmp_path / "sft.jsonl"
    assert run("build-sft", make.write_lines(tmp_path / "docs.jsonl", docs), "-o", out).exit_code == 0
    result = runner.invoke(app, ["stats", str(out)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= 80 or words > 10_000  # 80 columns, or as wide as the values need
    header = " ".join(lines[:4])
    for word in ("language", "type", "rows", "mean", "words", "p10", "median", "p90", "max", "request", "ratio"):
        assert word in header
    all_row = next(line.split() for line in lines if line.startswith("all"))
    median, biggest = f"{words + 1.5:,.1f}", f"{words + 3:,}"
    assert all_row[:3] == ["all", "all", "4"] and all_row[5:8] == [median, biggest, biggest]  # every column, whole


def test_build_sft_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text('{"id": "a", "instruction": {"prompt": "x"}}\nnot json\n{"id": "b"}\n')
    result = run("build-sft", src, "-o", tmp_path / "sft.jsonl")
    assert result.exit_code == 1
    assert "docs.jsonl:2" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "sft.jsonl").exists()
    result = run("build-sft", tmp_path / "missing.jsonl", "-o", tmp_path / "sft.jsonl")
    assert result.exit_code == 1 and "no such file" in result.output
    result = run("build-sft", src, "-o", tmp_path / "sft.jsonl", "--min-ratio", -1)  # refused by SFTFilters
    assert result.exit_code == 2 and "--min-ratio" in result.output and "greater than or equal to 0" in result.output


def test_build_dpo(tmp_path: Path, make: Any) -> None:
    preds = [
        {"id": "a", "prompt": "Write 50 words", "response": make.prose(50, s), "length": 50, "sample": s}
        for s in range(2)
    ]
    preds[1]["response"] = make.prose(5)
    judgments = [{"id": "a", "sample": s, "scores": dict.fromkeys(DIMENSIONS, 4)} for s in range(2)]
    p = make.write_lines(tmp_path / "predictions.jsonl", preds)
    j = make.write_lines(tmp_path / "judgments.jsonl", judgments)
    result = run("build-dpo", p, j, "-o", tmp_path / "dpo.jsonl")
    assert result.exit_code == 0, result.output
    [pair] = list(read_jsonl(tmp_path / "dpo.jsonl", PreferencePair))
    assert pair.chosen[0].content == preds[0]["response"]
    bad = make.write_lines(tmp_path / "bad.jsonl", [{"id": "a"}])
    result = run("build-dpo", bad, j, "-o", tmp_path / "x.jsonl")
    assert result.exit_code == 1 and "missing column(s) prompt, response, length" in result.output
    result = run("build-dpo", p, j, "-o", tmp_path / "x.jsonl", "--rejected", "best")
    assert result.exit_code == 2 and "'best' is not one of" in result.output
    result = run("build-dpo", p, j, "-o", tmp_path / "x.jsonl", "--length-weight", 1.5)  # refused by DPORule
    assert result.exit_code == 2 and "--length-weight" in result.output and "less than or equal to 1" in result.output
    assert not (tmp_path / "x.jsonl").exists()


def test_build_dpo_by_loop_free_length_alone_needs_no_judgments(tmp_path: Path, make: Any) -> None:
    looping = make.prose(10) + " " + " ".join(["I write a lot."] * 20)  # 90 words, 10 before the loop
    preds = [
        {"id": "a", "prompt": "Write 90 words", "response": text, "length": 90, "sample": s}
        for s, text in enumerate([looping, make.prose(90, 1)])
    ]
    p = make.write_lines(tmp_path / "predictions.jsonl", preds)
    out = tmp_path / "dpo.jsonl"
    result = run("build-dpo", p, "-o", out, "--length-weight", 1, "--length-measure", "loop_free")
    assert result.exit_code == 0, result.output
    [pair] = list(read_jsonl(out, PreferencePair))
    assert pair.chosen[0].content == preds[1]["response"] and pair.meta["rejected_length_score"] == 0.0
    result = run("build-dpo", p, "-o", out)  # the paper's weights need the judge's scores
    assert result.exit_code == 1 and "give judgments" in result.output


def test_build_dpo_draws_rejected_with_the_seed_and_mixes_general_pairs(tmp_path: Path, make: Any) -> None:
    preds = [
        {"id": f"p{i}", "prompt": f"Write 60 words ({i})", "response": make.prose(60 - 10 * s, s), "length": 60}
        | {"sample": s}
        for i in range(8)
        for s in range(4)
    ]
    judgments = [{"id": r["id"], "sample": r["sample"], "scores": dict.fromkeys(DIMENSIONS, 4)} for r in preds]
    p = make.write_lines(tmp_path / "predictions.jsonl", preds)
    j = make.write_lines(tmp_path / "judgments.jsonl", judgments)

    def rejected(*options: Any) -> list[int]:
        assert run("build-dpo", p, j, "-o", tmp_path / "dpo.jsonl", *options).exit_code == 0
        return [pair.meta["rejected_sample"] for pair in read_jsonl(tmp_path / "dpo.jsonl", PreferencePair)]

    assert rejected("--seed", 3) == rejected("--seed", 3) != rejected("--seed", 4)
    assert set(rejected("--seed", 3)) <= {1, 2, 3} and rejected("--rejected", "worst") == [3] * 8
    general = [{"prompt": f"q{i}", "chosen": "yes", "rejected": "no"} for i in range(100)]
    g = make.write_lines(tmp_path / "general.jsonl", general)
    result = run("build-dpo", p, j, "-o", tmp_path / "mixed.jsonl", "--general", g, "--long-fraction", 0.2)
    assert result.exit_code == 0, result.output
    assert "8 pairs (8 of them with 40 in all)" in result.output
    mixed = list(read_jsonl(tmp_path / "mixed.jsonl", PreferencePair))
    assert len(mixed) == 40 and sum(pair.id.startswith("p") for pair in mixed) == 8


def test_mix_and_export(tmp_path: Path, make: Any) -> None:
    def chats(prefix: str, n: int) -> list[dict[str, Any]]:
        return [{"messages": [{"role": "user", "content": f"{prefix}{i}"}, {"role": "assistant", "content": "a"}]}
                for i in range(n)]  # fmt: skip

    long = make.write_lines(tmp_path / "long.jsonl", chats("l", 10))
    general = make.write_lines(tmp_path / "general.jsonl", chats("g", 50))
    result = run("mix", long, general, "-o", tmp_path / "mixed", "--long-fraction", 0.25, "--val-fraction", 0.1)
    assert result.exit_code == 0, result.output
    assert "40 rows (general: 30, long: 10) → 36 train, 4 validation" in result.output
    train = tmp_path / "mixed" / "train.jsonl"
    assert run("export", train, "-o", tmp_path / "train.parquet").exit_code == 0
    assert pl.read_parquet(tmp_path / "train.parquet").height == 36
    pytest.importorskip("datasets")
    assert run("export", tmp_path / "train.parquet", "-o", tmp_path / "hf", "--format", "hf").exit_code == 0
    assert run("stats", tmp_path / "hf").exit_code == 0
    result = run("export", train, "-o", tmp_path / "x", "--format", "xml")
    assert result.exit_code == 2 and "'xml' is not one of" in result.output
