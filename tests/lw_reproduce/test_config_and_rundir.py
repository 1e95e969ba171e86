from pathlib import Path

import pytest
from lw_core import Instruction, read_jsonl
from lw_reproduce.config import ConfigError, ReproduceConfig
from lw_reproduce.pipeline import demo_instructions
from lw_reproduce.rundir import RunDir, RunDirError


def test_config_file_and_flags_merge_with_flags_winning(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text('name = "exp1"\nn_instructions = 6\ntrain_steps = 3\n')
    config = ReproduceConfig.load(toml, {"train_steps": 1, "model": None})
    assert (config.name, config.n_instructions, config.train_steps) == ("exp1", 6, 1)
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("bench_items: 5\n")
    assert ReproduceConfig.load(yaml_file, {}).bench_items == 5


def test_bad_config_names_file_and_field(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text("n_instructions = 0\n")
    with pytest.raises(ConfigError, match=r"run.toml: field 'n_instructions'"):
        ReproduceConfig.load(toml, {})
    toml.write_text("bench_itemz = 3\n")
    with pytest.raises(ConfigError, match=r"field 'bench_itemz'"):
        ReproduceConfig.load(toml, {})
    toml.write_text("not toml = = =\n")
    with pytest.raises(ConfigError, match="cannot read"):
        ReproduceConfig.load(toml, {})


def test_run_folder_resumes_same_config_and_refuses_another(tmp_path: Path) -> None:
    config = ReproduceConfig(name="r")
    run = RunDir.open(tmp_path, config)
    run.mark_done("data", {"kept": 3})
    again = RunDir.open(tmp_path, ReproduceConfig(name="r"))
    assert again.is_done("data") and again.summary("data") == {"kept": 3}
    with pytest.raises(RunDirError, match="another configuration"):
        RunDir.open(tmp_path, ReproduceConfig(name="r", train_steps=7))
    fresh = RunDir.open(tmp_path, ReproduceConfig(name="r", train_steps=7), fresh=True)
    assert not fresh.is_done("data")
    manifest = (tmp_path / "r" / "manifest.json").read_text()
    assert '"train_steps": 7' in manifest and "lw-core" in manifest


def test_bundled_instructions_are_bilingual_and_valid() -> None:
    rows = list(read_jsonl(demo_instructions(), Instruction))
    assert len(rows) >= 8 and {r.language for r in rows} == {"en", "zh"}
    assert all(r.length for r in rows)
