"""lw_train.launch: the accelerate configs it writes are the recipes' (and the original's stage3.json), and a launch
that fails says how and shows the processes' last lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from lw_train import DPOConfig, SFTConfig, TrainError
from lw_train.errors import ConfigError
from lw_train.launch import ZERO3, accelerate_config, launch

ROOT = Path(__file__).resolve().parents[2]
ACCELERATE = ROOT / "recipes" / "accelerate"


def test_the_deepspeed_settings_are_the_recipe_and_the_released_stage3_json(tmp_path):
    assert json.loads((ACCELERATE / "zero3.json").read_text()) == ZERO3
    assert ZERO3["zero_optimization"]["offload_param"] == {"device": "cpu", "pin_memory": True}
    written = yaml.safe_load(accelerate_config("deepspeed-zero3", 8, "bfloat16", tmp_path).read_text())
    recipe = yaml.safe_load((ACCELERATE / "deepspeed-zero3-8gpu.yaml").read_text())
    assert json.loads(Path(written["deepspeed_config"].pop("deepspeed_config_file")).read_text()) == ZERO3
    recipe["deepspeed_config"].pop("deepspeed_config_file")
    assert written == recipe


def test_the_fsdp2_and_ddp_settings(tmp_path):
    written = yaml.safe_load(accelerate_config("fsdp2", 8, "bfloat16", tmp_path).read_text())
    assert written == yaml.safe_load((ACCELERATE / "fsdp2-8gpu.yaml").read_text())
    ddp = yaml.safe_load(accelerate_config("ddp", 2, "float32", tmp_path).read_text())
    assert (ddp["distributed_type"], ddp["num_processes"], ddp["mixed_precision"]) == ("MULTI_GPU", 2, "no")
    with pytest.raises(ConfigError, match="unknown distributed setting 'zero2'"):
        accelerate_config("zero2", 2, "float32", tmp_path)  # type: ignore[arg-type]


def test_a_launch_checks_what_it_is_given(tmp_path):
    sft = SFTConfig(model="m", data=tmp_path / "d.jsonl", output_dir=tmp_path / "o")
    with pytest.raises(ConfigError, match="lw-train dpo takes a DPOConfig, got a SFTConfig"):
        launch("dpo", sft, processes=2)
    dpo = DPOConfig(model="m", data=tmp_path / "d.jsonl", output_dir=tmp_path / "o")
    with pytest.raises(ConfigError, match="processes must be >= 1"):
        launch("dpo", dpo, processes=0)


@pytest.mark.slow
def test_a_failed_launch_names_its_exit_status_and_shows_the_last_lines(tmp_path):
    config = SFTConfig(model=str(tmp_path / "no-model"), data=tmp_path / "d.jsonl", output_dir=tmp_path / "o")
    lines: list[str] = []
    with pytest.raises(TrainError, match=r"(?s)on 1 process \(ddp\) exited with status 1.*no-model.*resume = true"):
        launch("sft", config, processes=1, echo=lines.append)
    log = (tmp_path / "o" / "launch" / "launch.log").read_text()
    assert "no-model" in log and any("no-model" in line for line in lines)
