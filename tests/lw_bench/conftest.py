"""Fixtures for lw-bench: the real data files (by path, never copied) and a scripted model/judge."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lw_core import DIMENSIONS

SHARED_DATA = Path(__file__).parents[2].parent / "shared/data"
DATA_DIR = SHARED_DATA / "longbench_write"


@pytest.fixture(autouse=True)
def _shared_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """``lw_core.data_file`` reads the shared copies (the paper's judge.txt, the benchmark files): no download."""
    if SHARED_DATA.is_dir():
        monkeypatch.setenv("LW_DATA_DIR", str(SHARED_DATA))


@pytest.fixture
def data_dir() -> Path:
    if not (DATA_DIR / "longbench_write.jsonl").is_file():
        pytest.skip(f"benchmark data not found at {DATA_DIR}")
    return DATA_DIR


@pytest.fixture
def paper_judge_txt() -> Path:
    path = SHARED_DATA / "longwriter_prompts/judge.txt"
    if not path.is_file():
        pytest.skip(f"the paper's judge.txt not found at {path}")
    return path


def rated_response(content: str) -> str | None:
    """The answer a judge prompt asks to rate (our template or the paper's), or None for a plain prompt."""
    for start, end in (("<<<RESPONSE\n", "\nRESPONSE>>>"), ("<Response>\n\n", "\n\n</Response>")):
        if start in content:
            return content.split(start, 1)[1].split(end, 1)[0]
    return None


def _model_or_judge(request: dict[str, Any]) -> str:
    """Answers like a model under test, or like a judge when asked to rate (scores depend on the answer)."""
    content = request["messages"][-1]["content"]
    response = rated_response(content)
    if response is not None:
        score = 5 if response.startswith("good") else 2
        return "Analysis first.\n```json\n" + json.dumps({"Analysis": "ok", **{d: score for d in DIMENSIONS}}) + "\n```"
    words = 120 if "100" in content else 40
    return "good " + " ".join(["word"] * (words - 1))


@pytest.fixture
def model_or_judge() -> Callable[[dict[str, Any]], str]:
    """Answers like a model under test, or like a judge: 5s for answers starting with "good", else 2s."""
    return _model_or_judge
