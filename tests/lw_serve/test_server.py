"""Server lifecycle against small fake servers: health, start-up failures, ports, and no orphans."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from lw_core import Capabilities, OpenAIChatClient
from lw_serve import ResolvedModel, Server, ServerError, SGLangBackend
from lw_serve.backends import Launch

MODEL = ResolvedModel(name="fake", gguf=Path("/dev/null"))

# A server that answers /health, spawns a grandchild (like a worker pool), and writes its pids to a file.
FAKE = textwrap.dedent(
    """
    import http.server, os, subprocess, sys, signal, time
    mode, port, pidfile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    print("fake server starting on", port, flush=True)
    if mode == "crash":
        print("fatal: unknown option --frobnicate; api_key=" + os.environ.get("FAKE_KEY", ""), flush=True)
        sys.exit(3)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(pidfile, "w") as fh:
        fh.write(f"{os.getpid()} {child.pid}")
    if mode == "silent":
        time.sleep(600)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
        def log_message(self, *a):
            pass
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)


@dataclass(frozen=True)
class FakeBackend:
    mode: str
    pidfile: Path
    secret: str | None = None
    name: str = "fake"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(json_schema=True, concurrency=3)

    def check_available(self) -> None:
        return None

    def ports_needed(self) -> int:
        return 1

    def launch(self, model: ResolvedModel, host: str, ports: list[int], workdir: Path) -> list[Launch]:
        argv = [sys.executable, "-c", FAKE, self.mode, str(ports[0]), str(self.pidfile)]
        if self.secret is None:
            return [Launch(argv, ports[0])]
        return [Launch(argv, ports[0], env={"FAKE_KEY": self.secret}, secrets=(self.secret,))]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _pids(pidfile: Path) -> list[int]:
    return [int(p) for p in pidfile.read_text().split()]


