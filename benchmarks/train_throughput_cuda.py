"""GPU training throughput of packed rows against padded batches and the dense-row ceiling (random-init Llama, bf16).

Same samples, same trained tokens, same loss code (lw_train.model_loss, sequence reduction), one fused AdamW step
per batch; only the batching differs:

- padded            PaddedCollator, --batch-size samples per batch in shuffled order (the usual baseline)
- padded-grouped    the same, samples sorted by length first (like ``group_by_length``)
- packed-sdpa       PackedCollator on best-fit bins of --bin-tokens; sdpa with the block-diagonal mask transformers
                    derives from restarting position_ids
- packed-segments   the same bins with lw_train.segment_attention (causal sdpa per sample: flash kernels, no mask)
- unpadded          each sample of a bin alone (no padding, no packing; gradients accumulated, one step per bin):
                    exactly the compute the samples need, in many small kernels
- dense-limit       the same number of tokens as full --bin-tokens rows of one sequence each, plain causal attention:
                    no padding and no sample boundaries, the ceiling any batching scheme can reach at this row length

It also checks, on the GPU and in bf16, that the packed sequence loss of the first bin equals the mean of its samples'
losses computed alone.

    python benchmarks/train_throughput_cuda.py [--samples 384] [--bin-tokens 16384] [--params 300m]
"""

from __future__ import annotations

import argparse
import random
import time

import torch

SIZES = {  # hidden, intermediate, layers, heads, kv heads (vocab 32000, tied embeddings)
    "300m": (1024, 2816, 24, 16, 8),
    "1b": (2048, 5632, 16, 32, 8),
    "tiny": (128, 256, 2, 4, 2),
}


def llama(size: str, dtype: torch.dtype, device: str):
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


