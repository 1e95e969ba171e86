"""The README's examples run as written (against a scripted server standing in for a real one)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from lw_core.testing import ScriptedServer

README = Path(__file__).resolve().parents[2] / "packages" / "lw-agentwrite" / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def model_reply(request: dict) -> str:
    prompt = request["messages"][-1]["content"]
    if "planning assistant" in prompt:
        words = int(re.search(r"\((\d+) words\)", prompt).group(1))
        return "\n".join(f"Paragraph {k} - Main Point: part {k} - Word Count: {words // 3} words" for k in (1, 2, 3))
    words = int(re.findall(r"about (\d+) words", prompt)[-1])
    start = 1000 * int(re.findall(r"paragraph (\d+) of the plan", prompt)[-1])  # sections share no words: no copy
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocabulary = [f"word{a}{b}{c}" for a in letters for b in letters for c in letters]
    return " ".join(vocabulary[start : start + words])


def test_readme_has_the_embedding_and_batch_examples() -> None:
    assert len(EXAMPLES) == 2


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_example_runs_as_written(index: int, tmp_path: Path) -> None:
    with ScriptedServer(model_reply) as server:
        env = {**os.environ, "LW_BASE_URL": server.base_url}
        result = subprocess.run(
            [sys.executable, "-c", EXAMPLES[index]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 0, result.stderr
    if index == 0:
        assert "done 1500 words in 3 sections" in result.stdout
        assert "section 3 done" in result.stdout and "3 part 3 500" in result.stdout
    else:
        assert "2/2 instructions (2 done" in result.stdout
        assert len((tmp_path / "writes.jsonl").read_text().splitlines()) == 2
