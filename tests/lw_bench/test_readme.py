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
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_the_readme_example_runs_as_written(
    tmp_path: Path, data_dir: Path, model_or_judge: Callable[[dict[str, Any]], str]
) -> None:
    assert len(EXAMPLES) == 1
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
