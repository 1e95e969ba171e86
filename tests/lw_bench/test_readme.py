"""The README's library example runs as written, against a scripted server standing in for the model and judge."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lw_core.testing import ScriptedServer

README = Path(__file__).resolve().parents[2] / "packages" / "lw-bench" / "README.md"
#: (marker line above, code) of every python block; the not-run ones are compiled by test_docs_examples
BLOCKS = re.findall(r"(<!--[^\n]*-->\n)?```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
EXAMPLES = [code for marker, code in BLOCKS if "not-run" not in marker]


def test_the_readme_example_runs_as_written(
    tmp_path: Path, data_dir: Path, model_or_judge: Callable[[dict[str, Any]], str]
) -> None:
    assert len(EXAMPLES) == 2 and "predict(" in EXAMPLES[0]
    with ScriptedServer(model_or_judge) as server:
        env = {**os.environ, "LW_BASE_URL": server.base_url}
        result = subprocess.run(
            [sys.executable, "-c", EXAMPLES[0]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "S_q 100.0, 3 items" in result.stdout  # every scripted answer starts with "good"
    assert {c["model"] for c in server.calls} == {"my-model", "gpt-4o-2024-05-13"}
    assert {p.name for p in (tmp_path / "compare").iterdir()} == {"comparison.md", "comparison.json", "comparison.png"}
    assert "| base | missing |" in (tmp_path / "compare/comparison.md").read_text()


def test_the_rewards_example_prints_what_it_says() -> None:
    example = EXAMPLES[1]
    result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    comment = example.split("print(parts, totals)  # ", 1)[1].splitlines()[0]
    assert result.stdout.strip() == comment
