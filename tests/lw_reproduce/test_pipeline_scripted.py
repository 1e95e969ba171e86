"""The first stages of `lw reproduce` against a scripted teacher (real HTTP, no model): instructions, AgentWrite with
direct answers and general chats, lw-data's mix; a SIGKILL mid-AgentWrite resumes without re-spending calls."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lw_core import Document, SFTRecord, read_jsonl
from lw_core.testing import ScriptedServer
from lw_reproduce.cli import app
from lw_reproduce.config import ReproduceConfig
from lw_reproduce.errors import PipelineError
from lw_reproduce.pipeline import reproduce
from typer.testing import CliRunner

WORDS = [f"{a}{b}" for a in ("river", "stone", "cloud", "field", "lamp", "bridge") for b in ("", "s", "ing", "ed")]


def teacher(request: dict) -> str:
    """Plans in the paper's line format for plan prompts, fresh non-repetitive prose of the asked size otherwise."""
    prompt = request["messages"][-1]["content"]
    time.sleep(0.05)
    if "Word Count: [" in prompt:  # our plan prompt shows the format to follow
        return "\n".join(f"Paragraph {i} - Main Point: part {i} - Word Count: 120 words" for i in (1, 2))
    budget = int(m.group(1)) if (m := re.search(r"about (\d+) words", prompt)) else 60
    rng = random.Random(hash(prompt) % 1000)
    return " ".join(" ".join(rng.sample(WORDS, 8)) + "." for _ in range(max(2, budget // 8)))


def config_for(server: ScriptedServer, **overrides: object) -> ReproduceConfig:
    teacher_endpoint = {"model": "scripted", "base_url": server.base_url, "concurrency": 2}
    return ReproduceConfig.load(
        "smoke",
        None,
        {
            "name": "scripted",
            "teacher": teacher_endpoint,
            "instructions.n": 6,
            "instructions.min_words": 100,
            "instructions.max_words": 400,
            "instructions.general": 3,
            "agentwrite.direct_max_words": 150,
            "agentwrite.sampling": {},
            "data.min_words": 20,
            **overrides,
        },
    )


def test_instructions_agentwrite_and_data_stages(tmp_path: Path) -> None:
    with ScriptedServer(reply=teacher) as server:
        run = reproduce(config_for(server), tmp_path, stop="data", say=lambda _: None)
        calls = len(server.calls)
    root = run.root
    for stage in ("instructions", "agentwrite", "data"):
        assert (root / stage / "done").exists(), stage
    assert not (root / "bench_base").exists()  # --until data stops there
    planned = list(read_jsonl(root / "agentwrite" / "documents.jsonl", Document))
    direct = list(read_jsonl(root / "agentwrite" / "direct.jsonl", Document))
    assert len(planned) + len(direct) == 6 and direct, "short requests are answered directly"
    assert all(d.plan is not None and len(d.plan.steps) == 1 for d in direct)
    assert all(d.instruction.length and d.instruction.length > 150 for d in planned)
    general = list(read_jsonl(root / "agentwrite" / "general.jsonl", SFTRecord))
    assert len(general) == 3 and all(r.meta["finish_reason"] == "stop" for r in general)
    train = [json.loads(line) for line in (root / "data" / "train.jsonl").read_text().splitlines()]
    summary = json.loads((root / "data" / "done").read_text())
    assert len(train) == summary["train"] and summary["general"] == 3
    assert {row["source"] for row in train} == {"long", "general"}
    # everything again: finished stages are skipped, no call is spent
    with ScriptedServer(reply=teacher) as server:
        said: list[str] = []
        reproduce(config_for(server), tmp_path, stop="data", say=said.append)
        assert server.calls == [] and sum("done already, skipped" in s for s in said) == 3
    assert calls > 6

    result = CliRunner().invoke(app, ["reproduce", "status", "scripted", "--runs", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert re.search(r"agentwrite\s+done in", result.output) and re.search(r"bench_base\s+to do", result.output)
    assert "documents.jsonl: " in result.output


def test_a_data_stage_that_keeps_nothing_says_why_and_keeps_the_documents(tmp_path: Path) -> None:
    why = r"documents: \d+ too short; direct: \d+ too short; see .*rejects"
    with ScriptedServer(reply=teacher) as server, pytest.raises(PipelineError, match=why):
        reproduce(config_for(server, **{"data.min_words": 5000}), tmp_path, stop="data", say=lambda _: None)
    root = tmp_path / "scripted"
    assert (root / "agentwrite" / "done").exists() and not (root / "data" / "done").exists()
    assert (root / "data" / "documents.rejects.jsonl").read_text().count('"too short"') >= 1


@pytest.mark.timeout(300)
def test_sigkill_mid_agentwrite_resumes_without_respending_calls(tmp_path: Path) -> None:
    with ScriptedServer(reply=teacher) as clean_server:
        reproduce(config_for(clean_server, name="clean"), tmp_path, stop="agentwrite", say=lambda _: None)
        needed = len(clean_server.calls)
    with ScriptedServer(reply=teacher) as server:
        config = config_for(server, name="killed")
        script = (
            "import sys; from pathlib import Path; from lw_reproduce.config import ReproduceConfig;"
            "from lw_reproduce.pipeline import reproduce;"
            "reproduce(ReproduceConfig.model_validate_json(sys.argv[1]), Path(sys.argv[2]), stop='agentwrite')"
        )
        child = subprocess.Popen([sys.executable, "-c", script, config.model_dump_json(), str(tmp_path)])
        steps = tmp_path / "killed" / "agentwrite" / "documents.steps.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not steps.exists() or len(steps.read_text().splitlines()) < 4):
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert not (tmp_path / "killed" / "agentwrite" / "done").exists(), "killed before the stage ended"
        before = len(server.calls)
        reproduce(config, tmp_path, stop="agentwrite", say=lambda _: None)
        total = len(server.calls)
    assert before < needed  # the kill landed mid-stage
    in_flight = config.teacher.concurrency
    assert needed <= total <= needed + in_flight  # only calls cut by the kill are made again
    documents = [d.id for d in read_jsonl(tmp_path / "killed" / "agentwrite" / "documents.jsonl", Document)]
    assert len(documents) == len(set(documents))
