"""The paper profile resolves to the released code's recipe: its SFT packing, order, loss and prompt format under 8
launched processes, the DPO recipe's values, the sampling pred.py uses per model; the dry run says all of it."""

from __future__ import annotations

from pathlib import Path

import pytest
from lw_reproduce import resolve
from lw_reproduce.cli import app
from lw_reproduce.config import ReproduceConfig
from lw_train import DPOConfig, SFTConfig
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
RUN_FIELDS = {"model", "data", "output_dir", "resume"}


def _paper(**overrides: object) -> ReproduceConfig:
    return ReproduceConfig.load("paper", None, dict(overrides))


def test_the_paper_profile_trains_with_the_released_packing_order_loss_and_format(tmp_path):
    config = _paper()
    sft = resolve.sft_config(config, model="m", data=tmp_path / "train.jsonl", output_dir=tmp_path / "model")
    assert (sft.packing, sft.order, sft.loss_reduction) == ("nextfit", "original", "longwriter")
    assert sft.prompt_format == "longwriter" and sft.resume
    assert (config.train.processes, config.train.distributed) == (8, "deepspeed-zero3")
    assert resolve.launched(config.train)
    recipe = SFTConfig.from_file(ROOT / "recipes" / "longwriter-sft.toml").model_dump(exclude=RUN_FIELDS)
    assert sft.model_dump(exclude=RUN_FIELDS) == recipe, "the profile and recipes/longwriter-sft.toml disagree"


def test_the_paper_profile_keeps_what_the_released_agentwrite_keeps():
    """agentwrite/write.py keeps a section cut at its 4096-token cap (it drops only empty replies, lines 75-83)."""
    config = _paper()
    assert config.agentwrite.preset == "paper" and config.data.keep_truncated
    assert config.data.min_words == 2000  # LongWriter-6k: outputs of 2k-32k words


def test_the_paper_profile_dpo_settings_are_the_dpo_recipe():
    settings = {"model": "m", "data": "d.jsonl", "output_dir": "o", **_paper().dpo.settings}
    profile = DPOConfig.validated(settings).model_dump(exclude=RUN_FIELDS)
    recipe = DPOConfig.from_file(ROOT / "recipes" / "longwriter-dpo.toml").model_dump(exclude=RUN_FIELDS)
    assert profile == recipe, "the profile and recipes/longwriter-dpo.toml disagree"
    assert (profile["beta"], profile["learning_rate"], profile["max_steps"]) == (0.15, 1e-6, 250)


def test_the_benchmark_samples_each_model_family_as_pred_py_does():
    assert resolve.bench_sampling(_paper()) == (0.5, 0.9, {"top_k": 50})
    glm = _paper(**{"student.model": "THUDM/glm-4-9b", "bench.sampling": {"repeat_penalty": 1.0}})
    assert resolve.bench_sampling(glm) == (0.5, 0.8, {"top_k": 50, "repeat_penalty": 1.0})
    smoke = ReproduceConfig.load("smoke")
    assert resolve.bench_sampling(smoke) == (smoke.bench.temperature, smoke.bench.top_p, smoke.bench.sampling)


def test_one_process_trains_in_process_and_anything_else_is_launched():
    smoke = ReproduceConfig.load("smoke")
    assert not resolve.launched(smoke.train)
    assert resolve.launched(ReproduceConfig.load("smoke", None, {"train.processes": 2}).train)
    assert resolve.launched(ReproduceConfig.load("smoke", None, {"train.distributed": "fsdp2"}).train)


def test_dry_run_prints_the_launcher_processes_packing_and_prompt_formats(monkeypatch):
    monkeypatch.setenv("LW_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    if not (ROOT.parent / "shared" / "data" / "longbench_write").is_dir():
        pytest.skip("the shared data folder (LongBench-Write) is not here")
    result = CliRunner().invoke(app, ["reproduce", "--profile", "paper", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "train launcher: accelerate launch, 8 processes, deepspeed-zero3" in result.output
    assert "train packing: nextfit, order original, loss longwriter, 32768 tokens a row" in result.output
    assert "prompt format: training longwriter → llama-inst" in result.output
    assert "bench sampling: the paper's for llama models: temperature 0.5, top_p 0.9, top_k 50" in result.output
    assert "on 8 GPUs" in result.output
    glm = CliRunner().invoke(
        app, ["reproduce", "--profile", "paper", "--dry-run", "--set", "student.model=THUDM/glm-4-9b"]
    )
    assert "longwriter → glm4" in glm.output and "top_p 0.8" in glm.output
