"""train_grpo on a tiny random model with a byte vocabulary: two GRPO steps change the weights, rewards are found by
import string, a served-policy rollout is synced after every step, a run resumes from its checkpoint, and bad
configs name the file and field."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from lw_core import RecordError
from lw_train import ConfigError, GRPOConfig, train_grpo
from lw_train.cli import app
from lw_train.grpo import ROLLOUT_FOLDER, plot_rewards, read_prompts
from safetensors.torch import load_file
from transformers import TrainerCallback
from typer.testing import CliRunner

REWARDS = '''
def letter_a(completions, **kwargs):
    """Pays for the letter "a": random completions differ, so every group has an advantage to follow."""
    return [c[0]["content"].count("a") / 4 for c in completions]


def needs_length(completions, length, **kwargs):
    assert all(isinstance(n, int) for n in length)
    return [0.0 for _ in completions]


def scaled(factor):
    def scaled_reward(completions, **kwargs):
        return [factor * len(c[0]["content"]) for c in completions]
    return scaled_reward
'''


@pytest.fixture
def grpo_run(tiny_run, tmp_path, monkeypatch):
    """(model folder, prompts file, base settings) for two tiny GRPO steps; rewards importable as ``tiny_rewards``."""
    model_folder, _ = tiny_run
    (tmp_path / "tiny_rewards.py").write_text(REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("tiny_rewards", None)
    prompts = tmp_path / "prompts.jsonl"
    with prompts.open("w") as out:
        for i in range(4):
            out.write(json.dumps({"prompt": f"Write note {i} about rivers.", "length": 20 + i}) + "\n")
    settings = {
        "model": str(model_folder), "data": str(prompts), "output_dir": str(tmp_path / "out"),
        "rewards": [{"func": "tiny_rewards:letter_a"}, {"func": "tiny_rewards:needs_length", "weight": 0.5}],
        "num_generations": 4, "max_completion_length": 12, "max_steps": 2, "learning_rate": 1e-2,
        "warmup_ratio": 0.0, "save_steps": 1, "threads": 1,
    }  # fmt: skip
    return model_folder, prompts, settings


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    return [name for name in before if not torch.equal(before[name], after[name])]


def test_two_grpo_steps_change_the_weights_and_log_rewards_lengths_and_degenerate_share(grpo_run, tmp_path):
    model_folder, _, settings = grpo_run
    result = train_grpo(GRPOConfig.validated(settings), progress=False)
    out = tmp_path / "out"
    assert result.summary["steps"] == 2 and result.summary["rollout"] == "model.generate"
    assert _changed(_weights(model_folder), _weights(out))
    steps = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "reward" in s]
    assert [s["step"] for s in steps] == [1, 2]
    for key in (
        "rewards/letter_a/mean", "rewards/needs_length/mean", "completions/mean_length", "completions/words",
        "completions/words_ratio", "completions/degenerate", "completions/looped", "completions/clipped_ratio",
    ):  # fmt: skip
        assert key in steps[-1], key
    rollouts = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert len(rollouts) == 2 * 4 and {r["step"] for r in rollouts} == {1, 2}
    assert {r["length"] for r in rollouts} <= {20, 21, 22, 23} and all("text" in r for r in rollouts)
    assert (out / "rewards.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # a drawn plot, not an empty file
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rewards"][1] == {"func": "tiny_rewards:needs_length", "weight": 0.5}


def test_a_factory_reward_is_called_with_its_options(grpo_run):
    _, _, settings = grpo_run
    settings = {**settings, "max_steps": 1, "rewards": [{"func": "tiny_rewards:scaled", "options": {"factor": 0.1}}]}
    result = train_grpo(GRPOConfig.validated(settings), progress=False)
    assert "rewards/scaled_reward/mean" in result.summary["steps_log"][0]


class FakeServedPolicy:
    """A PolicyRollout that serves the synced folder with transformers: records each sync's weights."""

    def __init__(self) -> None:
        self.synced: list[dict[str, torch.Tensor]] = []
        self.model: Any = None

    def sync(self, folder: Path) -> None:
        from transformers import AutoModelForCausalLM

        self.synced.append(_weights(folder))
        self.model = AutoModelForCausalLM.from_pretrained(folder)

    def generate(self, prompt_ids, *, max_tokens, temperature, top_p, top_k, repetition_penalty, seed):
        torch.manual_seed(seed)
        outputs = []
        for i, ids in enumerate(prompt_ids):
            generated = self.model.generate(
                torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=True, temperature=temperature
            )[0, len(ids) :].tolist()
            outputs.append((generated[: 3 + i % 5], i % 2 == 0))  # every other one "stopped by itself"
        return outputs


def test_a_served_policy_is_synced_after_every_step_and_its_stops_count_as_finished(grpo_run, tmp_path):
    model_folder, _, settings = grpo_run
    policy = FakeServedPolicy()
    result = train_grpo(GRPOConfig.validated(settings), rollout=policy, progress=False)
    assert result.summary["rollout"] == "FakeServedPolicy" and len(policy.synced) == 2
    assert not _changed(_weights(model_folder), policy.synced[0])  # step 1 rolls out the starting weights
    assert _changed(policy.synced[0], policy.synced[1])  # step 2 the weights after step 1
    assert (tmp_path / "out" / ROLLOUT_FOLDER / "config.json").is_file()
    steps = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [s["completions/clipped_ratio"] for s in steps if "reward" in s] == [0.5, 0.5]