def samples(n: int, long_share: float, long_max: int, vocab: int, seed: int = 0) -> list[dict[str, list[int]]]:
    """A LongWriter-like mix: general chats (lognormal, ~300 tokens) and long-output samples (long_max/4..long_max)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if rng.random() < long_share:
            length = rng.randint(long_max // 4, long_max)
        else:
            length = int(min(4096, long_max, max(32, rng.lognormvariate(5.7, 0.8))))
        ids = [rng.randrange(vocab) for _ in range(length)]
        prompt = min(length // 4, 256)
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def to_device(batch: dict, device: str) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run(model, steps: list[list[dict]], device: str, warmup: int = 2) -> tuple[float, float]:
    """Seconds for one pass over ``steps`` (lists of micro-batches, one optimizer step each; after ``warmup``
    untimed steps) and peak GiB allocated."""
    from lw_train import TargetCounts, count_targets, model_loss

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)

    def step(micro_batches: list[dict]) -> None:
        counts = sum((count_targets(b) for b in micro_batches), TargetCounts())
        for batch in micro_batches:
            model_loss(model, to_device(batch, device), reduction="sequence", global_counts=counts).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for micro_batches in steps[:warmup]:
        step(micro_batches)
    sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for micro_batches in steps:
        step(micro_batches)
    sync(device)
    seconds = time.perf_counter() - start
    return seconds, torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")


def isolation_check(model, data: list[dict], bins: list[list[int]], device: str) -> float:
    """|packed sequence loss - mean of the samples' losses alone| for the first bin, in the model's dtype."""
    import torch.nn.functional as F
    from lw_train import PackedCollator, model_loss

    members = [data[i] for i in bins[0]][:8]
    model.eval()
    with torch.no_grad():
        packed = model_loss(model, to_device(PackedCollator()(members), device), reduction="sequence").float()
        alone = []
        for sample in members:
            logits = model(torch.tensor([sample["input_ids"]], device=device), use_cache=False).logits[0].float()
            alone.append(F.cross_entropy(logits[:-1], torch.tensor(sample["labels"][1:], device=device)))
    model.train()
    return float((packed - torch.stack(alone).mean()).abs())


def main() -> None:
    from lw_train import PackedCollator, PaddedCollator, count_targets, pack, pack_fill, use_segment_attention

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=384)
    parser.add_argument("--long-share", type=float, default=0.15, help="share of long-output samples")
    parser.add_argument("--long-max", type=int, default=8192, help="longest sample in tokens")
    parser.add_argument("--bin-tokens", type=int, default=16_384)
    parser.add_argument("--batch-size", type=int, default=4, help="samples per padded batch")
    parser.add_argument("--params", choices=sorted(SIZES), default="300m")
    parser.add_argument("--variants", help="comma-separated subset of the variants to run (default: all)")
    parser.add_argument("--device", default="cuda", help="cpu only to smoke-test this script (--params tiny)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA GPU; benchmarks/train_throughput.py is the CPU one")

    model = llama(args.params, torch.bfloat16, args.device)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    data = samples(args.samples, args.long_share, args.long_max, model.config.vocab_size)
    lengths = [len(s["input_ids"]) for s in data]
    total = sum(lengths)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(f"{device_name}, torch {torch.__version__}, random Llama {n_params / 1e6:.0f} M params, bf16")
    print(f"{len(data)} samples, {total:,} tokens (longest {max(lengths):,}), {args.long_share:.0%} long")

    order = list(range(len(data)))
    random.Random(1).shuffle(order)
    by_length = sorted(order, key=lengths.__getitem__)

    def padded(indices: list[int]) -> list[dict]:
        collate = PaddedCollator(pad_token_id=0)
        return [
            collate([data[i] for i in indices[k : k + args.batch_size]])
            for k in range(0, len(indices), args.batch_size)
        ]

    bins = pack(lengths, args.bin_tokens)
    packed = [PackedCollator(pad_token_id=0, pad_to_multiple_of=64)([data[i] for i in b]) for b in bins]
    flat = [t for s in data for t in s["input_ids"]]
    dense = []
    for k in range(0, len(flat) - args.bin_tokens + 1, args.bin_tokens):
        row = torch.tensor(flat[k : k + args.bin_tokens])[None]
        dense.append({"input_ids": row, "labels": row.clone()})

    trained = sum(count_targets(b).tokens for b in packed)
    alone = PaddedCollator(pad_token_id=0, pad_to_multiple_of=None)
    variants: list[tuple[str, list[list[dict]], str]] = [
        ("padded", [[b] for b in padded(order)], "sdpa"),
        ("padded-grouped", [[b] for b in padded(by_length)], "sdpa"),
        ("unpadded", [[alone([data[i]]) for i in b] for b in bins], "sdpa"),
        ("packed-sdpa", [[b] for b in packed], "sdpa"),
        ("packed-segments", [[b] for b in packed], "segments"),
        ("dense-limit", [[b] for b in dense], "sdpa"),
    ]
    print(f"packed: {len(bins)} bins of <= {args.bin_tokens:,}, fill {pack_fill(bins, lengths, args.bin_tokens):.2%}")
    gap = isolation_check(model, data, bins, args.device)
    print(f"isolation (bf16, sdpa): |packed - alone| sequence loss = {gap:.2e}")

    if args.variants:
        wanted = {v.strip() for v in args.variants.split(",")}
        variants = [v for v in variants if v[0] in wanted]
    results: dict[str, float] = {}
    print(f"{'variant':<18}{'steps':>8}{'positions':>12}{'real':>7}{'tokens/s':>12}{'trained/s':>12}{'peak GiB':>10}")
    for name, steps, attn in variants:
        if attn == "segments":
            use_segment_attention(model)
        else:
            model.set_attn_implementation("sdpa")
        micro = [b for step in steps for b in step]
        positions = sum(b["input_ids"].numel() for b in micro)
        tokens = positions if name == "dense-limit" else total
        trained_here = sum(count_targets(b).tokens for b in micro)
        if name != "dense-limit":
            assert trained_here == trained, (name, trained_here, trained)
        seconds, peak = run(model, steps, args.device)
        results[name] = tokens / seconds
        print(
            f"{name:<18}{len(steps):>8}{positions:>12,}{tokens / positions:>7.1%}{tokens / seconds:>12,.0f}"
            f"{trained_here / seconds:>12,.0f}{peak:>10.1f}"
        )
    base_name = next(iter(results))
    base = results[base_name]
    print("real tokens/s ratios:")
    for name, rate in results.items():
        limit = results.get("dense-limit")
        share = f"{rate / limit:6.1%} of the dense limit" if limit else ""
        print(f"  {name:<18} {rate / base:5.2f}x {base_name}   {share}")


if __name__ == "__main__":
    main()
