"""Soak: long jobs under faults and kills, many clients on a real server, and a 2 GB JSONL file in bounded memory.

(a) faults: AgentWrite's batch runner and lw-bench's predict stage run against ``ScriptedServer`` answering 20 % of
    requests with a fault (503, 429, a chunked stream cut mid-chunk, a reset connection, a stall, a garbage body, a
    stream that ends early), while the driver process is SIGKILLed at random points and resumed each time; then it
    runs to the end. Counted from the server's log and the files: items done / failed, duplicate records, finished
    steps lost, calls re-spent on steps already recorded (goal 0 for the last three), HTTP attempts per call.
(b) load: 32 concurrent clients against the llama.cpp server with the embedded model for a few hundred short
    requests: all complete, no process or file descriptor left behind, the driver's memory flat.
(c) memory: ``read_jsonl`` over a 2 GB file: peak resident memory of a fresh process, against the same read of a
    file ten times smaller (flat: memory does not grow with the file) and against reading the whole file at once.

    python benchmarks/soak.py                                 # all three, default sizes (~10 min on 2 cores)
    python benchmarks/soak.py faults --kills 10 --instructions 40 --items 60
    python benchmarks/soak.py load --clients 32 --requests 320
    python benchmarks/soak.py memory --size-gb 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from lw_core import BenchItem, Instruction, OpenAIChatClient, read_jsonl
from lw_core.testing import Fault, ScriptedServer
from pydantic import BaseModel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

#: Every fault a long job meets: all but BAD_REQUEST (a caller's error, never retried) and SLOW (not a fault).
FAULTS = (Fault.UNAVAILABLE, Fault.RATE_LIMIT, Fault.CUT, Fault.RESET, Fault.STALL, Fault.MALFORMED, Fault.TRUNCATED)
SECTION_WORDS, SECTIONS = 100, 3
CLIENT = {"model": "scripted", "backoff_s": 0.05, "timeout": 10.0, "stall_timeout": 0.5}  # retries: the defaults


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


# -- (a) faults and kills ---------------------------------------------------------------------------------------------
def instructions(n: int) -> list[Instruction]:
    """n writing tasks; the last one is unplannable (the scripted model refuses it): a failure that stays a failure."""
    tasks = [Instruction(prompt=f"Write an essay on TOPIC-{i}.", length=SECTION_WORDS * SECTIONS) for i in range(n)]
    return [*tasks[:-1], Instruction(prompt=f"Write an essay on TOPIC-{n - 1}. UNPLANNABLE", length=300)]


def bench_items(n: int) -> list[BenchItem]:
    return [BenchItem(prompt=f"Write about BENCH-{i} in {200 + 10 * i} words.", length=200 + 10 * i) for i in range(n)]


def prose(words: int, start: int = 0) -> str:
    """``words`` distinct letter-only words in sentences of ten (no loop for the repetition checks to flag)."""
    out = []
    for k in range(start, start + words):
        letters, n = "", k
        while True:
            n, digit = divmod(n, 26)
            letters = "abcdefghijklmnopqrstuvwxyz"[digit] + letters
            if not n:
                break
        out.append("w" + letters + ("." if k % 10 == 9 else ""))
    return " ".join(out)


def request_key(request: dict[str, Any]) -> tuple[str, int, int]:
    """What a request asks for: ("plan" or "write", topic, step) or ("bench", item, 0)."""
    text = "\n".join(str(m.get("content", "")) for m in request["messages"])
    if bench := re.search(r"BENCH-(\d+)", text):
        return "bench", int(bench.group(1)), 0
    topic = int(re.search(r"TOPIC-(\d+)", text).group(1))  # type: ignore[union-attr]
    steps = re.findall(r"SOAK-STEP-(\d+)", text)
    if not steps:  # no plan in the prompt yet: it asks for one
        return "plan", topic, 0
    return "write", topic, int(steps[-1])  # the step being asked for comes last in the prompt


def scripted_reply(request: dict[str, Any]) -> str:
    kind, topic, step = request_key(request)
    text = request["messages"][-1]["content"]
    if kind == "bench":
        return prose(int(re.search(r"in (\d+) words", text).group(1)))  # type: ignore[union-attr]
    if kind == "plan":
        if "UNPLANNABLE" in text:
            return "I cannot plan that."
        if request.get("response_format"):
            steps = [{"main_point": f"SOAK-STEP-{k}", "word_count": SECTION_WORDS} for k in range(1, SECTIONS + 1)]
            return json.dumps({"steps": steps})
        return "\n".join(
            f"Paragraph {k} - Main Point: SOAK-STEP-{k} - Word Count: {SECTION_WORDS} words"
            for k in range(1, SECTIONS + 1)
        )
    asked = re.findall(r"about (\d+) words", text)
    return prose(int(asked[-1]) if asked else SECTION_WORDS, start=(topic * SECTIONS + step) * 1000)  # no copies


def drive(workload: str, base_url: str, folder: Path, n: int) -> None:
    """The driver process: one resumable run of a stage; the soak kills it at random points."""
    client = OpenAIChatClient(base_url=base_url, concurrency=4, **CLIENT)  # type: ignore[arg-type]
    if workload == "agentwrite":
        from lw_agentwrite import AgentWrite, run_batch

        stats = asyncio.run(
            run_batch(
                AgentWrite(client), instructions(n), folder / "docs.jsonl", cache=folder / "steps.jsonl", concurrency=4
            )
        )
        print(json.dumps({"done": stats.done, "failed": stats.failed, "skipped": stats.skipped}))
    else:
        from lw_bench import predict

        result = asyncio.run(predict(client, bench_items(n), folder / "predictions.jsonl", max_tokens=1024))
        print(json.dumps({"done": result.done, "failed": result.failed, "skipped": result.skipped}))


class _Line(BaseModel):
    """The fields of a step-cache, document or prediction line the soak counts (other fields are ignored)."""

    id: str = ""
    step: int = 0
    plan_hash: str = ""
    status: str | None = None
    sample: int = 0


def _lines(path: Path) -> list[_Line]:
    return list(read_jsonl(path, _Line)) if path.exists() else []


def recorded(workload: str, folder: Path, ids: dict[str, int]) -> tuple[set[tuple[str, int, int]], set[str]]:
    """(the request keys whose results are on disk, the ids finished for good) of a workload's files."""
    if workload == "agentwrite":
        steps = {("plan" if s.step == 0 else "write", ids[s.id], s.step) for s in _lines(folder / "steps.jsonl")}
        finished = {d.id for d in _lines(folder / "docs.jsonl") if d.status in ("done", "truncated")}
        return steps, finished
    predictions = _lines(folder / "predictions.jsonl")
    return {("bench", ids[p.id], 0) for p in predictions}, {p.id for p in predictions}


