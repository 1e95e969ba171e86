"""build-sft + stats over synthetic AgentWrite documents: lw-data (polars + numba) vs the same filters in pure Python.

Run: python benchmarks/data_build_sft.py [--rows 100000] [--words 3000] [--baseline-rows 10000] [--as-written]

Documents are generated in chunks (bounded memory), each chunk is written to a JSONL file, and both
implementations process that same file: parse, join sections, strip plan echoes and echoed prompts (the
``strip_plan_echo`` option, the heavier path; ``--as-written`` measures the paper's default, which only joins),
count words, score n-gram repetition, apply every filter with a reason, write SFT records and rejects, then summarise
lengths per language and type. The pure-Python side runs on the first ``--baseline-rows`` documents (it is slow;
its per-row rate is what is compared) and its kept ids are checked against lw-data's, so both do the same work.
lw-data's one-time set-up (compiling its numba pass on first use after install, or loading it from numba's
cache, and reading Python's Unicode tables) is timed on its own and reported beside the rate.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

import polars as pl
from lw_core import count_words, detect_language
from lw_data import SFTFilters, build_sft_file, summarize
from lw_data._kernels import text_measures
from lw_data.lengths import extract_length
from lw_data.sft import _PLAN_ECHO, REASONS

_STEMS, _ENDS = ("sun", "sea", "ti", "mo", "wi", "sa", "re", "ke", "lo", "pa"), ("", "n", "r", "st", "th", "l")
VOCAB_EN = [f"{a}{b}{c}" for a in _STEMS for b in "aeiou" for c in _ENDS]
POOL_ZH = "潮汐月亮海洋风盐珊瑚礁海带沙滩贝壳浪花渔船灯塔港口岛屿天空云朵山川河流城市街道森林草原雪花星辰"


def sentence_pool(rng: random.Random, n: int) -> tuple[list[str], list[str]]:
    en = [" ".join(rng.choices(VOCAB_EN, k=rng.randint(8, 22))).capitalize() + "." for _ in range(n)]
    zh = ["".join(rng.choices(POOL_ZH, k=rng.randint(10, 30))) + "。" for _ in range(n)]
    return en, zh


def make_document(i: int, rng: random.Random, pools: tuple[list[str], list[str]], words: int) -> dict:
    """One AgentWrite-like document: mostly good, some failed/truncated/looping/short, headers and echoes."""
    zh = rng.random() < 0.3
    target = max(200, int(rng.gauss(words, words / 4)))
    prompt = (
        f"写一篇{target}字的关于海洋的文章（第{i}篇）" if zh else f"Write a {target}-word essay on the sea, part {i}."
    )
    pool = pools[1] if zh else pools[0]
    per_sentence = 20 if zh else 15
    n_sections = rng.randint(4, 8)
    kind = rng.random()
    sections = []
    for s in range(n_sections):
        n = max(1, target // n_sections // per_sentence)
        loop = kind < 0.05  # a degenerate document
        body = " ".join([pool[i % len(pool)]] * n if loop else rng.choices(pool, k=n))
        if rng.random() < 0.2:
            body = f"Paragraph {s + 1} - Main point: part {s + 1}\n{body}"
        if s == 0 and rng.random() < 0.05:
            body = f"{prompt}\n\n{body}"
        sections.append({"index": s + 1, "text": body, "word_count": 0})
    status = "failed" if kind > 0.97 else "truncated" if kind > 0.94 else "done"
    if 0.90 < kind <= 0.94:  # far too short for the request
        sections = sections[:1]
    return {
        "id": f"doc{i:07d}",
        "instruction": {
            "prompt": prompt,
            "length": target if rng.random() < 0.5 else None,
            "type": rng.choice(["essay", "story", "report"]),
        },
        "plan": None,
        "sections": sections,
        "text": "",
        "status": status,
        "model": "synthetic",
    }


# --- the same filters, in pure Python -------------------------------------------------------------------------------
_ARTEFACTS = re.compile(_PLAN_ECHO)
_SPACE_CJK = re.compile(r"([\u4e00-\u9fff])")
_WS = re.compile(r"[\n\t\r]")


def _strip_plan_echo(text: str) -> str:
    return _ARTEFACTS.sub("", text, count=1).strip()


def py_repetition(text: str, n: int) -> float:
    spaced = _SPACE_CJK.sub(r" \1 ", _WS.sub(" ", text).lower())
    tokens = [t for t in spaced.split(" ") if t]
    total = len(tokens) - (n - 1)
    if total <= 0:
        return 0.0
    return 1 - len(set(zip(*(tokens[k:] for k in range(n)), strict=False))) / total


def py_build_sft(path: Path, out: Path, rejects: Path, f: SFTFilters) -> list[dict]:
    measures = []
    with path.open("rb") as src, out.open("w") as kept_fh, rejects.open("w") as rej_fh:
        for lineno, raw in enumerate(src, start=1):
            doc = json.loads(raw)
            ins = doc.get("instruction") or {}
            prompt = (ins.get("prompt") or "").strip()
            requested = ins.get("length") or extract_length(prompt)
            language = ins.get("language") or detect_language(prompt)
            clean = _strip_plan_echo if f.strip_plan_echo else str.strip
            sections = [clean(s.get("text") or "") for s in doc.get("sections") or []]
            response = "\n\n".join(sections) if sections else clean(doc.get("text") or "")
            if f.strip_plan_echo:
                if prompt and response.startswith(prompt):
                    response = response[len(prompt) :]
                response = _strip_plan_echo(response.strip())
            words = count_words(response)
            rep = py_repetition(response, f.ngram)
            ratio = words / requested if requested else None
            status = doc.get("status") or "done"
            checks = [
                not prompt,
                status == "failed",
                status == "truncated" and not f.keep_truncated,
                response == "",
                bool(sections) and any(s == "" for s in sections),
                words < f.min_words,
                words > f.max_words,
                (ratio if ratio is not None else 1.0) < f.min_length_ratio,
                (ratio if ratio is not None else 1.0) > f.max_length_ratio,
                rep > f.max_repetition,
            ]
            reason = next((r for r, c in zip(REASONS, checks, strict=True) if c), None)
            if reason is None:
                meta = {"language": language, "type": ins.get("type"), "words": words, "requested": requested}
                messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
                record = {"id": doc["id"], "messages": messages, "meta": {**meta, "repetition": round(rep, 4)}}
                kept_fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                measures.append({"id": doc["id"], **meta})
            else:
                reject = {"id": doc["id"], "reason": reason, "status": status, "words": words, "line": lineno}
                rej_fh.write(json.dumps({**reject, "requested": requested, "ratio": ratio, "repetition": rep}) + "\n")
    return measures


def py_summarize(measures: list[dict]) -> list[dict]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for m in measures:
        groups.setdefault((m["language"], m["type"] or "-"), []).append(m)
    groups[("all", "all")] = measures
    table = []
    for (lang, kind), rows in sorted(groups.items()):
        words = sorted(r["words"] for r in rows)
        ratios = [r["words"] / r["requested"] for r in rows if r["requested"]]
        table.append(
            {
                "language": lang,
                "type": kind,
                "rows": len(rows),
                "mean_words": round(statistics.fmean(words)),
                "median": statistics.median(words),
                "p10": words[int(0.1 * (len(words) - 1))],
                "p90": words[int(0.9 * (len(words) - 1))],
                "mean_ratio": round(statistics.fmean(ratios), 3) if ratios else None,
            }
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--words", type=int, default=3000)
    parser.add_argument("--chunk", type=int, default=5000, help="documents per generated file (bounds memory)")
    parser.add_argument("--baseline-rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--as-written", action="store_true", help="the paper's default: no plan-echo stripping")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    pools = sentence_pool(rng, 20_000)
    filters = SFTFilters(strip_plan_echo=not args.as_written)
    work = Path(tempfile.mkdtemp(prefix="lw-data-bench-"))
    fast_s = slow_s = fast_cpu = slow_cpu = 0.0
    fast_rows = slow_rows = fast_bytes = slow_bytes = kept = 0
    all_measures: list[pl.DataFrame] = []
    agree = True
    t0 = time.perf_counter()
    text_measures(pl.Series(["warm up"]))
    setup_s = time.perf_counter() - t0
    for start in range(0, args.rows, args.chunk):
        n = min(args.chunk, args.rows - start)
        path = work / "docs.jsonl"
        with path.open("w") as fh:
            for i in range(start, start + n):
                fh.write(json.dumps(make_document(i, rng, pools, args.words), ensure_ascii=False) + "\n")
        size = path.stat().st_size

        t0, c0 = time.perf_counter(), time.process_time()
        summary = build_sft_file(path, work / "sft.jsonl", work / "rejects.jsonl", filters)
        all_measures.append(summary.measures)
        fast_s, fast_cpu = fast_s + time.perf_counter() - t0, fast_cpu + time.process_time() - c0
        fast_rows, fast_bytes, kept = fast_rows + n, fast_bytes + size, kept + summary.kept

        if slow_rows < args.baseline_rows:
            t0, c0 = time.perf_counter(), time.process_time()
            measures = py_build_sft(path, work / "py_sft.jsonl", work / "py_rejects.jsonl", filters)
            py_summarize(measures)
            slow_s, slow_cpu = slow_s + time.perf_counter() - t0, slow_cpu + time.process_time() - c0
            slow_rows, slow_bytes = slow_rows + n, slow_bytes + size
            agree &= [m["id"] for m in measures] == summary.measures["id"].to_list()
            agree &= [m["words"] for m in measures] == summary.measures["words"].to_list()
        print(f"  {start + n:>7} documents, {fast_bytes / 1e6:,.0f} MB, lw-data {fast_s:.1f} s", flush=True)

    t0, c0 = time.perf_counter(), time.process_time()
    table = summarize(pl.concat(all_measures))
    fast_s, fast_cpu = fast_s + time.perf_counter() - t0, fast_cpu + time.process_time() - c0
    print(table)
    fast_rate, slow_rate = fast_rows / fast_s, slow_rows / slow_s
    print(
        f"\nbuild-sft + stats, {fast_rows:,} documents of ~{args.words} words "
        f"({fast_bytes / 1e6:,.0f} MB), kept {kept:,}"
    )
    print(f"lw-data:           {fast_rate:10,.0f} rows/s  {fast_bytes / fast_s / 1e6:8.1f} MB/s  ({fast_s:.1f} s)")
    print(f"pure Python:       {slow_rate:10,.0f} rows/s  {slow_bytes / slow_s / 1e6:8.1f} MB/s  ({slow_rows:,} rows)")
    print(f"speed-up:          {fast_rate / slow_rate:10.1f}x   (same kept ids and word counts: {agree})")
    with_setup = fast_rows / (fast_s + setup_s) / slow_rate
    print(f"one-time set-up:   {setup_s:10.2f} s  (numba compile or cache load; {with_setup:.1f}x counting it)")
    cpu_ratio = (slow_cpu / slow_rows) / (fast_cpu / fast_rows)
    fast_ms, slow_ms = fast_cpu / fast_rows * 1e3, slow_cpu / slow_rows * 1e3
    print(f"CPU per row:       lw-data {fast_ms:.2f} ms (all threads), Python {slow_ms:.2f} ms: {cpu_ratio:.1f}x")
    print(f"threads: polars {pl.thread_pool_size()}, load average {os.getloadavg()[0]:.1f} (shared machine)")
    for p in work.iterdir():
        p.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()