class StopAfterSave(TrainerCallback):
    """Ends the process's training like a kill would, right after the checkpoint of step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_a_stopped_run_resumes_from_its_last_checkpoint(grpo_run, tmp_path):
    _, _, settings = grpo_run
    settings = {**settings, "max_steps": 3}
    with pytest.raises(KeyboardInterrupt):
        train_grpo(GRPOConfig.validated(settings), callbacks=[StopAfterSave(2)], progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        train_grpo(GRPOConfig.validated(settings), progress=False)
    result = train_grpo(GRPOConfig.validated({**settings, "resume": True}), progress=False)
    assert result.summary["resumed_from"] == "checkpoint-2" and result.summary["steps"] == 3
    assert plot_rewards(tmp_path / "out" / "log.jsonl", tmp_path / "again.png") is not None


def _one_red_line(result: Any, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_bad_configs_and_prompts_are_one_red_line_naming_file_and_field(grpo_run, tmp_path):
    model_folder, prompts, _ = grpo_run
    config = tmp_path / "grpo.toml"

    def run(body: str, *extra: str) -> Any:
        head = f'model = "{model_folder}"\ndata = "{prompts}"\noutput_dir = "{tmp_path / "cli"}"\nmax_steps = 1\n'
        config.write_text(head + textwrap.dedent(body))
        return CliRunner().invoke(app, ["grpo", "--config", str(config), *extra])

    _one_red_line(run("num_generation = 4\n"), "grpo.toml: field 'num_generation': unknown key")
    _one_red_line(run("num_generations = 1\n"), "grpo.toml: field 'num_generations'")
    _one_red_line(run('rewards = [{ func = "length_reward" }]\n'), "field 'rewards.0.func'", "module:name")
    _one_red_line(run('rewards = [{ func = "no_such_module:f" }]\n'), "field 'rewards.0.func'", "cannot import")
    _one_red_line(run('rewards = [{ func = "tiny_rewards:nothing" }]\n'), "field 'rewards.0.func'", "has no 'nothing'")
    _one_red_line(
        run('rewards = [{ func = "tiny_rewards:scaled", options = { size = 2 } }]\n'), "does not take these options"
    )
    _one_red_line(
        run('rewards = [{ func = "tiny_rewards:letter_a" }]\n', "--set", "completions_per_device=3"),
        "field 'completions_per_device'",
    )
    no_length = tmp_path / "no_length.jsonl"
    no_length.write_text(prompts.read_text() + json.dumps({"prompt": "Write about lakes."}) + "\n")
    _one_red_line(
        run('rewards = [{ func = "tiny_rewards:letter_a" }]\n', "--set", f"data={no_length}"),
        "no_length.jsonl:5: field 'length'",
    )


def test_read_prompts_takes_lw_data_instruction_files(tmp_path):
    path = tmp_path / "instructions.jsonl"
    path.write_text(json.dumps({"id": "a", "prompt": "Write 300 words on tides.", "length": 300, "type": "x"}) + "\n")
    (prompt,) = read_prompts(path)
    assert (prompt.id, prompt.length, prompt.language) == ("a", 300, "en")
    path.write_text("\n" + json.dumps({"prompt": "Write on tides."}) + "\n")
    with pytest.raises(RecordError, match=r"instructions.jsonl:2: field 'length'"):
        read_prompts(path)


def test_help_documents_every_key():
    result = CliRunner().invoke(app, ["grpo", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for name, field in GRPOConfig.model_fields.items():
        assert f"{name} (" in text, name
        assert field.description, f"{name} has no description"


RECIPES = Path(__file__).resolve().parents[2] / "recipes"
LONGBENCH = Path(__file__).resolve().parents[3] / "shared" / "data" / "longbench_write"


def test_the_grpo_recipes_load_and_the_cpu_prompts_are_not_longbench_write():
    cpu = GRPOConfig.from_file(RECIPES / "cpu-grpo.toml")
    assert cpu.model == "smollm2-135m-instruct" and (RECIPES.parent / cpu.data).is_file()
    assert [r.func for r in cpu.rewards] == ["lw_bench.rewards:length_reward", "lw_bench.rewards:repetition_reward"]
    prompts = read_prompts(RECIPES.parent / cpu.data)
    assert len(prompts) >= cpu.max_steps and max(p.length or 0 for p in prompts) <= 600
    gpu = GRPOConfig.from_file(RECIPES / "longwriter-zero-grpo.toml")
    assert (gpu.max_completion_length, gpu.multi_objective_aggregation) == (14000, "normalize_then_sum")
    assert len(gpu.rewards) == 3 and gpu.rewards[1].options is not None
    benchmark = [LONGBENCH / name for name in ("longbench_write.jsonl", "longwrite_ruler.jsonl")]
    if not all(path.is_file() for path in benchmark):
        pytest.skip(f"LongBench-Write not found at {LONGBENCH}")
    held_out = {json.loads(line)["prompt"].strip() for path in benchmark for line in path.read_text().splitlines()}
    assert not {p.prompt.strip() for p in prompts} & held_out
