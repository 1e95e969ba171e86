"""llama.cpp on CPUs that advertise instructions they refuse: the start-up crash, the fallback, its memory, the error.

A fake ``llama-server`` stands in for the real one: it dies by SIGILL (as ggml's AMX kernel does in VMs that
advertise AMX) unless started with ``--no-repack``, then serves ``/health``.
"""

from __future__ import annotations

import json
import signal
import stat
import sys
import textwrap
from pathlib import Path

import pytest
from lw_serve import LlamaCppBackend, ResolvedModel, Server, ServerError, cpu
from lw_serve.cli import app
from typer.testing import CliRunner

MODEL = ResolvedModel(name="fake", gguf=Path("/dev/null"))

FAKE_LLAMA_SERVER = textwrap.dedent(
    """\
    #!{python}
    import http.server, os, signal, sys
    argv = sys.argv[1:]
    port = int(argv[argv.index("--port") + 1])
    with open(os.environ["FAKE_ARGV_LOG"], "a") as fh:
        fh.write(" ".join(argv) + "\\n")
    print("load_tensors: CPU_REPACK model buffer" if "--no-repack" not in argv else "load_tensors: CPU model buffer",
          flush=True)
    mode = os.environ.get("FAKE_MODE", "amx")
    if mode == "always" or (mode == "amx" and "--no-repack" not in argv):
        os.kill(os.getpid(), signal.{signal})
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
        def log_message(self, *a):
            pass
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)


def _fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str = "amx", sig: str = "SIGILL") -> Path:
    binary = tmp_path / "bin" / "llama-server"
    binary.parent.mkdir()
    binary.write_text(FAKE_LLAMA_SERVER.format(python=sys.executable, signal=sig))
    binary.chmod(binary.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("FAKE_ARGV_LOG", str(tmp_path / "argv.log"))
    monkeypatch.setenv("FAKE_MODE", mode)
    monkeypatch.setenv("LW_HOME", str(tmp_path / "home"))
    return binary


def _starts(tmp_path: Path) -> list[str]:
    return (tmp_path / "argv.log").read_text().splitlines()


@pytest.mark.parametrize("sig", ["SIGILL", "SIGSEGV"])
def test_a_start_that_dies_by_a_fault_signal_falls_back_to_no_repack_and_remembers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: str
) -> None:
    binary = _fake(tmp_path, monkeypatch, sig=sig)
    backend = LlamaCppBackend(binary=str(binary))
    log_file = tmp_path / "server.log"
    with Server(MODEL, backend, log_path=log_file) as server:
        assert server.running
    first, second = _starts(tmp_path)
    assert "--no-repack" not in first.split() and "--no-repack" in second.split()
    assert f"killed by {sig}" in log_file.read_text(), "the log says why the server was started twice"
    fault = cpu.repack_fault(binary)
    assert fault is not None and fault["signal"] == sig

    # the next start of this build on this CPU goes straight to --no-repack: one start, no crash
    (tmp_path / "argv.log").unlink()
    with Server(MODEL, backend):
        pass
    [only] = _starts(tmp_path)
    assert "--no-repack" in only.split()


def test_a_rebuilt_binary_is_tried_with_repacking_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = _fake(tmp_path, monkeypatch)
    cpu.record_repack_fault(binary, signal.SIGILL)
    assert not LlamaCppBackend(binary=str(binary)).repacks()
    binary.write_text(binary.read_text() + "\n# rebuilt\n")
    assert LlamaCppBackend(binary=str(binary)).repacks(), "a new build on the same CPU may work: no stale verdict"


def test_no_fallback_when_repacking_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = _fake(tmp_path, monkeypatch, mode="works")
    with Server(MODEL, LlamaCppBackend(binary=str(binary))):
        pass
    [only] = _starts(tmp_path)
    assert "--no-repack" not in only.split()
    assert cpu.repack_fault(binary) is None, "nothing is remembered where repacking works"


def test_forced_repack_gives_the_clear_error_naming_the_signal_and_what_to_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = _fake(tmp_path, monkeypatch)
    with pytest.raises(ServerError) as info:
        Server(MODEL, LlamaCppBackend(binary=str(binary), repack="on")).start()
    message = str(info.value)
    assert "killed by SIGILL during start-up" in message
    assert "repack='off'" in message and "--repack off" in message and "LLAMA_ARG_REPACK=0" in message
    assert len(_starts(tmp_path)) == 1, "forced: no second start"


def test_a_server_that_dies_without_repacking_too_gives_the_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = _fake(tmp_path, monkeypatch, mode="always")
    with pytest.raises(ServerError, match="killed by SIGILL during start-up"):
        Server(MODEL, LlamaCppBackend(binary=str(binary))).start()
    assert [("--no-repack" in s.split()) for s in _starts(tmp_path)] == [False, True], "one fallback, no more"


def test_forced_off_never_repacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = _fake(tmp_path, monkeypatch)
    backend = LlamaCppBackend(binary=str(binary), repack="off")
    with Server(MODEL, backend):
        pass
    [only] = _starts(tmp_path)
    assert "--no-repack" in only.split()
    assert cpu.repack_fault(binary) is None


def test_repack_must_be_auto_on_or_off() -> None:
    with pytest.raises(Exception, match="auto, on or off"):
        LlamaCppBackend(repack="sometimes")  # type: ignore[arg-type]


def test_cpu_info_reads_model_and_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx2 avx512f amx_tile amx_int8\n\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx2 avx512f amx_tile amx_int8\n"
    )
    info = cpu.cpu_info(cpuinfo)
    assert info.model == "Intel(R) Xeon(R) Processor"
    assert info.kernel_flags == ["avx2", "avx512f", "amx_tile", "amx_int8"] and info.advertises_amx
    other = tmp_path / "other"
    other.write_text("model name\t: AMD EPYC\nflags\t: fpu avx2\n")
    assert not cpu.cpu_info(other).advertises_amx
    assert cpu.cpu_info(other).fingerprint != info.fingerprint


def test_doctor_prints_what_was_detected_and_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = _fake(tmp_path, monkeypatch)
    monkeypatch.setattr("lw_serve.diagnose.llama_server_binary", lambda: binary)
    runner = CliRunner()
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["llama-server"] == str(binary) and report["repack"].startswith("on (auto")
    cpu.record_repack_fault(binary, signal.SIGILL)
    report = json.loads(runner.invoke(app, ["doctor", "--json"]).output)
    assert report["repack"].startswith("off (auto") and report["repack fault"].startswith("SIGILL")
    assert "cpu" in report and isinstance(report["kernel flags"], list)
