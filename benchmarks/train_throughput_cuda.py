"""GPU training throughput of packed rows by attention path, against padded batches and the dense-row limit.

One run measures, for each row length in --rows (default 8k, 16k and 32k tokens), a random-init Llama in bf16
(--size 300m: 316 M parameters) with fused AdamW and lw-train's ``sequence`` loss, one optimizer step per batch:

- padded          PaddedCollator, --batch-size samples per batch in shuffled order (the usual baseline)
- packed-sdpa     PackedCollator on best-fit bins of one row; sdpa with the block-diagonal mask transformers derives
                  from restarting position_ids (what ``attention="auto"`` runs on CUDA without flash-attn today)
- packed-flex     the same bins with lw-train's flex attention (compiled, document-causal block mask)
- packed-varlen   the same bins with torch's varlen attention (FlashAttention kernels in torch, torch >= 2.9)
- dense-limit     the same tokens as full rows of one sequence each, plain causal attention: no padding and no
                  sample boundaries, the ceiling any batching scheme can reach at this row length

and, with --variants, also padded-grouped (padded, sorted by length), unpadded (each sample alone, one step per bin)
and packed-segments (lw-train's per-segment sdpa). Each row length gets its own LongWriter-like samples (general chats
of ~300 tokens, 15 % long outputs up to half a row). After two untimed warm-up steps (flex compiles there) a variant
trains until its steps run out or --cell-seconds pass; the run starts no new measurement after --budget-s, so the
whole of it fits a time slot. Rates are real (non-padding) tokens per second; peak memory is the timed steps'.

It also checks, in bf16 and for every packed attention at every row length, that the packed sequence loss of the
first bin equals the mean of its samples' losses computed alone.

    python benchmarks/train_throughput_cuda.py                              # an H200: about 5 minutes
    python benchmarks/train_throughput_cuda.py --size tiny --rows 512,1024  # the CPU: a smoke test of this script
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

SIZES = {  # hidden, intermediate, layers, heads, kv heads (vocab 32000, tied embeddings)
    "300m": (1024, 2816, 24, 16, 8),
    "1b": (2048, 5632, 16, 32, 8),
    "tiny": (128, 256, 2, 4, 2),
}
DEFAULT_VARIANTS = ("padded", "packed-sdpa", "packed-flex", "packed-varlen", "dense-limit")
EXTRA_VARIANTS = ("padded-grouped", "unpadded", "packed-segments")
PACKED_ATTENTION = {
    "packed-sdpa": "sdpa",
    "packed-flex": "flex",
    "packed-varlen": "varlen",
    "packed-segments": "segments",
}


@dataclass
class Cell:
    """One variant at one row length."""

    rows: int
    variant: str
    steps: int = 0
    tokens: int = 0
    positions: int = 0
    seconds: float = 0.0
    peak_gib: float | None = None
    skipped: str | None = None

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.seconds if self.seconds > 0 else None


def llama(size: str, dtype: torch.dtype, device: str) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, intermediate, layers, heads, kv_heads = SIZES[size]
    config = LlamaConfig(
        vocab_size=32_000,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=65_536,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).to(device=device, dtype=dtype)


def samples(tokens: int, long_share: float, long_max: int, vocab: int, seed: int = 0) -> list[dict[str, list[int]]]:
    """A LongWriter-like mix of at least ``tokens`` tokens: general chats (lognormal, ~300 tokens) and long-output
    samples (long_max/4..long_max tokens)."""
    rng = random.Random(seed)
    out: list[dict[str, list[int]]] = []
    total = 0
    while total < tokens:
        if rng.random() < long_share:
            length = rng.randint(long_max // 4, long_max)
        else:
            length = int(min(4096, long_max, max(32, rng.lognormvariate(5.7, 0.8))))
        ids = [rng.randrange(vocab) for _ in range(length)]
        prompt = min(length // 4, 256)
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
        total += length
    return out


def to_device(batch: dict[str, Any], device: str) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(
    model: Any, steps: list[list[dict[str, Any]]], real: list[int], device: str, cell: Cell, limit: float
) -> None:
    """Train ``steps`` (micro-batches of one optimizer step each) after two untimed warm-up steps, for at most
    ``limit`` seconds, into ``cell``."""
    from lw_train import TargetCounts, count_targets, model_loss

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device == "cuda")

    def step(micro_batches: list[dict[str, Any]]) -> None:
        counts = sum((count_targets(b) for b in micro_batches), TargetCounts())
        for batch in micro_batches:
            model_loss(model, to_device(batch, device), reduction="sequence", global_counts=counts).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    warmup, timed = steps[:2], list(zip(steps[2:], real[2:], strict=True)) or list(zip(steps, real, strict=True))
    for micro_batches in warmup:
        step(micro_batches)
    sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for micro_batches, tokens in timed:
        step(micro_batches)
        sync(device)
        cell.steps += 1
        cell.tokens += tokens
        cell.positions += sum(b["input_ids"].numel() for b in micro_batches)
        cell.seconds = time.perf_counter() - start
        if cell.seconds >= limit:
            break
    cell.peak_gib = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def isolation_gap(model: Any, data: list[dict[str, list[int]]], members: list[int], device: str) -> float:
    """|packed sequence loss - mean of the samples' losses alone| for up to 8 samples of one bin, in bf16.

    Forward passes in training mode with autograd on (and no backward): dropout is 0, so the numbers are eval's, and
    a compiled attention reuses its training graph instead of compiling one more.
    """
    import torch.nn.functional as F
    from lw_train import PackedCollator, model_loss

    chosen = [data[i] for i in members][:8]
    batch = to_device(PackedCollator(pad_to_multiple_of=64)(chosen), device)
    packed = float(model_loss(model, batch, reduction="sequence"))
    alone = []
    for sample in chosen:  # one sequence, no boundaries: the same reference for every attention path
        logits = model(torch.tensor([sample["input_ids"]], device=device), use_cache=False).logits[0].float()
        alone.append(float(F.cross_entropy(logits[:-1], torch.tensor(sample["labels"][1:], device=device))))
    return abs(packed - sum(alone) / len(alone))


def attention_switch(device: str) -> dict[str, Callable[[Any], Any] | str]:
    """How to switch the model to each attention, or why this machine cannot train with it."""
    from lw_train.attention import use_flex_attention, use_segment_attention, use_varlen_attention, varlen_available

    switch: dict[str, Callable[[Any], Any] | str] = {
        "sdpa": lambda model: model.set_attn_implementation("sdpa"),
        "segments": use_segment_attention,
        "flex": use_flex_attention if device == "cuda" else "needs CUDA: flex attention has no backward on the CPU",
        "varlen": use_varlen_attention if varlen_available() else "needs CUDA and torch >= 2.9 (torch's varlen)",
    }
    return switch


def batches(
    variant: str, data: list[dict[str, list[int]]], bins: list[list[int]], rows: int, batch_size: int
) -> tuple[list[list[dict[str, Any]]], list[int]]:
    """The optimizer steps of a variant (micro-batches each) and the real tokens of each step."""
    from lw_train import PackedCollator, PaddedCollator

    lengths = [len(s["input_ids"]) for s in data]
    if variant in ("padded", "padded-grouped"):
        order = list(range(len(data)))
        random.Random(1).shuffle(order)
        if variant == "padded-grouped":
            order.sort(key=lengths.__getitem__)
        collate = PaddedCollator(pad_token_id=0)
        padded = [collate([data[i] for i in order[k : k + batch_size]]) for k in range(0, len(order), batch_size)]
        return [[b] for b in padded], [int(b["attention_mask"].sum()) for b in padded]
    if variant == "dense-limit":
        flat = torch.tensor([t for s in data for t in s["input_ids"]])
        full = [flat[k : k + rows][None] for k in range(0, len(flat) - rows + 1, rows)]
        return [[{"input_ids": row, "labels": row.clone()}] for row in full], [rows] * len(full)
    real = [sum(lengths[i] for i in b) for b in bins]
    if variant == "unpadded":
        alone = PaddedCollator(pad_token_id=0, pad_to_multiple_of=None)
        return [[alone([data[i]]) for i in b] for b in bins], real
    collate_packed = PackedCollator(pad_token_id=0, pad_to_multiple_of=64)
    return [[collate_packed([data[i] for i in b])] for b in bins], real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="8192,16384,32768", help="tokens per packed row, comma-separated")
    parser.add_argument("--size", choices=sorted(SIZES), default="300m", help="model size (tiny: CPU smoke test)")
    parser.add_argument("--variants", help=f"comma-separated, of {', '.join(DEFAULT_VARIANTS + EXTRA_VARIANTS)}")
    parser.add_argument("--rows-of-data", type=int, default=24, help="samples per row length, in rows' worth")
    parser.add_argument("--long-share", type=float, default=0.15, help="share of long-output samples")
    parser.add_argument("--batch-size", type=int, default=4, help="samples per padded batch")
    parser.add_argument("--cell-seconds", type=float, default=6.0, help="timed seconds per variant and row length")
    parser.add_argument("--budget-s", type=float, default=270.0, help="start no measurement after this many seconds")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    began = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and args.size != "tiny":
        raise SystemExit("no CUDA GPU here: use --size tiny to smoke-test this script on the CPU")
    row_lengths = [int(r) for r in args.rows.split(",")]
    names = [v.strip() for v in args.variants.split(",")] if args.variants else list(DEFAULT_VARIANTS)
    unknown = sorted(set(names) - set(DEFAULT_VARIANTS + EXTRA_VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {DEFAULT_VARIANTS + EXTRA_VARIANTS}")

    import transformers
    from lw_train import pack, pack_fill

    model = llama(args.size, torch.bfloat16, device)
    model.train()
    switch = attention_switch(device)
    n_params = sum(p.numel() for p in model.parameters())
    device_name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"{device_name}, torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"random Llama {n_params / 1e6:.0f} M params, bf16, fused AdamW, sequence loss")
    print("command: python " + " ".join(sys.argv), flush=True)

    cells: list[Cell] = []
    gaps: dict[str, dict[str, float]] = {}
    for rows in row_lengths:
        data = samples(args.rows_of_data * rows, args.long_share, rows // 2, model.config.vocab_size, seed=rows)
        lengths = [len(s["input_ids"]) for s in data]
        bins = pack(lengths, rows)
        print(
            f"\n{rows:,}-token rows: {len(data)} samples, {sum(lengths):,} tokens (longest {max(lengths):,}), "
            f"{len(bins)} bins, fill {pack_fill(bins, lengths, rows):.2%}"
        )
        print(f"{'variant':<17}{'steps':>7}{'real':>8}{'tokens/s':>12}{'peak GiB':>10}", flush=True)
        gaps[str(rows)] = {}
        for name in names:
            cell = Cell(rows, name)
            cells.append(cell)
            attention = PACKED_ATTENTION.get(name, "sdpa")
            how = switch[attention]
            if time.perf_counter() - began > args.budget_s:
                cell.skipped = f"time budget ({args.budget_s:.0f} s) spent"
            elif isinstance(how, str):
                cell.skipped = how
            else:
                how(model)
                steps, real = batches(name, data, bins, rows, args.batch_size)
                try:
                    measure(model, steps, real, device, cell, args.cell_seconds)
                    if name in PACKED_ATTENTION:
                        gaps[str(rows)][attention] = isolation_gap(model, data, bins[0], device)
                except torch.OutOfMemoryError:
                    cell.skipped = "out of memory"
                del steps
                gc.collect()
                if device == "cuda":
                    torch.cuda.empty_cache()
            print(f"{name:<17}  skipped: {cell.skipped}" if cell.skipped else row(cell), flush=True)
        model.set_attn_implementation("sdpa")
        if gaps[str(rows)]:
            print(
                "packed - alone, sequence loss (bf16): " + ", ".join(f"{a} {g:.2e}" for a, g in gaps[str(rows)].items())
            )

    report(cells, row_lengths, names)
    print(f"\nwall time {time.perf_counter() - began:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {
            "device": device_name,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "params": n_params,
            "command": sys.argv,
            "cells": [asdict(c) | {"tokens_per_s": c.tokens_per_s} for c in cells],
            "packed_minus_alone_loss": gaps,
        }
        args.json.write_text(json.dumps(figures, indent=1))


def label(rows: int) -> str:
    return f"{rows // 1024}k" if rows % 1024 == 0 else f"{rows:,}"


def row(cell: Cell) -> str:
    peak = f"{cell.peak_gib:.1f}" if cell.peak_gib is not None else "-"
    return f"{cell.variant:<17}{cell.steps:>7}{cell.tokens / cell.positions:>8.1%}{cell.tokens_per_s:>12,.0f}{peak:>10}"


def report(cells: list[Cell], row_lengths: list[int], names: list[str]) -> None:
    """A markdown table (tokens/s, x padded, share of the dense limit, peak GiB) and the figures for auto's rule."""
    rate = {(c.rows, c.variant): c for c in cells if c.tokens_per_s}
    print("\n| row | variant | tokens/s | x padded | of the dense limit | peak GiB |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for rows in row_lengths:
        padded, dense = rate.get((rows, "padded")), rate.get((rows, "dense-limit"))
        for name in names:
            cell = rate.get((rows, name))
            if cell is None or cell.tokens_per_s is None:
                skipped = next((c.skipped for c in cells if (c.rows, c.variant) == (rows, name)), None)
                print(f"| {label(rows)} | {name} | {skipped or '–'} | | | |")
                continue
            times_padded = f"{cell.tokens_per_s / padded.tokens_per_s:.2f}x" if padded and padded.tokens_per_s else "–"
            of_dense = f"{cell.tokens_per_s / dense.tokens_per_s:.1%}" if dense and dense.tokens_per_s else "–"
            peak = f"{cell.peak_gib:.1f}" if cell.peak_gib is not None else "–"
            print(f"| {label(rows)} | {name} | {cell.tokens_per_s:,.0f} | {times_padded} | {of_dense} | {peak} |")
    for rows in row_lengths:
        sdpa = rate.get((rows, "packed-sdpa"))
        speeds = {
            attention: round(cell.tokens_per_s / sdpa.tokens_per_s, 2)
            for variant, attention in PACKED_ATTENTION.items()
            if sdpa and sdpa.tokens_per_s and (cell := rate.get((rows, variant))) and cell.tokens_per_s
        }
        if speeds:
            print(f"{label(rows)} rows, speed vs packed-sdpa (lw_train.sft._CUDA_SPEED_VS_MASKED_SDPA): {speeds}")


if __name__ == "__main__":
    main()