def _gone(pids: list[int], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def test_start_health_client_and_clean_stop(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    with Server(MODEL, FakeBackend("ok", pidfile)) as server:
        assert server.running
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        client = server.client
        assert isinstance(client, OpenAIChatClient)
        assert (client.base_url, client.model) == (server.base_url, "fake")
        assert client.capabilities.json_schema and client.concurrency == 3
        assert server.client is not client, "one client per access: async clients are bound to their loop"
        pids = _pids(pidfile)
        assert all(_alive(p) for p in pids)
    assert _gone(pids), "server and its grandchild are stopped"
    assert not server.running


async def test_async_context_manager(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    async with Server(MODEL, FakeBackend("ok", pidfile)) as server:
        assert server.running
        pids = _pids(pidfile)
    assert _gone(pids)


def test_sigterm_ignored_escalates_to_sigkill(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    server = Server(MODEL, FakeBackend("stubborn", pidfile)).start()
    pids = _pids(pidfile)
    started = time.monotonic()
    server.stop(grace=1.0)
    assert time.monotonic() - started < 8
    assert _gone(pids)


def test_crash_at_start_quotes_the_log_tail(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="exited with code 3") as info:
        Server(MODEL, FakeBackend("crash", tmp_path / "pids")).start()
    assert "fatal: unknown option --frobnicate" in str(info.value)


def test_never_healthy_times_out_and_leaves_nothing(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    with pytest.raises(ServerError, match="not healthy") as info:
        Server(MODEL, FakeBackend("silent", pidfile), startup_timeout=2).start()
    assert "fake server starting" in str(info.value)
    assert _gone(_pids(pidfile))


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        with pytest.raises(ServerError, match=f"port {busy} .* in use"):
            Server(MODEL, FakeBackend("ok", tmp_path / "pids"), port=busy).start()


def test_requested_port_is_used(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with Server(MODEL, FakeBackend("ok", tmp_path / "pids"), port=port) as server:
        assert server.port == port


def test_log_file_is_kept_when_asked(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "server.log"
    with Server(MODEL, FakeBackend("ok", tmp_path / "pids"), log_path=log_file):
        pass
    assert "fake server starting" in log_file.read_text()


DRIVER = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    sys.path.insert(0, {here!r})
    from test_server import MODEL, FakeBackend
    from lw_serve import Server
    signal.signal(signal.SIGINT, signal.default_int_handler)  # background jobs start with SIGINT ignored
    server = Server(MODEL, FakeBackend("ok", Path({pidfile!r})))
    {body}
    """
)


def _driver(tmp_path: Path, body: str) -> tuple[subprocess.Popen[str], list[int]]:
    pidfile = tmp_path / "pids"
    script = DRIVER.format(here=str(Path(__file__).parent), pidfile=str(pidfile), body=body)
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # a SIGKILLed driver cannot tidy its work dir
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc, _pids(pidfile)


def test_ctrl_c_leaves_no_orphan(tmp_path: Path) -> None:
    proc, pids = _driver(tmp_path, "with server:\n        print('ready', flush=True)\n        time.sleep(600)")
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=20)
    assert _gone(pids)


def test_exit_without_stop_leaves_no_orphan(tmp_path: Path) -> None:
    """A script that starts a server, drops it, and simply ends: the atexit hook still stops it."""
    body = "server.start(); print('ready', flush=True); del server; import gc; gc.collect(); time.sleep(0.5)"
    proc, pids = _driver(tmp_path, body)
    proc.wait(timeout=20)
    assert _gone(pids)


def test_parent_killed_hard_takes_the_server_down(tmp_path: Path) -> None:
    proc, pids = _driver(tmp_path, "server.start(); print('ready', flush=True); time.sleep(600)")
    proc.kill()  # SIGKILL: no atexit, no finally; the kernel's parent-death signal must do it
    proc.wait(timeout=20)
    server_pid, grandchild = pids
    assert _gone([server_pid])
    with contextlib.suppress(ProcessLookupError):  # a server's own children are its business; tidy up ours
        os.kill(grandchild, signal.SIGKILL)


def test_async_with_killed_hard_takes_the_server_down(tmp_path: Path) -> None:
    """``async with`` starts the server from a worker thread; the parent-death signal must hold there too."""
    body = (
        "import asyncio\n"
        "async def main():\n"
        "    async with server:\n"
        "        print('ready', flush=True)\n"
        "        await asyncio.sleep(600)\n"
        "asyncio.run(main())"
    )
    proc, pids = _driver(tmp_path, body)
    proc.kill()
    proc.wait(timeout=20)
    server_pid, grandchild = pids
    assert _gone([server_pid]), "llama-server would be left running, adopted by init"
    with contextlib.suppress(ProcessLookupError):
        os.kill(grandchild, signal.SIGKILL)


# -- secrets --------------------------------------------------------------------------------------

SECRET = "sk-lw-test-0123456789"


def _group(pgid: int) -> list[int]:
    """Every live process in a process group (a server and whatever it started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                    pids.append(int(entry.name))
    return pids


def _cmdline(pid: int) -> str:
    return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_secret_errors_and_logs_show_stars(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="lw_serve")
    with pytest.raises(ServerError) as info:
        Server(MODEL, FakeBackend("crash", tmp_path / "pids", secret=SECRET)).start()
    assert "api_key=***" in str(info.value) and SECRET not in str(info.value)
    assert "starting" in caplog.text and SECRET not in caplog.text


FAKE_SGLANG = textwrap.dedent(
    """
    import http.server, json, os, subprocess, sys
    argv = sys.argv[1:]
    port = int(argv[argv.index("--port") + 1])
    key = argv[argv.index("--api-key") + 1] if "--api-key" in argv else None
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(os.path.join({out!r}, f"{{port}}.json"), "w") as fh:
        json.dump({{"argv": argv, "env_has_secret": "LW_SERVE_SECRET_ARGS" in os.environ, "child": child.pid}}, fh)
    print(f"server_args=ServerArgs(port={{port}}, api_key={{key!r}})", flush=True)  # as SGLang logs it
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
        def log_message(self, *a):
            pass
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)


def test_sglang_servers_and_router_get_the_key_outside_their_command_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real launch path (bootstrap included) with stand-ins for sglang and sglang_router."""
    site, out = tmp_path / "site", tmp_path / "out"
    out.mkdir()
    for package, module in (("sglang", "launch_server"), ("sglang_router", "launch_router")):
        (site / package).mkdir(parents=True)
        (site / package / "__init__.py").write_text("")
        (site / package / f"{module}.py").write_text(FAKE_SGLANG.format(out=str(out)))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    model = ResolvedModel("writer", hf=str(tmp_path))
    with Server(model, SGLangBackend(replicas=2, api_key=SECRET), startup_timeout=60) as server:
        assert len(server.pids) == 3, "two replicas and the router"
        started = [pid for leader in server.pids for pid in _group(leader)]
        assert len(started) >= 6, "each launch and the child it started"
        for pid in started:
            assert SECRET not in _cmdline(pid), f"pid {pid}: {_cmdline(pid)}"
        seen = [json.loads(p.read_text()) for p in out.glob("*.json")]
        assert len(seen) == 3
        for record in seen:
            assert record["argv"][-2:] == ["--api-key", SECRET], "the key still reaches SGLang's argument parser"
            assert not record["env_has_secret"], "and is gone from the environment its children inherit"
        assert "api_key='***'" in server.log_tail() and SECRET not in server.log_tail()
        assert server.new_client().api_key == SECRET
    for record in seen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record["child"], signal.SIGKILL)