def soak_faults(workload: str, n: int, kills: int, seed: int, folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True)
    rng = random.Random(seed)
    ids = (
        {i.id: int(re.search(r"TOPIC-(\d+)", i.prompt).group(1)) for i in instructions(n)}  # type: ignore[union-attr]
        if workload == "agentwrite"
        else {item.id: k for k, item in enumerate(bench_items(n))}
    )
    # pieces streamed 2 ms apart, as a live server streams them, so kills land inside calls too
    server = ScriptedServer(
        scripted_reply, fault_rate=0.2, fault_kinds=FAULTS, seed=seed + n, stall_s=3.0, token_interval_s=0.002
    )
    runs: list[dict[str, Any]] = []  # per run: first call index, keys recorded before it, killed or not
    ever_recorded: set[tuple[str, int, int]] = set()
    ever_finished: set[str] = set()
    command = [sys.executable, __file__, "_drive", workload, server.base_url, str(folder), str(n)]
    killed = 0
    with server, progress() as bar:
        task = bar.add_task(f"{workload}: runs killed", total=kills)
        while True:
            keys_before, _ = recorded(workload, folder, ids)
            runs.append({"first_call": len(server.calls), "recorded": keys_before, "killed": False})
            log = (folder / "driver.log").open("a")
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            if killed < kills:
                try:
                    proc.wait(timeout=rng.uniform(1.0, 3.5))
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    killed += 1
                    runs[-1]["killed"] = True
                    bar.advance(task)
            proc.wait()
            log.close()
            keys_after, finished_after = recorded(workload, folder, ids)
            ever_recorded |= keys_after
            ever_finished |= finished_after
            if runs[-1]["killed"]:
                continue
            if proc.returncode != 0:
                raise SystemExit(f"the driver failed: see {folder / 'driver.log'}")
            break  # a run that ended by itself: everything is done (sooner than the kills, if the work was small)
        calls = [request_key(c) for c in server.calls]
        faults = list(server.faults)
    final_keys, final_finished = recorded(workload, folder, ids)
    # calls re-spent: requests for a key whose result was already on disk when that run started
    respent = 0
    attempts: Counter[tuple[int, tuple[str, int, int]]] = Counter()
    unplannable = ("plan", n - 1, 0)  # asked plan_attempts times per run by design: not retries of one call
    for r, run in enumerate(runs):
        end = runs[r + 1]["first_call"] if r + 1 < len(runs) else len(calls)
        for key in calls[run["first_call"] : end]:
            respent += key in run["recorded"]
            if workload == "bench" or key != unplannable:
                attempts[(r, key)] += 1
    out = folder / ("docs.jsonl" if workload == "agentwrite" else "predictions.jsonl")
    records = _lines(out)
    ids_seen = Counter((r.id, r.sample) for r in records)
    step_lines = Counter((s.id, s.step, s.plan_hash) for s in _lines(folder / "steps.jsonl"))
    return {
        "workload": workload,
        "items": n,
        "runs": len(runs),
        "kills": killed,
        "done": sum(1 for r in records if r.status in (None, "done")),
        "truncated": sum(1 for r in records if r.status == "truncated"),
        "failed": sum(1 for r in records if r.status == "failed"),
        "missing": n - len({r.id for r in records}),
        "duplicates": sum(c - 1 for c in ids_seen.values()) + sum(c - 1 for c in step_lines.values()),
        "lost_steps": len(ever_recorded - final_keys) + len(ever_finished - final_finished),
        "respent_calls": respent,
        "http_requests": len(calls),
        "faults_injected": sum(f is not Fault.NONE for f in faults),
        "fault_kinds": dict(Counter(f.value for f in faults if f is not Fault.NONE)),
        "attempts_per_call_mean": round(sum(attempts.values()) / len(attempts), 2),
        "attempts_per_call_max": max(attempts.values()),
    }


