"""What lw-data's instruction generator produces: length spread, forms and topics, and distance to LongBench-Write.

Run: LW_DATA_DIR=../shared/data python benchmarks/data_instructions.py [--n 3000] [--general 1000] [--seed 0]

Prints the share of requested lengths in each quarter of the log range (log-uniform: 25 % each), how many
prompts state a length that ``extract_length`` reads back exactly, the spread of forms and topics, and how close
the nearest LongBench-Write prompt comes (difflib ratio on normalised text, and character-trigram Jaccard), over
every generated prompt against every LongBench-Write and LongWrite-Ruler prompt.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import time

import polars as pl
from lw_core import data_file
from lw_data import extract_length, generate_instructions
from lw_data.generator import _normalize

BENCH_FILES = ("longbench_write.jsonl", "longbench_write_en.jsonl", "longwrite_ruler.jsonl")


def trigrams(text: str) -> set[str]:
    return {text[i : i + 3] for i in range(max(1, len(text) - 2))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="long-writing instructions (en + zh)")
    parser.add_argument("--general", type=int, default=1000, help="general requests (en + zh)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-words", type=int, default=100)
    parser.add_argument("--max-words", type=int, default=3000)
    args = parser.parse_args()

    t0 = time.perf_counter()
    long = generate_instructions(
        args.n, seed=args.seed, min_words=args.min_words, max_words=args.max_words, languages=["en", "zh"]
    )
    general = generate_instructions(args.general, seed=args.seed, kind="general", languages=["en", "zh"])
    elapsed = time.perf_counter() - t0
    print(f"generated {long.height:,} long + {general.height:,} general instructions in {elapsed:.2f} s")

    lengths = long["length"]
    position = (lengths.log() - math.log(args.min_words)) / (math.log(args.max_words) - math.log(args.min_words))
    quarters = (position * 4).floor().clip(0, 3).value_counts().sort(position.name)["count"] / long.height
    print("requested length per quarter of the log range:", ", ".join(f"{q:.1%}" for q in quarters))
    print(f"  min {lengths.min()}, median {lengths.median():g}, max {lengths.max()}")
    exact = sum(extract_length(p) == n for p, n in zip(long["prompt"], lengths, strict=True))
    print(f"length read back exactly by extract_length: {exact:,} / {long.height:,}")
    print(f"languages: {dict(long.group_by('language').len().iter_rows())}")
    types = long["type"].value_counts(sort=True)
    print(
        f"forms: {types.height} ({', '.join(f'{t} {c / long.height:.0%}' for t, c in types.head(6).iter_rows())}, ...)"
    )
    print(f"distinct topics: {long['meta'].struct.field('topic').n_unique()}")
    print(f"general request types: {dict(general.group_by('type').len().sort('type').iter_rows())}")

    bench = [_normalize(json.loads(line)["prompt"]) for name in BENCH_FILES
             for line in data_file(f"longbench_write/{name}").read_text(encoding="utf-8").splitlines()]  # fmt: skip
    grams = [trigrams(b) for b in bench]
    nearest: list[tuple[float, float, str, str]] = []
    for prompt in pl.concat([long["prompt"], general["prompt"]]).to_list():
        text = _normalize(prompt)
        own = trigrams(text)
        jaccard, i = max((len(own & g) / len(own | g), i) for i, g in enumerate(grams))
        ratio = difflib.SequenceMatcher(None, text, bench[i], autojunk=False).ratio()
        nearest.append((ratio, jaccard, prompt, bench[i]))
    nearest.sort(reverse=True)
    equal = sum(_normalize(p) in set(bench) for p in pl.concat([long["prompt"], general["prompt"]]).to_list())
    print(f"\nagainst {len(bench)} LongBench-Write/Ruler prompts: {equal} equal after normalising")
    print(f"nearest: difflib ratio max {nearest[0][0]:.3f}, trigram Jaccard max {max(n[1] for n in nearest):.3f}")
    for ratio, jaccard, prompt, other in nearest[:3]:
        print(f"  {ratio:.3f} / {jaccard:.3f}  {prompt[:80]!r}\n               vs {other[:80]!r}")


if __name__ == "__main__":
    main()
