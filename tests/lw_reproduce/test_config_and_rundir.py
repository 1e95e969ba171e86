from pathlib import Path

import pytest
from lw_core.config import parse_assignments
from lw_reproduce.config import PROFILES, ConfigError, ReproduceConfig, profile_path
from lw_reproduce.pipeline import PipelineError, selected_stages
from lw_reproduce.rundir import RunDir, RunDirError


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_loads_and_names_itself(profile: str) -> None:
    config = ReproduceConfig.load(profile)
    assert (config.profile, config.name) == (profile, profile)
    assert config.purpose
    assert profile_path(profile).read_text().startswith("#")  # a file users copy starts by saying what it is for


def test_profile_then_file_then_flags(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text('name = "exp1"\n[instructions]\nn = 6\n[bench]\nitems = 9\n')
    config = ReproduceConfig.load("cpu", toml, {"bench.items": 3, "train.settings.max_steps": 2})
    assert (config.name, config.instructions.n, config.bench.items) == ("exp1", 6, 3)
    assert config.instructions.max_words == ReproduceConfig.load("cpu").instructions.max_words  # the rest kept
    assert config.train.settings["max_steps"] == 2 and config.train.settings["epochs"] == 2  # merged, not replaced
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("bench:\n  items: 5\n")
    assert ReproduceConfig.load("smoke", yaml_file).bench.items == 5


def test_bad_config_names_file_and_field(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text("[instructions]\nn = 0\n")
    with pytest.raises(ConfigError, match=r"run.toml: field 'instructions.n'"):
        ReproduceConfig.load("smoke", toml)
    toml.write_text("[bench]\nitemz = 3\n")
    with pytest.raises(ConfigError, match=r"field 'bench.itemz'"):
        ReproduceConfig.load("smoke", toml)
    toml.write_text("[train.settings]\nlearning_rte = 3\n")  # checked against lw-train's SFTConfig at load
    with pytest.raises(ConfigError, match=r"run.toml: field 'train.settings.learning_rte': unknown key"):
        ReproduceConfig.load("smoke", toml)
    toml.write_text("not toml = = =\n")
    with pytest.raises(ConfigError, match="cannot read"):
        ReproduceConfig.load("smoke", toml)
    with pytest.raises(ConfigError, match="unknown profile 'gpu'; choose one of: smoke, cpu, paper"):
        ReproduceConfig.load("gpu")
    with pytest.raises(ConfigError, match=r"profile 'smoke': field 'student'"):
        ReproduceConfig.load("smoke", None, {"student.base_url": "http://example.invalid/v1"})


def test_agentwrite_options_are_checked_when_the_config_is_read(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text("[agentwrite.options]\ntop_p = 2\n")
    with pytest.raises(ConfigError, match=r"run.toml: field 'agentwrite.options'.*top_p: Input should be less"):
        ReproduceConfig.load("cpu", toml)
    with pytest.raises(ConfigError, match=r"field 'agentwrite_bench.options'.*max_section_wordz: Extra inputs"):
        ReproduceConfig.load("cpu", None, {"agentwrite_bench.options.max_section_wordz": 900})
    config = ReproduceConfig.load("cpu", None, {"agentwrite.options.max_section_words": "none"})
    assert config.agentwrite.options == {"max_section_words": "none"}  # kept as written: the digest is unchanged


def test_assignments_are_typed_like_toml() -> None:
    values = parse_assignments(["bench.items=5", "bench.top_p=0.8", "train.enabled=false", "name=exp", "x.y=[1, 2]"])
    assert values == {"bench.items": 5, "bench.top_p": 0.8, "train.enabled": False, "name": "exp", "x.y": [1, 2]}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_assignments(["items"], error=ConfigError)


def test_stage_selection_follows_the_enabled_sections() -> None:
    smoke = ReproduceConfig.load("smoke")
    everything = ["instructions", "agentwrite", "data", "bench_base", "train", "bench_sft", "report"]
    assert selected_stages(smoke) == everything
    paper = ReproduceConfig.load("paper")
    assert "dpo" in selected_stages(paper) and "bench_dpo" in selected_stages(paper)
    no_train = ReproduceConfig.load("smoke", None, {"train.enabled": False})
    assert selected_stages(no_train, "data") == ["data", "bench_base", "report"]
    with pytest.raises(PipelineError, match="unknown stage 'bench'"):
        selected_stages(smoke, "bench")


def test_run_folder_resumes_same_config_and_refuses_another(tmp_path: Path) -> None:
    config = ReproduceConfig.load("smoke", None, {"name": "r"})
    run = RunDir.open(tmp_path, config)
    run.mark_done("data", {"kept": 3})
    (run.stage("agentwrite") / "documents.jsonl").write_text("{}\n")
    again = RunDir.open(tmp_path, ReproduceConfig.load("smoke", None, {"name": "r"}))
    assert again.is_done("data") and again.summary("data") == {"kept": 3}
    other = ReproduceConfig.load("smoke", None, {"name": "r", "bench.items": 7})
    with pytest.raises(RunDirError, match="another configuration"):
        RunDir.open(tmp_path, other)
    fresh = RunDir.open(tmp_path, other, fresh=True)
    assert not fresh.is_done("data")
    assert not (fresh.root / "agentwrite").exists()  # nothing of the old run is reused ...
    [aside] = tmp_path.glob("r.old-*")  # ... and nothing is deleted
    assert (aside / "agentwrite" / "documents.jsonl").read_text() == "{}\n" and (aside / "data" / "done").exists()
    manifest = (tmp_path / "r" / "manifest.json").read_text()
    assert '"items": 7' in manifest and "lw-core" in manifest
    assert RunDir.existing(tmp_path, "r").config == other
    with pytest.raises(RunDirError, match="not a run folder"):
        RunDir.existing(tmp_path, "nope")


#: Each profile's configuration hash before the data section became lw-data's SFTFilters (main 131073f): run folders
#: made then must resume, so deriving the section may not change any profile's hash.
HASHES_BEFORE = {"smoke": "adc8259c8d3c65d8", "cpu": "32048793ce0108d7", "paper": "fb864254a15648f6"}
#: The filters the data stage built field by field before (the profiles' values, lw-data's defaults for the rest).
FILTERS_BEFORE = {
    "smoke": {"min_words": 50, "strip_plan_echo": True},
    "cpu": {"min_words": 50, "strip_plan_echo": True, "strip_task_talk": True},
    "paper": {"min_words": 2000, "keep_truncated": True},
}


@pytest.mark.parametrize("profile", PROFILES)
def test_the_data_section_is_lw_datas_filters_with_each_profiles_values_unchanged(profile: str) -> None:
    from lw_data import SFTFilters

    config = ReproduceConfig.load(profile)
    assert isinstance(config.data, SFTFilters)
    assert config.data.filters() == SFTFilters(**FILTERS_BEFORE[profile])
    assert config.data.filters(plan_augmented=True) == SFTFilters(**FILTERS_BEFORE[profile], plan_augmented=True)
    assert config.digest() == HASHES_BEFORE[profile]
    assert ReproduceConfig.load(profile, None, {"data.max_length_ratio": 3.0}).digest() != HASHES_BEFORE[profile]


def test_the_data_section_takes_every_filter_and_refuses_plan_augmented(tmp_path: Path) -> None:
    from lw_core import REPETITION_THRESHOLD

    config = ReproduceConfig.load("cpu", None, {"data.max_words": 900, "data.system_prompt": "You write."})
    assert config.data.filters().max_words == 900 and config.data.filters().system_prompt == "You write."
    assert config.data.max_repetition == REPETITION_THRESHOLD  # one home for the threshold
    with pytest.raises(ConfigError, match=r"--set data.plan_augmented: field 'data.plan_augmented': .*plan_sft"):
        ReproduceConfig.load("cpu", None, {"data.plan_augmented": True})
    toml = tmp_path / "run.toml"
    toml.write_text("[data]\nngramz = 3\n")
    with pytest.raises(ConfigError, match=r"run.toml: field 'data.ngramz': unknown key"):
        ReproduceConfig.load("cpu", toml)
