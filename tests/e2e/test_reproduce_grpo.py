"""`lw reproduce`'s GRPO stage (issue 24): prompts disjoint from the benchmark, a switch in the cpu profile, and (slow)
a trimmed run — the base model's row, GRPO on the embedded model, the GRPO model's row on the same backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lw_core import BenchItem, BenchReport
from lw_reproduce import grpo_stage
from lw_reproduce.config import ReproduceConfig
from lw_reproduce.errors import ConfigError
from lw_reproduce.pipeline import reproduce, selected_stages

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_generated_prompts_that_are_benchmark_items_are_dropped() -> None:
    section = grpo_stage.GRPOSection(prompts=6, min_words=100, max_words=300)
    chosen, dropped = grpo_stage.prompts(section, held_out=[])
    assert len(chosen) == 6 and dropped == 0 and all(100 <= (p.length or 0) <= 300 for p in chosen)
    same_text = BenchItem(prompt=chosen[0].prompt.upper().replace(",", " ,"), length=100)  # another id, same words
    same_id = BenchItem(id=chosen[1].id, prompt="something else", length=100)
    kept, dropped = grpo_stage.prompts(section, held_out=[same_text, same_id])
    assert dropped == 2 and [p.id for p in kept] == [p.id for p in chosen[2:]]


def test_the_cpu_profile_has_grpo_switched_off_and_checks_its_settings_at_load() -> None:
    config = ReproduceConfig.load("cpu")
    assert not config.grpo.enabled and "grpo" not in selected_stages(config)
    config = ReproduceConfig.load("cpu", overrides={"grpo.enabled": True, "train.enabled": False})
    assert selected_stages(config, "bench_base") == ["bench_base", "grpo", "bench_grpo", "report"]
    sft_start = ReproduceConfig.load(
        "cpu", overrides={"grpo.enabled": True, "grpo.start": "sft", "train.enabled": False}
    )
    assert "grpo" not in selected_stages(sft_start)  # from the SFT model needs the SFT stage
    with pytest.raises(ConfigError, match=r"field 'grpo.settings.num_generation': unknown key"):
        ReproduceConfig.load("cpu", overrides={"grpo.settings.num_generation": 2})


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_trimmed_cpu_profile_with_the_grpo_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cpu profile's GRPO switch at a tiny scale, from the base model's row: one GRPO step of the embedded model
    with lw-bench's rewards, its GGUF on the same backend, its row in the report; a rerun skips every stage."""
    monkeypatch.setenv("LW_DATA_DIR", str(DATA))
    overrides = {
        "name": "cpu-grpo", "train.enabled": False, "bench.items": 1, "bench.max_required": 100,
        "bench.tokens_per_required_word": 1.5, "bench.ruler": False, "grpo.enabled": True, "grpo.prompts": 2,
        "grpo.settings.max_steps": 1, "grpo.settings.num_generations": 2, "grpo.settings.max_completion_length": 16,
    }  # fmt: skip
    config = ReproduceConfig.load("cpu", None, overrides)
    lines: list[str] = []
    run = reproduce(config, tmp_path, start="bench_base", say=lines.append)
    root = run.root
    for stage in ("bench_base", "grpo", "bench_grpo", "report"):
        assert (root / stage / "done").exists(), stage
    trained = json.loads((root / "grpo" / "done").read_text())
    assert trained["from"] == "base" and trained["steps"] == 1 and trained["dropped_benchmark_items"] == 0
    assert (root / "grpo" / "model" / "rewards.png").is_file() and (root / "grpo" / "prompts.jsonl").is_file()
    log = [json.loads(line) for line in (root / "grpo" / "model" / "log.jsonl").read_text().splitlines()]
    assert any("rewards/length_reward/mean" in entry and "completions/degenerate" in entry for entry in log)
    assert "server-lw-grpo.log" in {p.name for p in (root / "logs").glob("server-lw-*.log")}  # on llama.cpp
    report = BenchReport.model_validate_json((root / "bench_grpo" / "longbench" / "report.json").read_text())
    assert report.overall.n == 1 and report.overall.length_score is not None
    comparison = (root / "report" / "comparison.md").read_text()
    assert all(f"| {label} | 1 / 1 |" in comparison for label in ("base", "grpo")) and "| grpo |" in comparison

    rerun: list[str] = []
    reproduce(config, tmp_path, start="bench_base", say=rerun.append)
    assert sum("done already, skipped" in line for line in rerun) == 4
