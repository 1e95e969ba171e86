import json

from lw_train.cli import app
from typer.testing import CliRunner

CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there."}]}
LONG = {"messages": [{"role": "user", "content": "Go"}, {"role": "assistant", "content": "word " * 40}]}


def test_pack_reports_fill_and_writes_bins_by_input_line(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("LW_HOME", str(tmp_path / "home"))
    tokenizer.save_pretrained(tmp_path / "tok")
    data = tmp_path / "sft.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in [CHAT, LONG, CHAT, CHAT]) + "\n")
    out = tmp_path / "bins.json"
    args = ["pack", str(data), "--tokenizer", str(tmp_path / "tok"), "--max-tokens", "150", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1 dropped as over-long" in result.output
    assert "fill" in result.output
    bins = json.loads(out.read_text())["bins"]
    assert sorted(i for b in bins for i in b) == [0, 2, 3]


def test_user_errors_exit_1_without_traceback(tmp_path):
    result = CliRunner().invoke(app, ["pack", str(tmp_path / "missing.jsonl"), "--tokenizer", "x"])
    assert result.exit_code == 1
    assert "error:" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 2 and "pack" in result.output  # help, as a usage error
    result = CliRunner().invoke(app, ["pack", str(tmp_path / "missing.jsonl"), "--tokenizer", "x", "--strategy", "ffd"])
    assert result.exit_code == 2 and "'ffd' is not one of" in result.output


def _sft_config(tmp_path, model, data, **extra) -> str:
    lines = [f'model = "{model}"', f'data = "{data}"', f'output_dir = "{tmp_path / "out"}"', "max_tokens = 384"]
    lines += [f"{key} = {value}" for key, value in extra.items()]
    path = tmp_path / "sft.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _one_red_line(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_sft_bad_input_is_one_red_line_naming_file_and_field(tiny_run, tmp_path):
    model, data = tiny_run
    runner = CliRunner()
    config = _sft_config(tmp_path, model, data, learning_rte="1e-5")
    _one_red_line(runner.invoke(app, ["sft", "--config", config]), "sft.toml: field 'learning_rte': unknown key")

    config = _sft_config(tmp_path, model, tmp_path / "missing.jsonl")
    _one_red_line(runner.invoke(app, ["sft", "--config", config]), "field 'data'", "missing.jsonl not found")

    malformed = runner.invoke(app, ["sft", "--config", config, "--set", "max_steps"])
    assert malformed.exit_code == 2 and "'max_steps': expected KEY=VALUE" in malformed.output  # a usage error
    _one_red_line(
        runner.invoke(app, ["sft", "--config", config, "--set", "max_steps=two"]),
        "--set max_steps: field 'max_steps': Input should be a valid integer",
    )

    untrained = tmp_path / "untrained.jsonl"
    lines = data.read_text().splitlines()
    lines[2] = json.dumps({"messages": [{"role": "user", "content": "Hi"}]})
    untrained.write_text("\n".join(lines) + "\n")
    config = _sft_config(tmp_path, model, untrained)
    _one_red_line(runner.invoke(app, ["sft", "--config", config]), "untrained.jsonl:3: field 'messages'")

    config = _sft_config(tmp_path, model, data)
    _one_red_line(
        runner.invoke(app, ["sft", "--config", config, "--set", "max_tokens=16"]),
        "sft.toml: field 'max_tokens': every one of the 16 records",
    )


def test_dpo_file_without_chosen_is_one_red_line(tiny_run, tmp_path):
    model, _ = tiny_run
    pairs = tmp_path / "pairs.jsonl"
    pair = {"prompt": [{"role": "user", "content": "Q"}], "rejected": [{"role": "assistant", "content": "A"}]}
    pairs.write_text(json.dumps(pair) + "\n")
    config = tmp_path / "dpo.yaml"
    config.write_text(f"model: {model}\ndata: {pairs}\noutput_dir: {tmp_path / 'out'}\n")
    result = CliRunner().invoke(app, ["dpo", "--config", str(config)])
    _one_red_line(result, "pairs.jsonl:1: field 'chosen'")


def test_the_training_progress_bar_is_drawn_on_stderr(tmp_path, capsys):
    """stdout stays a command's result (e.g. JSON piped on); the bar and its loss go to stderr."""
    from types import SimpleNamespace

    from lw_train._run import ProgressAndLog, RunStats

    callback = ProgressAndLog(tmp_path / "log.jsonl", RunStats(), show=True)
    state = SimpleNamespace(is_world_process_zero=True, max_steps=2, global_step=0)
    callback.on_train_begin(None, state, None)
    state.global_step = 2
    callback.on_log(None, state, None, logs={"loss": 1.25})
    callback.on_step_end(None, state, None)
    callback.on_train_end(None, state, None)
    captured = capsys.readouterr()
    assert "loss 1.2500" in captured.err and "2/2" in captured.err
    assert captured.out == ""
