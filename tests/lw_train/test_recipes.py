"""The recipes/ folder: every config loads, the paper recipe says the paper's values, the CPU recipe runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lw_train import DPOConfig, SFTConfig

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"


def test_the_longwriter_recipe_is_the_released_training_script():
    """THUDM/LongWriter@3fcfdff train/scripts/*_longwriter.sh, pre_tokenize_*.py, sort_and_group.py, --pack_loss."""
    config = SFTConfig.from_file(RECIPES / "longwriter-sft.toml")
    assert (config.learning_rate, config.epochs, config.lr_scheduler, config.warmup_ratio) == (1e-5, 4, "cosine", 0.03)
    assert (config.weight_decay, config.adam_beta1, config.adam_beta2) == (0.1, 0.9, 0.95)
    assert (config.max_tokens, config.dtype, config.gradient_checkpointing) == (32_768, "bfloat16", True)
    assert (config.packing, config.loss_reduction, config.packs_per_device) == ("nextfit", "longwriter", 1)
    assert (config.gradient_accumulation_steps, config.save_steps, config.save_total_limit) == (1, 400, 10)


def test_every_recipe_loads_and_the_accelerate_configs_name_eight_processes():
    assert DPOConfig.from_file(RECIPES / "longwriter-dpo.toml").max_tokens == 32_768
    cpu = SFTConfig.from_file(RECIPES / "cpu-sft.toml")
    assert cpu.model == "smollm2-135m-instruct" and (ROOT / cpu.data).is_file()
    for name, kind in [("fsdp2-8gpu.yaml", "FSDP"), ("deepspeed-zero3-8gpu.yaml", "DEEPSPEED")]:
        accelerate = yaml.safe_load((RECIPES / "accelerate" / name).read_text())
        assert (accelerate["distributed_type"], accelerate["num_processes"]) == (kind, 8)
    zero3 = json.loads((RECIPES / "accelerate" / "zero3.json").read_text())
    assert zero3["zero_optimization"]["stage"] == 3


@pytest.mark.slow
def test_cpu_recipe_runs_two_steps_on_a_fresh_clone(tmp_path):
    """`lw-train sft --config recipes/cpu-sft.toml --set max_steps=2` in a clone holding only committed files."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", f"file://{ROOT}", str(clone)], check=True)
    command = [sys.executable, "-m", "lw_train", "sft", "--config", "recipes/cpu-sft.toml", "--set", "max_steps=2"]
    result = subprocess.run(command, cwd=clone, capture_output=True, text=True, env=os.environ.copy(), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((clone / "runs" / "cpu-sft" / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["trained_tokens"] > 0
    assert (clone / "runs" / "cpu-sft" / "model.safetensors").is_file()
