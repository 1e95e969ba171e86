"""Issue 27's stages against a scripted model (real HTTP, no model): which stages a configuration runs and what the
dry run says they cost; the DPO data stage (samples, judgments, loop-aware pairs) resumed after a SIGKILL without
re-spending a finished sample; the plan-augmented row scored on the text after the plan; AgentWrite at inference
losing no item to its planner; the report's rows."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from lw_core import DIMENSIONS, Document, Judgment, Prediction, PreferencePair, loop_onset, read_jsonl
from lw_core.testing import ScriptedServer
from lw_data import extract_length
from lw_reproduce.cli import app
from lw_reproduce.config import ReproduceConfig
from lw_reproduce.pipeline import reproduce, selected_stages
from typer.testing import CliRunner

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LOOP = "The tide comes in and the tide goes out again. "


def prose(n: int, start: int = 0) -> str:
    """``n`` different letter-only words in sentences of ten (no loop, no repetition)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = [f"w{letters[k // 676 % 26]}{letters[k // 26 % 26]}{letters[k % 26]}" for k in range(start, start + n)]
    return " ".join(w + ("." if i % 10 == 9 else "") for i, w in enumerate(words))


class Student:
    """Answers as the scripted student, its judge and AgentWrite would: samples alternate between a loop that
    reaches the required length and a clean answer at 80 % of it (a pair only a loop-aware score gets right)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s, self.asked, self._lock = delay_s, Counter[str](), threading.Lock()

    def __call__(self, request: dict[str, Any]) -> str:
        time.sleep(self.delay_s)
        text = request["messages"][-1]["content"]
        if "impartial expert reviewer" in text:
            return json.dumps({"Analysis": "Fine.", **dict.fromkeys(DIMENSIONS, 4)})
        if "planning assistant" in text:
            return "I would rather not plan that."  # AgentWrite's fallback plan takes over
        if "Now write paragraph" in text:
            return prose(int(re.findall(r"about (\d+) words", text)[-1]), start=len(text))
        required = extract_length(text) or 200
        with self._lock:
            self.asked[text] += 1
            k = self.asked[text]
        if request["model"] == "plan-sft":  # a plan-augmented model writes its plan first
            plan = f"Paragraph 1 - Main Point: the answer - Word Count: {required} words"
            return f"{plan}\n\n{prose(required // 2, start=k * 1000)}"
        if k % 2:  # looping, to the required length
            return " ".join([*prose(10, start=k * 1000).split(), *(LOOP * required).split()][:required])
        return prose(required * 4 // 5, start=k * 1000)


def config_for(server: ScriptedServer, **overrides: Any) -> ReproduceConfig:
    return ReproduceConfig.load(
        "smoke",
        None,
        {
            "name": "variants",
            "judge": {"model": "judge", "base_url": server.base_url, "concurrency": 2},
            "instructions.n": 4,
            "instructions.general": 0,
            "bench.items": 2,
            "bench.ruler": False,
            "dpo.enabled": True,
            "dpo.samples": 4,
            "dpo.instructions": 3,
            "dpo.length_measure": "loop_free",
            **overrides,
        },
    )


def serve_scripted(monkeypatch: pytest.MonkeyPatch, server: ScriptedServer) -> None:
    """The student's server is the scripted one (its model name is the label, so it knows which model it plays)."""
    from lw_core import OpenAIChatClient

    def serve(self: Any, folder: str, label: str) -> tuple[OpenAIChatClient, Any]:
        return OpenAIChatClient(base_url=server.base_url, model=label, concurrency=2), lambda: None

    monkeypatch.setattr("lw_reproduce.pipeline._Pipeline._serve_student", serve)
    # The scripted server plays every model, so the base needs no HF conversion of the embedded GGUF (nor the package).
    monkeypatch.setattr("lw_reproduce.pipeline._Pipeline._base_folder", lambda self: "base-model")


def test_stages_follow_the_switches_and_the_cpu_profile_is_unchanged() -> None:
    cpu = ReproduceConfig.load("cpu")
    assert selected_stages(cpu) == ["instructions", "agentwrite", "data", "bench_base", "train", "bench_sft", "report"]
    on = ReproduceConfig.load(
        "cpu", None, {"dpo.enabled": True, "dpo.rounds": 2, "plan_sft.enabled": True, "agentwrite_bench.enabled": True}
    )
    assert selected_stages(on, "bench_base") == [
        "bench_base", "bench_agentwrite", "train", "bench_sft", "train_plan", "bench_plan", "dpo_data", "dpo",
        "bench_dpo", "dpo2_data", "dpo2", "bench_dpo2", "report",
    ]  # fmt: skip
    from_base = ReproduceConfig.load("cpu", None, {"train.enabled": False, "dpo.enabled": True, "dpo.start": "base"})
    assert selected_stages(from_base, "bench_base") == ["bench_base", "dpo_data", "dpo", "bench_dpo", "report"]


