"""train_sft on a tiny random model: it learns, checkpoints, resumes after SIGKILL to the same weights, splits a
step over ranks exactly, and rejects bad input with one clear line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lw_train import ConfigError, SFTConfig, train_sft
from lw_train.sft import StepShuffledSampler
from safetensors.torch import load_file


def _config(model: Path, data: Path, out: Path, **settings) -> SFTConfig:
    values = {
        "model": str(model), "data": str(data), "output_dir": str(out), "max_tokens": 384, "epochs": 3,
        "learning_rate": 3e-3, "warmup_ratio": 0.0, "save_steps": 4, **settings,
    }  # fmt: skip
    return SFTConfig.validated(values)


@pytest.mark.parametrize(("packing", "reduction"), [("bfd", "sequence"), ("nextfit", "longwriter")])
def test_sft_learns_checkpoints_and_writes_a_model_transformers_loads(tiny_run, tmp_path, packing, reduction):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_folder, data = tiny_run
    out = tmp_path / "out"
    result = train_sft(_config(model_folder, data, out, packing=packing, loss_reduction=reduction), progress=False)
    summary = result.summary
    losses = [entry["loss"] for entry in summary["losses"]]
    assert len(losses) == summary["steps"] == summary["bins"] * 3
    assert sum(losses[-3:]) < sum(losses[:3]), losses
    assert summary["samples"] == 16 and summary["dropped_overlong"] == 0
    assert summary["trained_tokens"] > 0 and summary["trained_tokens"] % 3 == 0  # the same tokens each epoch
    assert 0 < summary["pack_fill"] <= 1 and summary["tokens_per_s"] > 0 and summary["peak_memory_mib"] > 0
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged if "loss" in e] == list(range(1, summary["steps"] + 1))

    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert checkpoints and all((c / "lw-complete").is_file() for c in checkpoints)
    saved_config = json.loads((out / "checkpoints" / "lw-train-config.json").read_text())
    assert saved_config["packing"] == packing and saved_config["loss_reduction"] == reduction

    loaded = AutoModelForCausalLM.from_pretrained(out)
    assert loaded.config.use_cache and loaded.config._attn_implementation != "lw_segments"
    trained = result.model.state_dict()
    assert all(torch.equal(value, trained[name]) for name, value in loaded.state_dict().items())
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    assert loaded.generate(torch.tensor([prompt["input_ids"]]), max_new_tokens=3).shape[1] > 0


def test_lora_saves_a_merged_model_and_the_adapter_and_reports_eval_loss(tiny_run, tmp_path):
    from transformers import AutoModelForCausalLM

    model_folder, data = tiny_run
    out = tmp_path / "out"
    config = _config(model_folder, data, out, epochs=1, eval_fraction=0.25, lora={"r": 4, "alpha": 8})
    result = train_sft(config, progress=False)
    assert result.summary["eval_samples"] == 4 and result.summary["eval_loss"] > 0
    assert (out / "adapter" / "adapter_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(model_folder)
    changed = [n for n, p in merged.state_dict().items() if not torch.equal(p, base.state_dict()[n])]
    assert changed and all("proj" in n for n in changed)  # LoRA touched the linear layers only


def test_steps_are_shuffled_whole_per_epoch_and_replayed_identically():
    sampler = StepShuffledSampler(12, step_bins=3, seed=5)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(first) == sorted(second) == list(range(12)) and first != second
    assert all(first[i] // 3 == first[i + 1] // 3 and first[i] + 1 == first[i + 1] for i in (0, 3, 6, 9))
    again = StepShuffledSampler(12, step_bins=3, seed=5)
    again.set_epoch(1)
    assert list(again) == second


def _script_run(config_path: Path, *overrides: str) -> subprocess.Popen[bytes]:
    code = "import sys; from lw_train.cli import app; sys.exit(app())"
    command = [sys.executable, "-c", code, "sft", "--config", str(config_path), *[f"--set={o}" for o in overrides]]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_ends_with_the_weights_of_an_uninterrupted_run(tiny_run, tmp_path):
    model_folder, data = tiny_run
    config_path = tmp_path / "sft.toml"
    config_path.write_text(
        f'model = "{model_folder}"\ndata = "{data}"\nmax_tokens = 384\nepochs = 8\nlearning_rate = 3e-3\n'
        "save_steps = 4\nthreads = 1\n"
    )
    whole = _script_run(config_path, f"output_dir={tmp_path / 'whole'}")
    killed = _script_run(config_path, f"output_dir={tmp_path / 'killed'}")
    marker = tmp_path / "killed" / "checkpoints" / "checkpoint-12" / "lw-complete"  # in the second epoch
    deadline = time.monotonic() + 300
    while not marker.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(killed.pid, signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "killed" / "summary.json").exists()
    assert whole.wait() == 0, whole.stderr.read().decode() if whole.stderr else ""

    resumed = _script_run(config_path, f"output_dir={tmp_path / 'killed'}", "resume=true")
    assert resumed.wait() == 0, resumed.stderr.read().decode() if resumed.stderr else ""
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["resumed_from"] is not None and int(summary["resumed_from"].split("-")[1]) >= 12
    expected, got = _weights(tmp_path / "whole"), _weights(tmp_path / "killed")
    assert expected.keys() == got.keys()
    assert max((expected[k] - got[k]).abs().max().item() for k in expected) <= 1e-6
    whole_losses = json.loads((tmp_path / "whole" / "summary.json").read_text())["losses"]
    assert whole_losses[-1]["step"] == summary["steps"]


DDP_SCRIPT = """
import json, sys
from transformers import TrainerCallback
from lw_train import SFTConfig, train_sft