# -- (b) load on llama.cpp --------------------------------------------------------------------------------------------
def _rss_mb() -> float:
    return _status_kb("VmRSS") / 1024


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _children() -> list[int]:
    """Live processes whose parent is this one."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                pids.append(int(entry))
    return pids


def soak_load(clients: int, requests: int, rounds: int = 5) -> dict[str, Any]:
    from lw_serve import Server

    fds_before, children_before = _fds(), set(_children())
    per_round = requests // rounds // clients  # requests each client makes per round
    latencies: list[float] = []
    errors: list[str] = []
    rss: list[float] = []
    fds_during: list[int] = []
    with Server("smollm2-135m-instruct", "llamacpp") as server, progress() as bar:
        pids = server.pids
        task = bar.add_task(f"load: {clients} clients", total=per_round * clients * rounds)

        async def client_job(k: int, round_: int) -> None:
            client = server.new_client(concurrency=1)
            try:
                for j in range(per_round):
                    started = time.perf_counter()
                    try:
                        reply = await client.complete(
                            [{"role": "user", "content": f"Name a colour (request {round_}.{k}.{j})."}],
                            max_tokens=16,
                            temperature=0.0,
                        )
                        assert reply.finish_reason in ("stop", "length"), reply.finish_reason
                        latencies.append(time.perf_counter() - started)
                        fds_during.append(_fds())
                    except Exception as exc:  # counted, and the soak reports them
                        errors.append(f"{type(exc).__name__}: {exc}")
                    bar.advance(task)
            finally:
                await client.aclose()

        async def one_round(round_: int) -> None:
            await asyncio.gather(*(client_job(k, round_) for k in range(clients)))

        started = time.perf_counter()
        for round_ in range(rounds):
            asyncio.run(one_round(round_))
            rss.append(_rss_mb())
        elapsed = time.perf_counter() - started
        fds_after_load = _fds()
    time.sleep(0.5)
    left = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    latencies.sort()
    return {
        "clients": clients,
        "requests": per_round * clients * rounds,
        "completed": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "latency_p50_s": round(latencies[len(latencies) // 2], 2) if latencies else None,
        "latency_p95_s": round(latencies[int(len(latencies) * 0.95)], 2) if latencies else None,
        "server_processes_left": len(left),
        "new_child_processes_left": len(set(_children()) - children_before),
        "fds_before": fds_before,
        "fds_peak_during_load": max(fds_during, default=0),
        "fds_after_load": fds_after_load,
        "fds_after_server": _fds(),
        "driver_rss_mb_per_round": [round(x, 1) for x in rss],
        "driver_rss_growth_mb_after_round_1": round(rss[-1] - rss[0], 1),
    }


# -- (c) read_jsonl in bounded memory ---------------------------------------------------------------------------------
_READER = """
import sys
from pathlib import Path
from lw_core import Instruction, read_jsonl

