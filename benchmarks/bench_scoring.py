"""Scoring throughput for 1 M predictions: the paper's word count and S_l, vectorized vs a plain Python loop.

    /work/venv/bin/python benchmarks/bench_scoring.py [--n 1000000] [--words 40]

Goals (issue 6): >= 50 MB/s for counting, < 1 s for S_l on precomputed lengths. Both paths run in the same
process on the same data, and the results are checked equal before any figure is printed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from lw_bench import length_score, length_scores
from lw_core import count_words, count_words_batch

ENGLISH = [
    "the",
    "model",
    "writes",
    "long",
    "answers",
    "about",
    "rivers",
    "history",
    "science",
    "and",
    "art",
    "with",
    "care",
]
CHINESE = "长文本生成模型需要在规定的字数内完成写作任务并保持连贯"


def make_texts(n: int, words: int, zh_share: float, seed: int = 0) -> list[str]:
    """Mostly-English answers with punctuation and digits, and a share of Chinese ones (like LongBench-Write)."""
    rng = random.Random(seed)
    english = [" ".join(rng.choices(ENGLISH, k=words)) + f", {rng.randint(0, 999)}." for _ in range(1000)]
    chinese = ["".join(rng.choices(CHINESE, k=words * 2)) + "，GPT-4o。" for _ in range(1000)]
    return [rng.choice(chinese) if rng.random() < zh_share else rng.choice(english) for _ in range(n)]


def best_of(repeats: int, func):
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--words", type=int, default=40, help="ASCII words per English answer")
    parser.add_argument("--zh-share", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    texts = make_texts(args.n, args.words, args.zh_share)
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    print(f"{args.n:,} predictions, {megabytes:.1f} MB of text ({args.zh_share:.0%} Chinese)")

    loop_s, _, loop_counts = best_of(1, lambda: [count_words(t) for t in texts])
    batch_s, batch_med, batch_counts = best_of(args.repeats, lambda: count_words_batch(texts))
    assert batch_counts == loop_counts, "count_words_batch disagrees with count_words"
    print(f"count_words, Python loop    : {loop_s:7.3f} s  {megabytes / loop_s:8.1f} MB/s")
    print(
        f"count_words_batch           : {batch_s:7.3f} s  {megabytes / batch_s:8.1f} MB/s "
        f"(median {batch_med:.3f} s)  x{loop_s / batch_s:.1f} vs loop"
    )

    rng = random.Random(1)
    required = [rng.choice([100, 300, 1000, 3000, 10000, 20000]) for _ in range(args.n)]
    actual = [max(0, int(r * rng.uniform(0, 5))) for r in required]
    sl_loop_s, _, sl_loop = best_of(1, lambda: [length_score(x, y) for x, y in zip(required, actual, strict=True)])
    sl_vec_s, sl_vec_med, sl_vec = best_of(args.repeats, lambda: length_scores(required, actual).to_list())
    assert sl_vec == sl_loop, "vectorized S_l is not bit-identical to the scalar formula"
    print(f"S_l, Python loop            : {sl_loop_s:7.3f} s  S_l = {statistics.fmean(sl_loop):.4f}")
    print(
        f"S_l, length_scores (numpy)  : {sl_vec_s:7.3f} s  (median {sl_vec_med:.3f} s)  "
        f"x{sl_loop_s / sl_vec_s:.1f} vs loop"
    )
    end_to_end = batch_s + sl_vec_s
    print(f"end to end (count + S_l)    : {end_to_end:7.3f} s for {args.n:,} predictions")


if __name__ == "__main__":
    main()