def test_dry_run_lists_every_stage_with_its_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LW_DATA_DIR", str(DATA))
    result = CliRunner().invoke(app, ["reproduce", "--profile", "cpu", "--dry-run"])
    assert result.exit_code == 0, result.output
    rows = {line.split("|")[1].strip(): line for line in result.output.splitlines() if line.startswith("| ")}
    assert "off (dpo.enabled)" in rows["dpo_data"] and "off (plan_sft.enabled)" in rows["bench_plan"]
    default = float(rows["**total of the stages that run**"].split("|")[3].split()[0].replace(",", ""))
    assert 150 <= default <= 210  # the run measured at 2 h 40 min
    result = CliRunner().invoke(app, ["reproduce", "--profile", "cpu", "--dry-run", "--set", "dpo.enabled=true"])
    rows = {line.split("|")[1].strip(): line for line in result.output.splitlines() if line.startswith("| ")}
    assert "| yes |" in rows["dpo_data"] and "32 instructions x 4 samples, length only" in rows["dpo_data"]
    minutes = [float(rows[s].split("|")[3].replace(",", "")) for s in ("dpo_data", "dpo", "bench_dpo")]
    assert all(m > 5 for m in minutes) and "dpo_data → dpo → bench_dpo" in result.output
    result = CliRunner().invoke(app, ["reproduce", "--profile", "cpu", "--dry-run", "--set", "grpo.enabled=true"])
    rows = {line.split("|")[1].strip(): line for line in result.output.splitlines() if line.startswith("| ")}
    grpo = float(rows["grpo"].split("|")[3].replace(",", ""))
    assert grpo == pytest.approx(45 * 4 * 768 / 14.2 / 60, abs=1)  # the recipe's 45 steps of 4 capped completions
    assert "45 steps x 4 completions" in rows["grpo"] and float(rows["bench_grpo"].split("|")[3]) > 5


@pytest.mark.timeout(300)
def test_dpo_data_killed_mid_sampling_resumes_without_respending_a_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LW_DATA_DIR", str(DATA))
    student = Student(delay_s=0.1)
    with ScriptedServer(reply=student) as server:
        config = config_for(server, **{"dpo.judge": True})
        reproduce(config, tmp_path, stop="instructions", say=lambda _: None)
        script = (
            "import sys; from pathlib import Path; from lw_core import OpenAIChatClient;"
            "from lw_reproduce import pipeline; from lw_reproduce.config import ReproduceConfig;"
            "pipeline._Pipeline._serve_student = lambda self, folder, label: "
            "(OpenAIChatClient(base_url=sys.argv[3], model=label, concurrency=2), lambda: None);"
            "pipeline.reproduce(ReproduceConfig.model_validate_json(sys.argv[1]), Path(sys.argv[2]),"
            " start='dpo_data', stop='dpo_data')"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", script, config.model_dump_json(), str(tmp_path), server.base_url]
        )
        samples = tmp_path / "variants" / "dpo_data" / "samples.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not samples.exists() or len(samples.read_text().splitlines()) < 5):
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert not (tmp_path / "variants" / "dpo_data" / "done").exists(), "killed before the stage ended"
        written = len(samples.read_text().splitlines())
        serve_scripted(monkeypatch, server)
        reproduce(config, tmp_path, start="dpo_data", stop="dpo_data", say=lambda _: None)
        sampled = sum(student.asked.values())
    folder = tmp_path / "variants" / "dpo_data"
    records = list(read_jsonl(folder / "samples.jsonl", Prediction))
    assert 5 <= written < 12 and len(records) == 12  # 3 instructions x 4 samples, each written once
    assert len({(p.id, p.sample) for p in records}) == 12
    assert sampled <= 12 + config.student.concurrency  # only the calls cut by the kill were made again
    judged = Counter((j.id, j.sample) for j in read_jsonl(folder / "judgments.jsonl", Judgment))
    assert len(judged) == 12 and set(judged.values()) == {1}
    pairs = list(read_jsonl(folder / "pairs.jsonl", PreferencePair))
    assert len(pairs) == 3
    for pair in pairs:  # a loop that reaches the length never wins over a clean answer at 80 % of it
        assert loop_onset(pair.chosen[0].content) is None and pair.meta["chosen_length_score"] == 87.5
    assert any(loop_onset(pair.rejected[0].content) is not None for pair in pairs)  # the paper's draw: any other
    # The student alternates loop and clean answer per call, and a call cut by the kill shifts which one the repeat
    # gets, so the loop count is read off the records rather than fixed.
    looping = sum(loop_onset(p.response) is not None for p in records)
    summary = json.loads((folder / "done").read_text())
    assert 0 < looping < 12
    assert (summary["policy"], summary["samples"], summary["looping_samples"], summary["pairs"]) == (
        "sft",
        12,
        looping,
        3,
    )


