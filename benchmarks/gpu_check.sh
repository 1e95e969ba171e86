#!/usr/bin/env bash
# lw-train's GPU checks in one command on a lent GPU machine: the packed-row throughput by attention path
# (benchmarks/train_throughput_cuda.py: padded, packed sdpa/flex/varlen and the dense limit at 8k, 16k and 32k rows),
# then the `gpu` tests (tests/lw_train/test_cuda.py). About 8 minutes on an H200.
#
# The GPU image (torch 2.11 CUDA, transformers 5.17, accelerate, peft, pytest) reaches no registry and lacks some of
# what lw-core and lw-train import, so the run takes wheels made beforehand on a machine that has one:
#
#   here, in the workspace:  hatch run bash benchmarks/gpu_check.sh prepare
#       wheels into runs/gpu-wheels/ (git-ignored, ~6 MB): lw-core's and lw-train's (for their metadata; the code
#       runs from the tree) and the third-party ones below, for CPython 3.12 on x86-64 Linux
#   there, from the repository root, carrying runs/gpu-wheels:  bash benchmarks/gpu_check.sh run [benchmark args]
#       installs the wheels the machine lacks into /tmp/lw-gpu-site, then measures and tests; the log, the figures
#       (JSON) and the test report go to $OUT (else runs/gpu-check/). `bench [args]` or `tests` runs one of the two.
#
# The benchmark starts no measurement after 270 s and each stage has a hard limit (360 s, 220 s), so `run` ends
# within 10 minutes even if something hangs (a device call: timeout_s 600).
set -euo pipefail

WHEELS=runs/gpu-wheels
# What `import lw_train` (lw-core: pydantic, openai, platformdirs) and pytest need beyond the GPU image's packages
# as listed on 2026-11-17; `run` installs only those the machine lacks.
THIRD_PARTY=(pydantic pydantic-core annotated-types typing-inspection openai distro jiter sniffio platformdirs
    pytest pluggy iniconfig)

prepare() {
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    python -m pip wheel -q --no-deps packages/lw-core packages/lw-train -w "$WHEELS"
    local pins
    pins=$(python -c 'import importlib.metadata as m, sys
print(" ".join(n + "==" + m.version(n) for n in sys.argv[1:]))' "${THIRD_PARTY[@]}")
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEELS" $pins
    ls "$WHEELS"
    du -sh "$WHEELS"
}

install() {
    if ! compgen -G "$WHEELS/lw_train-*.whl" >/dev/null; then
        echo "no $WHEELS here: run 'hatch run bash benchmarks/gpu_check.sh prepare' on a machine with a registry" \
            "and carry $WHEELS" >&2
        return 1
    fi
    local site=${TMPDIR:-/tmp}/lw-gpu-site wanted=() wheel name
    for wheel in "$WHEELS"/*.whl; do
        name=$(basename "$wheel" | cut -d- -f1)
        if [[ $name == lw_* ]] || ! python3 -m pip show -q "$name" >/dev/null 2>&1; then
            wanted+=("$wheel")
        fi
    done
    echo "installing into $site: ${wanted[*]##*/}"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "${wanted[@]}"
    export PYTHONPATH="$PWD/packages/lw-core/src:$PWD/packages/lw-train/src:$site" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
    nvidia-smi -L || true
    python3 -c 'import sys, torch, transformers, lw_train
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"lw-train {lw_train.__version__}, cuda {torch.cuda.is_available()}")'
}

bench() {
    local status=0
    timeout 360 python3 benchmarks/train_throughput_cuda.py --budget-s 270 --cell-seconds 6 \
        --json "$OUT/train_throughput_cuda.json" "$@" || status=$?
    [[ $status == 0 ]] || echo "benchmark: exit $status"
    return $status
}

gpu_tests() {
    local status=0
    timeout 220 python3 -m pytest tests/lw_train/test_cuda.py -m gpu -v -p no:cacheprovider \
        --junitxml "$OUT/gpu_tests.xml" || status=$?
    [[ $status == 0 ]] || echo "gpu tests: exit $status"
    return $status
}

both() {  # the tests run even when the benchmark fails, and either failure fails the run
    local failed=0
    bench "$@" || failed=1
    gpu_tests || failed=1
    return $failed
}

what=${1:-}
[[ $# -gt 0 ]] && shift
export OUT=${OUT:-runs/gpu-check}
case $what in
    prepare) prepare ;;
    run) mkdir -p "$OUT" && { install && both "$@"; } 2>&1 | tee "$OUT/gpu_check.log" ;;
    bench) mkdir -p "$OUT" && { install && bench "$@"; } 2>&1 | tee "$OUT/bench.log" ;;
    tests) mkdir -p "$OUT" && { install && gpu_tests; } 2>&1 | tee "$OUT/gpu_tests.log" ;;
    *)
        echo "usage: bash benchmarks/gpu_check.sh prepare | run [benchmark args] | bench [benchmark args] | tests" >&2
        exit 2
        ;;
esac
