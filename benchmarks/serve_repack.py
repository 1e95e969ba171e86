"""What llama.cpp's weight repacking costs and gives on this CPU, and what ``repack="auto"`` costs at start-up.

Two measurements, in one run, on the embedded model (Q4_1 GGUF):

1. Start-up (seconds until ``/health`` answers 200), median of ``--repeats`` starts each:
   ``off`` (``--no-repack``: what ``LLAMA_ARG_REPACK=0`` gives), ``on`` (llama.cpp's default, what lw-serve did
   before ``repack``), ``auto, nothing recorded`` (a fresh ``$LW_HOME``: on a CPU whose repacking faults this is a
   crash and a second start) and ``auto, fault recorded`` (every later start). Ratios against ``off``.
2. Decode tokens/s at 1 and 4 streams (greedy, ``--max-tokens`` per request) with repacking on and off, and the
   ratio on/off. Where repacking kills the server, the row says so instead.

    python benchmarks/serve_repack.py [--repeats 5] [--max-tokens 128] [--out runs/bench/serve_repack.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from lw_serve import EMBEDDED_MODEL, LlamaCppBackend, Server, ServerError, resolve_model
from lw_serve.bench import measure_client
from lw_serve.cpu import cpu_info


def _start_seconds(backend: LlamaCppBackend, repeats: int, fresh_home_each: bool) -> list[float] | str:
    """Seconds to healthy per start; a fresh ``$LW_HOME`` per start when asked (nothing recorded yet)."""
    model = resolve_model(EMBEDDED_MODEL)
    times = []
    for _ in range(repeats):
        home = tempfile.mkdtemp(prefix="lw-repack-") if fresh_home_each else os.environ["LW_HOME"]
        previous, os.environ["LW_HOME"] = os.environ["LW_HOME"], home
        try:
            started = time.perf_counter()
            with Server(model, backend):
                times.append(time.perf_counter() - started)
        except ServerError as exc:
            return str(exc).splitlines()[0]
        finally:
            os.environ["LW_HOME"] = previous
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--streams", default="1,4")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/serve_repack.json"))
    args = parser.parse_args()
    info = cpu_info()
    print(f"CPU: {info.model}; kernel flags: {', '.join(info.kernel_flags)}", flush=True)
    os.environ["LW_HOME"] = tempfile.mkdtemp(prefix="lw-repack-home-")
    figures: dict[str, object] = {"cpu": info.model, "flags": info.kernel_flags}

    # 1. start-up
    starts: dict[str, list[float] | str] = {}
    starts["off"] = _start_seconds(LlamaCppBackend(repack="off"), args.repeats, fresh_home_each=False)
    starts["on"] = _start_seconds(LlamaCppBackend(repack="on"), args.repeats, fresh_home_each=False)
    starts["auto, nothing recorded"] = _start_seconds(LlamaCppBackend(), args.repeats, fresh_home_each=True)
    _start_seconds(LlamaCppBackend(), 1, fresh_home_each=False)  # records the fault here, if there is one
    starts["auto, fault recorded"] = _start_seconds(LlamaCppBackend(), args.repeats, fresh_home_each=False)
    base = starts["off"]
    print("\nstart-up (s to healthy, median)  ratio vs off", flush=True)
    for label, times in starts.items():
        if isinstance(times, str):
            print(f"  {label:<26} {times}")
            continue
        median = statistics.median(times)
        ratio = median / statistics.median(base) if isinstance(base, list) else float("nan")
        print(f"  {label:<26} {median:6.2f}  {ratio:5.2f}x   (runs: {', '.join(f'{t:.2f}' for t in times)})")
    figures["startup_s"] = starts

    # 2. decode throughput
    counts = [int(n) for n in args.streams.split(",")]
    rates: dict[str, dict[int, float] | str] = {}
    for mode in ("off", "on"):
        backend = LlamaCppBackend(repack=mode, parallel=max(counts))  # type: ignore[arg-type]
        try:
            with Server(EMBEDDED_MODEL, backend) as server:
                rates[mode] = {}
                for n in counts:
                    result = asyncio.run(measure_client(server.client, f"repack {mode}", n, args.max_tokens))
                    rates[mode][n] = result.aggregate  # type: ignore[index]
        except ServerError as exc:
            rates[mode] = str(exc).splitlines()[0]
    print("\ndecode, aggregate tok/s", flush=True)
    for n in counts:
        off, on = rates["off"], rates["on"]
        off_n = off[n] if isinstance(off, dict) else None
        on_n = on[n] if isinstance(on, dict) else None
        shown_on = f"{on_n:7.1f}" if on_n is not None else f"  {on}"
        ratio = f"{on_n / off_n:5.2f}x" if on_n and off_n else "   -  "
        print(f"  streams={n}: repack off {off_n or float('nan'):7.1f}  repack on {shown_on}  on/off {ratio}")
    figures["decode_tok_s"] = rates
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2, default=str))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