def test_plan_row_is_scored_on_the_text_and_agentwrite_loses_no_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LW_DATA_DIR", str(DATA))
    student = Student()
    with ScriptedServer(reply=student) as server:
        serve_scripted(monkeypatch, server)
        config = config_for(
            server, **{"plan_sft.enabled": True, "agentwrite_bench.enabled": True, "dpo.enabled": False}
        )
        for stage in ("bench_plan", "bench_agentwrite", "report"):
            reproduce(config, tmp_path, start=stage, stop=stage, say=lambda _: None)
        judge_prompts = [c["messages"][-1]["content"] for c in server.calls if c["model"] == "judge"]
    root = tmp_path / "variants"
    plan = json.loads((root / "bench_plan" / "done").read_text())["longbench"]
    assert plan["answers_with_a_plan"] == 2 and plan["predictions"] == 2
    raw = list(read_jsonl(root / "bench_plan" / "longbench" / "predictions.jsonl", Prediction))
    assert all(p.response.startswith("Paragraph 1 - Main Point:") for p in raw)  # the answers as written ...
    assert not any("Main Point" in prompt for prompt in judge_prompts)  # ... judged and scored on the text alone
    assert plan["S_l"] == 50.0  # exactly half the required words; counting the plan line would have lifted it
    written = json.loads((root / "bench_agentwrite" / "done").read_text())["longbench"]
    assert written["agentwrite"]["fallback_plans"] == 2 and written["agentwrite"]["failed"] == 0
    documents = list(read_jsonl(root / "bench_agentwrite" / "longbench" / "documents.jsonl", Document))
    answers = list(read_jsonl(root / "bench_agentwrite" / "longbench" / "predictions.jsonl", Prediction))
    assert len(documents) == len(answers) == 2 and all(d.plan.meta["source"] == "fallback" for d in documents)
    assert written["S_l"] > 90  # the fallback's sections add up to the required length
    table = (root / "report" / "comparison.md").read_text()
    assert "| base | missing |" in table and "| plan-sft | 2 / 2 |" in table and "| agentwrite | 2 / 2 |" in table
    assert "| sft | missing |" in table and "| dpo |" not in table  # rows of the stages that run


def test_fork_copies_finished_stages_and_records_but_no_done_marker_or_model(tmp_path: Path) -> None:
    from lw_reproduce.rundir import RunDir

    source = RunDir.open(tmp_path, ReproduceConfig.load("smoke", None, {"name": "cpu"}))
    for stage in ("instructions", "train"):
        (source.stage(stage) / "model").mkdir()
        (source.stage(stage) / "model" / "weights").write_text("w")
        source.mark_done(stage, {})
    (source.stage("dpo_data") / "samples.jsonl").write_text('{"id": "a"}\n')
    source.mark_done("dpo_data", {})
    (source.stage("dpo") / "model").mkdir()  # a checkpoint of an unfinished training: never copied

    def fork(*args: str) -> Any:
        return CliRunner().invoke(app, ["reproduce", "fork", *args, "--runs", str(tmp_path)])

    result = fork("cpu", "lever", "--stages", "instructions,train", "--records", "dpo_data")
    assert result.exit_code == 0, result.output
    lever = tmp_path / "lever"
    assert (lever / "train" / "done").exists() and (lever / "train" / "model" / "weights").exists()
    assert (lever / "dpo_data" / "samples.jsonl").exists() and not (lever / "dpo_data" / "done").exists()
    assert not (lever / "dpo").exists() and not (lever / "manifest.json").exists()
    for args, message in (
        (("cpu", "lever", "--stages", "train"), "exists already"),
        (("cpu", "other", "--stages", "dpo"), "dpo not finished"),
        (("nothing", "other", "--stages", "train"), "is not a run folder"),
    ):
        result = fork(*args)
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    result = fork("cpu", "other", "--stages", "trian")
    assert result.exit_code == 2 and "unknown stage(s) trian" in " ".join(result.output.split())
