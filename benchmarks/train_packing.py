"""Pack fill and time at 32k-token bins: the original's next-fit vs sorted next-fit vs TRL's BFD vs lw-train's BFD.

Length mix like LongWriter-6k mixed into general SFT data: many samples of a few hundred to ~2k tokens plus ~4 %
long samples of 3k-32k tokens, in random (shuffled) order. Fill = real tokens / (bins x capacity): the share of
attention rows not wasted. ``nextfit`` is what THUDM/LongWriter's train/sort_and_group.py does (input order, a new
pack when the next sample does not fit); ``sorted-nextfit`` sorts by length first. TRL's time includes its
``datasets.map`` (how users call it); it packs each map batch of 1,000 samples apart.

    python benchmarks/train_packing.py [--samples 100000] [--max-tokens 32768] [--plot packing.png]
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np


def longwriter_mix(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [
        rng.randint(3_000, 32_000) if rng.random() < 0.04 else int(min(2_048, max(100, rng.lognormvariate(6.3, 0.6))))
        for _ in range(n)
    ]


def trl_bfd(lengths: list[int], max_tokens: int) -> tuple[int, float]:
    """Bins and seconds for trl.data_utils.pack_dataset(strategy='bfd') on a dataset with these lengths."""
    import datasets
    import pyarrow as pa
    from datasets import Dataset
    from trl.data_utils import pack_dataset

    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    column = pa.LargeListArray.from_arrays(offsets, np.zeros(offsets[-1], dtype=np.int32))
    dataset = Dataset(pa.table({"input_ids": column}))
    datasets.disable_progress_bars()
    start = time.perf_counter()
    packed = pack_dataset(dataset, max_tokens, strategy="bfd")
    return len(packed), time.perf_counter() - start


def loss_weights(lengths: list[int], packed: dict[str, list[list[int]]]) -> None:
    """How much of an epoch's gradient weight the long samples (>= 3k tokens) carry under each loss reduction.

    A sample's weight is the sum of its tokens' weights, all samples trained (each token's length counted as
    trained, prompts ignored): ``token`` 1/T each; ``sequence`` 1/S per sample; ``longwriter`` a row's token mean
    times (samples in the row)/30, averaged over rows, so within a row a sample weighs by its length.
    """
    long = [length >= 3_000 for length in lengths]
    print(f"share of the gradient weight on the long samples ({sum(long) / len(lengths):.1%} of the samples):")
    token = sum(n for n, is_long in zip(lengths, long, strict=True) if is_long) / sum(lengths)
    print(f"  token {token:.1%}   sequence {sum(long) / len(lengths):.1%}")
    for strategy, bins in packed.items():
        weight = [0.0] * len(lengths)
        for members in bins:
            row_tokens = sum(lengths[i] for i in members)
            for i in members:
                weight[i] = (len(members) / 30) * lengths[i] / row_tokens / len(bins)
        on_long = sum(w for w, is_long in zip(weight, long, strict=True) if is_long) / sum(weight)
        print(f"  longwriter over {strategy} bins {on_long:.1%} (mean row scale n/30: {sum(weight):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--max-tokens", type=int, default=32_768)
    parser.add_argument("--plot", help="write a bar chart of fill and time to this PNG")
    args = parser.parse_args()

    from lw_train import pack, pack_fill

    lengths = longwriter_mix(args.samples)
    total = sum(lengths)
    lower_bound = -(-total // args.max_tokens)
    print(f"{args.samples} samples, {total / 1e6:.1f} M tokens, {args.max_tokens}-token bins (>= {lower_bound} bins)")
    results = {}
    packed = {}
    for name, strategy in [
        ("nextfit (original)", "nextfit"),
        ("sorted-nextfit", "sorted-nextfit"),
        ("lw-train bfd", "bfd"),
    ]:
        start = time.perf_counter()
        bins = pack(lengths, args.max_tokens, strategy)
        results[name] = (len(bins), time.perf_counter() - start)
        packed[strategy] = bins
        assert pack_fill(bins, lengths, args.max_tokens) == total / (len(bins) * args.max_tokens)
    results["trl pack_dataset bfd"] = trl_bfd(lengths, args.max_tokens)

    print(f"{'method':<22}{'bins':>8}{'fill':>10}{'seconds':>10}")
    for name, (bins, seconds) in results.items():
        print(f"{name:<22}{bins:>8}{total / (bins * args.max_tokens):>10.4%}{seconds:>10.3f}")
    ours, trl = results["lw-train bfd"], results["trl pack_dataset bfd"]
    original = results["nextfit (original)"]
    print(
        f"bins vs the original next-fit: {ours[0] / original[0]:.3f}x; bins vs TRL: {ours[0] / trl[0]:.4f}x; "
        f"time vs TRL: {trl[1] / ours[1]:.1f}x faster"
    )

    loss_weights(lengths, packed)

    if args.plot:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        names = list(results)
        fig = Figure(figsize=(10, 3.2))
        FigureCanvasAgg(fig)
        fill_ax, time_ax = fig.subplots(1, 2)
        fill_ax.bar(names, [100 * total / (b * args.max_tokens) for b, _ in results.values()], color="tab:blue")
        fill_ax.set_ylim(80, 100)
        fill_ax.set_ylabel("fill (%)")
        time_ax.bar(names, [s for _, s in results.values()], color="tab:orange")
        time_ax.set_ylabel("packing time (s)")
        for ax in (fill_ax, time_ax):
            ax.tick_params(axis="x", labelsize=8)
        fig.suptitle(f"{args.samples} LongWriter-like samples into {args.max_tokens}-token bins")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