def kb(field):
    return next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))

path, how = sys.argv[1], sys.argv[2]
before = kb("VmRSS")
if how == "stream":
    count = sum(1 for _ in read_jsonl(path, Instruction))
else:  # what read_jsonl did before: the whole file at once, then split
    with open(path, "rb") as fh:
        count = sum(1 for line in fh.read().split(b"\\n") if line.strip())
print(count, before, kb("VmHWM"))
"""


def _write_jsonl_file(path: Path, size: int) -> int:
    record = Instruction(prompt="Write about the sea. " * 100, length=1000, language="en").model_dump()
    lines = 0
    with path.open("w", encoding="utf-8") as fh, progress() as bar:
        task = bar.add_task(f"writing {size / 1e9:.1f} GB", total=size)
        written = 0
        while written < size:
            block = "".join(json.dumps({**record, "id": f"{lines + k:016x}"}) + "\n" for k in range(1000))
            fh.write(block)
            written += len(block)
            lines += 1000
            bar.update(task, completed=min(written, size))
    return lines


def _read_peak(path: Path, how: str) -> dict[str, Any]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _READER, str(path), how], capture_output=True, text=True, check=True)
    count, before_kb, peak_kb = map(int, out.stdout.split())
    return {
        "file_mb": round(path.stat().st_size / 1e6),
        "how": how,
        "records": count,
        "rss_before_mb": round(before_kb / 1024, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


def soak_memory(size_gb: float, folder: Path) -> list[dict[str, Any]]:
    big, small = folder / "big.jsonl", folder / "small.jsonl"
    _write_jsonl_file(small, int(size_gb * 1e8))
    _write_jsonl_file(big, int(size_gb * 1e9))
    rows = [_read_peak(small, "stream"), _read_peak(big, "stream"), _read_peak(small, "whole")]
    big.unlink()
    return rows


# -- report -----------------------------------------------------------------------------------------------------------
def _print(title: str, figures: dict[str, Any] | list[dict[str, Any]]) -> None:
    print(f"\n== {title}")
    for row in figures if isinstance(figures, list) else [figures]:
        print("  " + ", ".join(f"{k}={v}" for k, v in row.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", help="faults, load and/or memory (default: all three)")
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs of the driver per workload")
    parser.add_argument("--instructions", type=int, default=60, help="AgentWrite instructions (the last unplannable)")
    parser.add_argument("--items", type=int, default=120, help="lw-bench items to predict")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients on llama.cpp")
    parser.add_argument("--requests", type=int, default=320, help="short requests on llama.cpp in all")
    parser.add_argument("--size-gb", type=float, default=2.0, help="size of the JSONL file read in bounded memory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    parts = args.parts or ["faults", "load", "memory"]
    if unknown := set(parts) - {"faults", "load", "memory"}:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lw-soak-") as tmp:
        if "faults" in parts:
            for workload, n in (("agentwrite", args.instructions), ("bench", args.items)):
                results[f"faults_{workload}"] = soak_faults(workload, n, args.kills, args.seed, Path(tmp) / workload)
                _print(f"faults + kills: {workload}", results[f"faults_{workload}"])
        if "load" in parts:
            results["load"] = soak_load(args.clients, args.requests)
            _print("load: llama.cpp", results["load"])
        if "memory" in parts:
            results["memory"] = soak_memory(args.size_gb, Path(tmp))
            _print("memory: read_jsonl", results["memory"])
            small, big, whole = results["memory"]
            print(
                f"  peak RSS reading {big['file_mb']} MB: {big['peak_rss_mb']} MB "
                f"({big['peak_rss_mb'] / small['peak_rss_mb']:.2f}x that of a file {small['file_mb']} MB big); "
                f"the whole-file read took {whole['peak_rss_mb']} MB for {whole['file_mb']} MB "
                f"({(whole['peak_rss_mb'] - whole['rss_before_mb']) / whole['file_mb']:.1f} MB per MB of file)"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_drive":
        workload, base_url, folder, n = sys.argv[2:6]
        drive(workload, base_url, Path(folder), int(n))
    else:
        main()
