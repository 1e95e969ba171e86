"""Train on several processes: ``accelerate launch -m lw_train sft|dpo`` from Python, waited for, resumable.

:func:`launch` writes the resolved config and an accelerate config into ``output_dir/launch/`` and runs
``accelerate launch`` with one process per GPU: plain data parallel (``ddp``), DeepSpeed ZeRO-3 with THUDM/LongWriter's
``train/ds_config/stage3.json`` (``deepspeed-zero3``: parameters and optimizer offloaded to the CPU, what its
scripts use for 8-9B models at 32k tokens on 8 GPUs) or FSDP2 (``fsdp2``). The processes' output goes to
``launch.log`` (and to ``echo``); a failed launch raises :class:`TrainError` with its exit status or signal and the
log's tail. The launcher runs in its own process group, is stopped with it on an exception or Ctrl-C, and is told to
die with this process (Linux ``PR_SET_PDEATHSIG``), so a killed parent leaves no training processes behind. Launch
the same config again with ``resume = true`` and it continues from the last finished checkpoint.

The multi-process run itself is ``train_sft``/``train_dpo`` in every rank: its loss uses the step's global counts,
so the result does not depend on the number of processes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from lw_core import atomic_write
from lw_core.process import die_with_parent

from ._run import TrainResult
from .config import DPOConfig, SFTConfig
from .errors import ConfigError, TrainError

__all__ = ["DISTRIBUTED", "ZERO3", "Distributed", "accelerate_config", "launch"]

Distributed = Literal["ddp", "deepspeed-zero3", "fsdp2"]
DISTRIBUTED: tuple[str, ...] = ("ddp", "deepspeed-zero3", "fsdp2")

#: THUDM/LongWriter's ``train/ds_config/stage3.json`` (commit 3fcfdff), with its fractional sizes (``1e9``,
#: ``1e8``) written as integers: deepspeed >= 0.15 rejects the floats (the original pins deepspeed 0.14.4).
ZERO3: dict[str, Any] = {
    "bf16": {"enabled": "auto"},
    "fp16": {
        "enabled": "auto",
        "loss_scale": 0,
        "loss_scale_window": 1000,
        "initial_scale_power": 16,
        "hysteresis": 2,
        "min_loss_scale": 1,
    },
    "checkpoint": {"use_node_local_storage": True},
    "zero_optimization": {
        "stage": 3,
        "offload_optimizer": {"device": "cpu", "pin_memory": True},
        "offload_param": {"device": "cpu", "pin_memory": True},
        "overlap_comm": True,
        "contiguous_gradients": True,
        "sub_group_size": 1_000_000_000,
        "reduce_bucket_size": "auto",
        "stage3_prefetch_bucket_size": "auto",
        "stage3_param_persistence_threshold": "auto",
        "stage3_max_live_parameters": 100_000_000,
        "stage3_max_reuse_distance": 100_000_000,
        "stage3_gather_16bit_weights_on_model_save": True,
    },
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "steps_per_print": 100,
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "wall_clock_breakdown": False,
}
_MIXED_PRECISION = {"bfloat16": "bf16", "float16": "fp16"}
_TAIL_LINES = 40


def accelerate_config(distributed: Distributed, processes: int, dtype: str, folder: Path) -> Path:
    """Write ``accelerate.yaml`` (and ``zero3.json`` for DeepSpeed) into ``folder`` for one machine; its path.

    >>> import tempfile, yaml
    >>> path = accelerate_config("fsdp2", 8, "bfloat16", Path(tempfile.mkdtemp()))
    >>> settings = yaml.safe_load(path.read_text())
    >>> settings["distributed_type"], settings["num_processes"], settings["fsdp_config"]["fsdp_version"]
    ('FSDP', 8, 2)
    """
    import yaml  # type: ignore[import-untyped]

    if distributed not in DISTRIBUTED:
        raise ConfigError(f"unknown distributed setting {distributed!r}: use one of {', '.join(DISTRIBUTED)}")
    settings: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU" if processes > 1 else "NO",
        "mixed_precision": _MIXED_PRECISION.get(dtype, "no"),
        "num_machines": 1,
        "num_processes": processes,
        "machine_rank": 0,
        "main_training_function": "main",
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": False,
    }
    if distributed == "deepspeed-zero3":
        zero3 = folder / "zero3.json"
        atomic_write(zero3, json.dumps(ZERO3, indent=2) + "\n")
        settings["distributed_type"] = "DEEPSPEED"
        settings["deepspeed_config"] = {"deepspeed_config_file": str(zero3.resolve()), "zero3_init_flag": True}
        del settings["mixed_precision"]  # the DeepSpeed file's "auto" takes it from the training arguments
    elif distributed == "fsdp2":
        settings["distributed_type"] = "FSDP"
        settings["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # one unit per decoder layer (_no_split_modules)
            "fsdp_reshard_after_forward": True,
            "fsdp_cpu_ram_efficient_loading": True,  # rank 0 loads the weights, the others receive shards
            "fsdp_offload_params": False,
            "fsdp_state_dict_type": "FULL_STATE_DICT",  # the final output_dir stays a plain HF folder
            "fsdp_activation_checkpointing": False,  # gradient_checkpointing in the config does it once
        }
    path = folder / "accelerate.yaml"
    atomic_write(path, yaml.safe_dump(settings, sort_keys=False))
    return path


def launch(
    command: Literal["sft", "dpo"],
    config: SFTConfig | DPOConfig,
    *,
    processes: int,
    distributed: Distributed = "ddp",
    echo: Callable[[str], None] | None = None,
    env: Mapping[str, str] | None = None,
) -> TrainResult:
    """Run ``lw-train <command>`` on ``processes`` processes with ``accelerate launch``; the result of rank 0.

    ``echo`` receives every output line of the processes (default: this process's stderr); ``env`` replaces the
    environment they inherit. The returned :class:`TrainResult` has the summary and the folder, not the model
    (it lives in the child processes): load it from ``output_dir``.
    """
    expected = SFTConfig if command == "sft" else DPOConfig
    if not isinstance(config, expected):
        raise ConfigError(f"lw-train {command} takes a {expected.__name__}, got a {type(config).__name__}")
    if processes < 1:
        raise ConfigError(f"processes must be >= 1, got {processes}")
    if distributed == "deepspeed-zero3" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            "distributed = 'deepspeed-zero3' needs DeepSpeed on this machine: pip install deepspeed (or use "
            "distributed = 'fsdp2', which needs nothing more)"
        )
    folder = config.output_dir / "launch"
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / f"{command}-config.json"
    atomic_write(config_file, json.dumps(config.resolved(), indent=2) + "\n")
    accelerate_file = accelerate_config(distributed, processes, config.dtype, folder)
    argv = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_file),
        "--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port()),
        "-m", "lw_train", command, "--config", str(config_file),
    ]  # fmt: skip
    environment = dict(os.environ if env is None else env)
    environment.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one machine: gloo (CPU ranks) binds the loopback device
    environment.setdefault("PYTHONUNBUFFERED", "1")
    returncode, tail = _run(argv, environment, folder / "launch.log", echo or _to_stderr)
    if returncode != 0:
        raise TrainError(
            f"accelerate launch of lw-train {command} on {processes} process{'es' if processes > 1 else ''} "
            f"({distributed}) {_ended(returncode)}; the last lines of {folder / 'launch.log'}:\n{tail}\n"
            f"fix the cause and launch again with resume = true: it continues from the last finished checkpoint in "
            f"{config.output_dir / 'checkpoints'}"
        )
    summary_file = config.output_dir / "summary.json"
    if not summary_file.is_file():
        raise TrainError(f"accelerate launch of lw-train {command} ended without {summary_file}; see {folder}")
    return TrainResult(config.output_dir, json.loads(summary_file.read_text(encoding="utf-8")))


def _run(argv: list[str], env: dict[str, str], log_path: Path, echo: Callable[[str], None]) -> tuple[int, str]:
    """Run the launcher in its own process group, copying its output to ``log_path`` and ``echo``."""
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
        start_new_session=True, preexec_fn=die_with_parent(),
    )  # fmt: skip
    try:
        with log_path.open("a", encoding="utf-8") as log:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                log.flush()
                tail.append(line.rstrip("\n"))
                echo(line.rstrip("\n"))
        return process.wait(), "\n".join(tail)
    except BaseException:
        _stop(process)
        raise


def _stop(process: subprocess.Popen[str], grace_s: float = 20.0) -> None:
    """SIGTERM to the launcher's whole group (torchrun passes it to the ranks), SIGKILL after ``grace_s``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _ended(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _free_port() -> int:
    """A loopback port nobody listens on now: the rendezvous port (accelerate's fixed 29500 may be taken)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
