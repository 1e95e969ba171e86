"""The README's examples run as written: every `lw-data` command line and the library example, on small files."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from lw_core import DIMENSIONS, Instruction, PreferencePair, SFTRecord, read_jsonl
from lw_data.cli import app
from typer.testing import CliRunner

README = (Path(__file__).resolve().parents[2] / "packages" / "lw-data" / "README.md").read_text(encoding="utf-8")
BASH = re.findall(r"```bash\n(.*?)```", README, re.DOTALL)
PYTHON = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
NEEDS_NETWORK = "THUDM/LongWriter-6k"


def inputs(folder: Path, make: Any) -> None:
    """The files the examples read: AgentWrite documents, general chats, judged samples, general pairs, prompts."""
    docs = [
        make.document(f"d{i}", f"Write a 600-word essay on tides ({i})", [make.prose(300, i), make.prose(300, i + 9)])
        for i in range(6)
    ]
    make.write_lines(folder / "documents.jsonl", docs)
    chats = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]} for i in range(40)
    ]
    make.write_lines(folder / "general_chats.jsonl", chats)
    samples = [
        {"id": f"p{i}", "prompt": f"Write 60 words ({i})", "response": make.prose(60 - 10 * s, s), "length": 60}
        | {"sample": s}
        for i in range(8)
        for s in range(4)
    ]
    make.write_lines(folder / "samples.jsonl", samples)
    scores = dict.fromkeys(DIMENSIONS, 4)
    make.write_lines(
        folder / "judgments.jsonl", [{"id": r["id"], "sample": r["sample"], "scores": scores} for r in samples]
    )
    make.write_lines(
        folder / "general_pairs.jsonl", [{"prompt": f"g{i}", "chosen": "yes", "rejected": "no"} for i in range(30)]
    )
    pl.DataFrame({"prompt": ["Write a 3000-word report on canals", "写一篇五千字的小说", "A haiku"]}).write_csv(
        folder / "prompts.csv"
    )


def test_every_command_line_runs(tmp_path: Path, make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("datasets")  # the last line saves a HF dataset folder
    inputs(tmp_path, make)
    monkeypatch.chdir(tmp_path)
    lines = [line.split("  #")[0].strip() for line in BASH[0].splitlines() if line.startswith("lw-data ")]
    assert len(lines) == 10
    runner = CliRunner()
    for line in lines:
        if NEEDS_NETWORK in line:
            continue
        result = runner.invoke(app, shlex.split(line)[1:])
        assert result.exit_code == 0, f"{line}\n{result.output}"
    assert len(list(read_jsonl(tmp_path / "sft.jsonl", SFTRecord))) == 6
    mixed = list(read_jsonl(tmp_path / "dpo.jsonl", PreferencePair))  # 8 pairs, too many for 30 general ones at 0.1
    assert len(mixed) == 33 and sum(pair.id.startswith("p") for pair in mixed) == 3
    assert (tmp_path / "mixed" / "train.jsonl").exists() and (tmp_path / "sft_hf").is_dir()


def test_the_library_example_runs(tmp_path: Path, make: Any) -> None:
    assert len(PYTHON) == 1
    inputs(tmp_path, make)
    result = subprocess.run(
        [sys.executable, "-c", PYTHON[0]], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "6 of 6 documents kept" in result.stdout and "8 pairs, 32 with general ones" in result.stdout
    assert len(list(read_jsonl(tmp_path / "instructions.jsonl", Instruction))) == 200
    assert (tmp_path / "sft.png").read_bytes()[:4] == b"\x89PNG"