class RankLosses(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            entry = {"rank": args.process_index, "step": state.global_step, "loss": logs["loss"]}
            with open(sys.argv[2], "a") as out:
                out.write(json.dumps(entry) + "\\n")

train_sft(SFTConfig.from_file(sys.argv[1], sys.argv[3:]), callbacks=[RankLosses()], progress=False)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(command: list[str], env: dict[str, str]) -> None:
    """Run a training process; a failure shows the process's own output, not only its exit status."""
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"


@pytest.mark.slow
def test_two_ranks_log_the_loss_of_one_process_accumulating_the_same_global_batch(tiny_run, tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo) vs 1 process with 2 accumulation steps: same bins per step."""
    model_folder, data = tiny_run
    script, config_path = tmp_path / "train.py", tmp_path / "sft.toml"
    script.write_text(DDP_SCRIPT)
    config_path.write_text(
        f'model = "{model_folder}"\ndata = "{data}"\nmax_tokens = 384\nmax_steps = 3\nlearning_rate = 3e-3\n'
        'threads = 1\nloss_reduction = "sequence"\n'
    )
    # gloo on the loopback device: a CI host whose name resolves to no local interface still connects.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "GLOO_SOCKET_IFNAME": "lo"}
    # --multi_gpu selects accelerate's torchrun launcher; without a GPU each process runs on the CPU with gloo
    # (accelerate 1.x's --cpu launches a single process unless an MPI hostfile is given).
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    # A free loopback port rather than torchrun's fixed 29500, which another job on a shared CI host may hold.
    launch += ["--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port())]
    two = tmp_path / "two.jsonl"
    _run([*launch, str(script), str(config_path), str(two), f"output_dir={tmp_path / 'two'}"], env)
    one = tmp_path / "one.jsonl"
    _run([sys.executable, str(script), str(config_path), str(one), f"output_dir={tmp_path / 'one'}",
          "gradient_accumulation_steps=2"], env)  # fmt: skip
    by_rank: dict[int, list[float]] = {}
    for line in two.read_text().splitlines():
        entry = json.loads(line)
        by_rank.setdefault(entry["rank"], []).append(entry["loss"])
    single = [json.loads(line)["loss"] for line in one.read_text().splitlines()]
    assert sorted(by_rank) == [0, 1] and len(single) == 3
    assert by_rank[0] == by_rank[1]
    assert by_rank[0] == pytest.approx(single, rel=1e-6)
    expected, got = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert max((expected[k] - got[k]).abs().max().item() for k in expected) <= 1e-6


def test_a_new_run_refuses_a_folder_with_checkpoints_and_a_resume_refuses_changed_settings(tiny_run, tmp_path):
    model_folder, data = tiny_run
    out = tmp_path / "out"
    train_sft(_config(model_folder, data, out, max_steps=4), progress=False)
    with pytest.raises(ConfigError, match=r"field 'output_dir'.*already holds checkpoints up to checkpoint-4"):
        train_sft(_config(model_folder, data, out, max_steps=4), progress=False)
    with pytest.raises(ConfigError, match=r"field 'learning_rate'.*0.003 -> 0.001"):
        train_sft(_config(model_folder, data, out, max_steps=4, resume=True, learning_rate=1e-3), progress=False)
