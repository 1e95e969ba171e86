"""The batch runner: faults, accounting, resume without re-spending, and the CLI killed with SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from lw_agentwrite import AgentWrite, BatchStats, read_plans, run_batch
from lw_core import Document, Instruction, OpenAIChatClient, read_jsonl, write_jsonl
from lw_core.testing import Fault, ScriptedServer


def client_for(server: ScriptedServer, **kwargs) -> OpenAIChatClient:
    return OpenAIChatClient(base_url=server.base_url, model="scripted", backoff_s=0.01, **kwargs)


def cached_keys(path: Path, topics: dict[str, int]) -> list[tuple[int, int]]:
    return [(topics[r["id"]], r["step"]) for r in map(json.loads, path.read_text().splitlines()) if r]


async def test_faults_at_20_percent_every_instruction_ends_done_or_failed_once(tmp_path: Path, scripted) -> None:
    instructions = [*scripted.instructions(10), Instruction(prompt="Write a story about TOPIC-99.", length=300)]

    def reply(request):
        return "I cannot plan that." if "TOPIC-99" in request["messages"][0]["content"] else scripted.reply(request)

    kinds = (Fault.RATE_LIMIT, Fault.UNAVAILABLE, Fault.MALFORMED, Fault.TRUNCATED, Fault.SLOW)
    with ScriptedServer(reply, fault_rate=0.2, fault_kinds=kinds, seed=7, slow_s=1.0) as server:
        agent = AgentWrite(client_for(server, timeout=0.5, max_retries=6), plan_attempts=2, fallback_plan=False)
        stats = await run_batch(agent, instructions, tmp_path / "out.jsonl", concurrency=4)
    assert Counter(server.faults)[Fault.NONE] < len(server.faults)  # faults really happened
    documents = list(read_jsonl(tmp_path / "out.jsonl", Document))
    assert sorted(d.id for d in documents) == sorted(i.id for i in instructions)  # each once
    by_id = {d.id: d for d in documents}
    failed = by_id[instructions[-1].id]
    assert failed.status == "failed" and "no plan step found" in failed.error
    assert stats.errors == {failed.id: failed.error}
    assert all(d.status == "done" and d.word_count == 300 for d in documents if d.id != failed.id)
    assert (stats.done, stats.failed, stats.truncated, stats.total) == (10, 1, 0, 11)
    # accounting: every answered call is counted once; faults (and slow answers the client gave up on) are not
    assert stats.usage.calls == Counter(server.faults)[Fault.NONE] == 10 * 4 + 2
    assert stats.words == 3000 and stats.words_per_s > 0
    steps = Counter(
        tuple(r.values())[:2] for r in map(json.loads, (tmp_path / "out.steps.jsonl").read_text().splitlines())
    )
    assert max(steps.values()) == 1


async def test_resume_reuses_every_finished_step_and_skips_finished_instructions(tmp_path: Path, scripted) -> None:
    instructions = scripted.instructions(3)
    out = tmp_path / "docs.jsonl"
    cache = tmp_path / "docs.steps.jsonl"
    with ScriptedServer(scripted.reply) as server:
        agent = AgentWrite(client_for(server))
        first = await run_batch(agent, instructions[:1], out)  # instruction 0 finished
        # instruction 1 was planned and half written when the run died: fake that state in its cache
        await run_batch(agent, instructions[1:2], tmp_path / "scratch.jsonl", cache=tmp_path / "scratch.steps.jsonl")
        partial = cache.read_text() + "".join((tmp_path / "scratch.steps.jsonl").read_text().splitlines(True)[:2])
        cache.write_text(partial)
        calls_before = len(server.calls)
        stats = await run_batch(agent, instructions, out)
    new_calls = [scripted.key(c) for c in server.calls[calls_before:]]
    assert sorted(new_calls) == [(1, 2), (1, 3), (2, 0), (2, 1), (2, 2), (2, 3)]
    assert (first.done, stats.skipped, stats.done, stats.steps_reused) == (1, 1, 2, 2)
    documents = list(read_jsonl(out, Document))
    assert [d.id for d in documents].count(instructions[0].id) == 1 and len(documents) == 3
    assert all(d.word_count == 300 for d in documents)


async def test_fallback_plans_are_counted_cached_and_not_asked_for_again(tmp_path: Path, scripted) -> None:
    instructions = [*scripted.instructions(2), Instruction(prompt="Write a story about TOPIC-99.", length=300)]

    def reply(request):
        text = request["messages"][-1]["content"]
        if "TOPIC-99" not in text:
            return scripted.reply(request)
        if "planning assistant" in text:
            return "I cannot plan that."
        return scripted.prose(int(text.split("about ")[-1].split(" words")[0]), start=len(server.calls) * 1000)

    out = tmp_path / "docs.jsonl"
    with ScriptedServer(reply) as server:
        stats = await run_batch(AgentWrite(client_for(server), plan_attempts=2), instructions, out)
        assert (stats.done, stats.failed, stats.fallback_plans) == (3, 0, 1)
        assert "1 from a fallback plan" in stats.summary()
        documents = {d.id: d for d in read_jsonl(out, Document)}
        fallback = documents[instructions[-1].id]
        assert fallback.plan.meta["source"] == "fallback" and fallback.word_count == 300
        assert all(d.plan.meta == {} for i, d in documents.items() if i != fallback.id)
        # the run died before the document was written: its plan and sections come from the step cache
        out.write_text("".join(line for line in out.read_text().splitlines(True) if fallback.id not in line))
        calls = len(server.calls)
        again = await run_batch(AgentWrite(client_for(server), plan_attempts=2), instructions, out)
    assert len(server.calls) == calls and (again.done, again.fallback_plans, again.steps_reused) == (1, 1, 2)


async def test_plan_then_write_from_edited_plans(tmp_path: Path, scripted) -> None:
    instructions = scripted.instructions(2)
    with ScriptedServer(scripted.reply) as server:
        agent = AgentWrite(client_for(server))
        stats = await run_batch(agent, instructions, tmp_path / "plans.jsonl", mode="plan")
        plans = read_plans(tmp_path / "plans.jsonl")
        plans[instructions[0].id].steps[0].word_count = 40  # users edit plans between the stages
        stats = await run_batch(agent, instructions, tmp_path / "docs.jsonl", mode="write", plans=plans)
    assert isinstance(stats, BatchStats) and stats.done == 2
    assert sorted(s.word_count for s in plans[instructions[0].id].steps) == [40, 100, 100]
    words = {d.id: d.word_count for d in read_jsonl(tmp_path / "docs.jsonl", Document)}
    assert words == {instructions[0].id: 240, instructions[1].id: 300}


async def test_failed_instructions_are_retried_next_run_reusing_their_finished_steps(tmp_path: Path, scripted) -> None:
    instructions = scripted.instructions(3)
    out = tmp_path / "docs.jsonl"
    # one at a time: TOPIC-0 (4 calls), TOPIC-1's plan and section 1, then its section 2 and TOPIC-2's plan fail
    script = [Fault.NONE] * 6 + [Fault.BAD_REQUEST] * 2
    with ScriptedServer(scripted.reply, script=script) as server:
        agent = AgentWrite(client_for(server))
        first = await run_batch(agent, instructions, out, concurrency=1)
        assert (first.done, first.failed) == (1, 2)
        kept = await run_batch(agent, instructions, out, retry_failed=False)  # failures stay final when asked
        assert (kept.skipped, kept.finished) == (3, 0)
        calls = len(server.calls)
        second = await run_batch(agent, instructions, out)
    assert (second.skipped, second.retried, second.done, second.failed) == (1, 2, 2, 0)
    assert sorted(scripted.key(c) for c in server.calls[calls:]) == [(1, 2), (1, 3), (2, 0), (2, 1), (2, 2), (2, 3)]
    documents = list(read_jsonl(out, Document))
    assert sorted(d.id for d in documents) == sorted(i.id for i in instructions)  # one record per instruction
    assert all(d.status == "done" and d.word_count == 300 for d in documents)


async def test_retrying_removes_only_failed_records_and_keeps_the_rest_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "docs.jsonl"
    done = '{"id": "a",  "status": "done", "text": "潮水 \\u00e9", "extra": [1, 2]}\n'  # odd spacing, kept as is
    failed = '{"id": "b", "status": "failed", "error": "HTTP 503"}\n'
    out.write_text(done + failed + '{"id": "c", "sta', encoding="utf-8")  # a torn last line
    client = OpenAIChatClient(base_url="http://127.0.0.1:9/v1", model="m")
    stats = await run_batch(AgentWrite(client), [], out)
    assert out.read_text(encoding="utf-8") == done and stats.total == 0


async def test_cached_sections_of_an_edited_plan_are_not_spliced_into_the_new_one(tmp_path: Path, scripted) -> None:
    instruction = scripted.instructions(1)[0]
    cache = tmp_path / "docs.steps.jsonl"
    with ScriptedServer(scripted.reply) as server:
        agent = AgentWrite(client_for(server))
        await run_batch(agent, [instruction], tmp_path / "plans.jsonl", mode="plan")
        plans = read_plans(tmp_path / "plans.jsonl")
        await run_batch(agent, [instruction], tmp_path / "old.jsonl", mode="write", plans=plans, cache=cache)
        lines = cache.read_text().splitlines(True)
        cache.write_text("".join(lines[:2]))  # the write was killed after section 2 of the old plan
        edited = plans[instruction.id].model_copy(deep=True)
        edited.steps[0].main_point, edited.steps[1].word_count = "T0 point 1, told anew", 60
        calls = len(server.calls)
        new_plans = {instruction.id: edited}
        stats = await run_batch(
            agent, [instruction], tmp_path / "new.jsonl", mode="write", plans=new_plans, cache=cache
        )
        again = await run_batch(agent, [instruction], tmp_path / "new2.jsonl", mode="write", plans=plans, cache=cache)
    assert stats.steps_reused == 0 and [scripted.key(c) for c in server.calls[calls : calls + 3]] == [
        (0, 1), (0, 2), (0, 3)
    ]  # fmt: skip
    (document,) = read_jsonl(tmp_path / "new.jsonl", Document)
    assert [s.word_count for s in document.sections] == [100, 60, 100]
    assert "T0 point 1, told anew" in server.calls[calls]["messages"][0]["content"]
    assert again.steps_reused == 2  # the old plan's own sections are still reused for the old plan


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from lw_agentwrite.cli import app; app()", *args]


def test_cli_run_killed_with_sigkill_resumes_without_rerequesting_finished_steps(tmp_path: Path, scripted) -> None:
    instructions = scripted.instructions(12)
    topics = {i.id: n for n, i in enumerate(instructions)}
    write_jsonl(tmp_path / "in.jsonl", instructions)
    out, cache = tmp_path / "out.jsonl", tmp_path / "out.steps.jsonl"
    rng = random.Random(20261125)

    def reply(request):
        time.sleep(0.05)
        return scripted.reply(request)

    with ScriptedServer(reply) as server:
        command = _cli("run", "--in", str(tmp_path / "in.jsonl"), "--out", str(out), "--base-url", server.base_url,
                       "--model", "scripted", "--concurrency", "4", "--quiet")  # fmt: skip
        segments: list[tuple[int, set[tuple[int, int]]]] = []  # (calls so far, steps cached) after each run
        for _ in range(4):
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            target = len(server.calls) + rng.randint(1, 12)
            deadline = time.monotonic() + 60
            while len(server.calls) < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.08))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            time.sleep(0.1)  # let requests already on the wire be recorded
            segments.append((len(server.calls), set(cached_keys(cache, topics)) if cache.exists() else set()))
        final = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert "12/12 instructions" in final.stderr

    starts = [0] + [n for n, _ in segments]
    for run, (n_calls, cached_after) in enumerate(segments[:-1]):
        later = [scripted.key(c) for c in server.calls[n_calls:]]
        assert not set(later) & cached_after, f"a step finished before kill {run + 1} was requested again"
    assert segments[-1][0] > 0 and len(server.calls) - starts[-1] < 12 * 4  # the kills landed mid-run

    keys = cached_keys(cache, topics)
    assert len(keys) == len(set(keys)) == 12 * 4  # every step cached exactly once
    documents = list(read_jsonl(out, Document))
    assert sorted(d.id for d in documents) == sorted(topics)  # no instruction written twice, none lost
    assert all(d.status == "done" and d.word_count == 300 and len(d.sections) == 3 for d in documents)


def test_cli_errors_are_one_line_with_exit_code_1(tmp_path: Path) -> None:
    missing = subprocess.run(
        _cli("run", "--in", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o.jsonl"), "--base-url",
             "http://127.0.0.1:9/v1", "--model", "m"), capture_output=True, text=True)  # fmt: skip
    assert missing.returncode == 1 and "nope.jsonl: no such file" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"length": 3}\n')
    invalid = subprocess.run(
        _cli("plan", "--in", str(bad), "--out", str(tmp_path / "o.jsonl"), "--base-url", "http://127.0.0.1:9/v1",
             "--model", "m"), capture_output=True, text=True)  # fmt: skip
    assert invalid.returncode == 1 and "bad.jsonl:2" in invalid.stderr and "prompt" in invalid.stderr
    usage = subprocess.run(_cli("run", "--bogus"), capture_output=True, text=True)
    assert usage.returncode == 2


def test_cli_shards_split_the_input_and_plan_then_write(tmp_path: Path, scripted) -> None:
    instructions = scripted.instructions(4)
    write_jsonl(tmp_path / "in.jsonl", instructions)
    with ScriptedServer(scripted.reply) as server:
        common = ["--base-url", server.base_url, "--model", "scripted", "--quiet"]
        planned = subprocess.run(
            _cli("plan", "--in", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "plans.jsonl"), *common),
            capture_output=True, text=True)  # fmt: skip
        assert planned.returncode == 0, planned.stderr
        for shard in ("0/2", "1/2"):
            wrote = subprocess.run(
                _cli("write", "--in", str(tmp_path / "in.jsonl"), "--plans", str(tmp_path / "plans.jsonl"),
                     "--out", str(tmp_path / f"docs{shard[0]}.jsonl"), "--shard", shard, *common),
                capture_output=True, text=True)  # fmt: skip
            assert wrote.returncode == 0, wrote.stderr
        bad = subprocess.run(_cli("run", "--in", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "x.jsonl"),
                                  "--shard", "2/2", *common), capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 1 and "--shard '2/2'" in bad.stderr
    shards = [[d.id for d in read_jsonl(tmp_path / f"docs{i}.jsonl", Document)] for i in (0, 1)]
    assert sorted(shards[0]) == sorted(i.id for i in instructions[0::2])
    assert sorted(shards[1]) == sorted(i.id for i in instructions[1::2])
    assert len(server.calls) == 4 + 4 * 3  # plans once, then sections only
