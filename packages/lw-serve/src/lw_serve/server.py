"""The one place lw starts model servers: a context manager around a backend's processes.

Each process runs in its own process group (``start_new_session``), is told to die with its
parent (Linux ``PR_SET_PDEATHSIG``, set from one long-lived spawner thread so that it holds for
``async with`` too), and is stopped with SIGTERM then SIGKILL to the whole group, from ``stop()``,
``__exit__`` (Ctrl-C included) and ``atexit`` — so no orphan servers. Secrets reach servers through
the environment only, and are shown as ``***`` in every command or log tail lw-serve logs or raises.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import queue
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import httpx
from lw_core import Capabilities, OpenAIChatClient
from lw_core.process import die_with_parent

from lw_serve.backends import Backend, Launch, default_backend, make_backend
from lw_serve.cpu import FAULT_SIGNALS, signal_name
from lw_serve.errors import ServerError
from lw_serve.models import ResolvedModel, resolve_model

log = logging.getLogger(__name__)

_live: set[Server] = set()  # started and not yet stopped: strong refs, so a dropped Server still stops at exit


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_live):
        server.stop()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


class _Spawner:
    """Starts every server process from one thread that lives as long as the process.

    Linux sends the parent-death signal when the *thread* that forked the child ends, not the
    process: a server forked from a worker thread (``async with`` starts servers through
    ``asyncio.to_thread``) would die with that thread, so such servers used to run without the
    signal, and a SIGKILLed driver left them running. Forking from this one thread arms the signal
    for sync and async callers alike.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, argv: list[str], **options: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="lw-serve-spawner", daemon=True)
                self._thread.start()
        job: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
        self._jobs.put((job, lambda: subprocess.Popen(argv, preexec_fn=die_with_parent(), **options)))
        return job.result()

    def _serve(self) -> None:
        while True:
            job, call = self._jobs.get()
            try:
                job.set_result(call())
            except BaseException as exc:  # handed to the caller's thread
                job.set_exception(exc)


_spawner = _Spawner()


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by ``***``.

    >>> redact("llama-server --api-key sk-123 --port 8", ["sk-123"])
    'llama-server --api-key *** --port 8'
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class Server:
    """Start a model server, wait until it is healthy, hand out clients, stop it without orphans.

    >>> with Server("smollm2-135m-instruct") as server:  # doctest: +SKIP
    ...     server.base_url, server.model_name
    ('http://127.0.0.1:41235/v1', 'smollm2-135m-instruct')

    ``backend`` is a name (``llamacpp``, ``transformers``, ``sglang``), a configured backend
    object, or ``None`` for the default (:func:`~lw_serve.backends.default_backend`).
    ``port=None`` picks a free port; a given port that is busy is an error, never a silent change.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | ResolvedModel,
        backend: str | Backend | None = None,
        *,
        name: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 180.0,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.model = model if isinstance(model, ResolvedModel) else resolve_model(model, name=name)
        if isinstance(backend, str):
            backend = make_backend(backend)
        self.backend: Backend = backend or default_backend(self.model)
        self.host = host
        self.requested_port = port
        self.startup_timeout = startup_timeout
        self._log_path = Path(log_path) if log_path else None
        self._workdir: Path | None = None
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []
        self._secrets: set[str] = set()
        self._port: int | None = None
        self._lock = threading.Lock()

    # -- public surface -------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        """What clients send as ``"model"``."""
        return self.model.name

    @property
    def port(self) -> int:
        if self._port is None:
            raise ServerError("the server is not started: use `with Server(...)` or call start()")
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, e.g. ``http://127.0.0.1:8123/v1``."""
        return f"http://{_url_host(self.host)}:{self.port}/v1"

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    @property
    def client(self) -> OpenAIChatClient:
        """A new client for this server with the backend's capabilities.

        A fresh one per access: an async client belongs to the event loop it first ran on, and
        tests and apps often use several loops against one long-lived server.
        """
        return self.new_client()

    def new_client(self, **overrides: object) -> OpenAIChatClient:
        caps = self.capabilities
        options: dict[str, object] = {
            "base_url": self.base_url,
            "model": self.model_name,
            "api_key": getattr(self.backend, "api_key", None),
            "capabilities": caps,
            "concurrency": max(caps.concurrency, 1),
        }
        options.update(overrides)
        return OpenAIChatClient(**options)  # type: ignore[arg-type]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    @property
    def running(self) -> bool:
        return bool(self._procs) and all(p.poll() is None for p in self._procs)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server logs, for error messages (secrets shown as ``***``)."""
        chunks = []
        for path in self._logs:
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            chunks.append("\n".join(text.splitlines()[-lines:]))
        return redact("\n".join(chunks), self._secrets)

    def start(self) -> Server:
        with self._lock:
            if self._procs:
                return self
            self.backend.check_available()
            ports = self._ports()
            self._workdir = Path(tempfile.mkdtemp(prefix="lw-serve-"))
            self._logs = []
            launches = self.backend.launch(self.model, self.host, ports, self._workdir)
            self._port = launches[-1].port
            _live.add(self)
            try:
                for i, launch in enumerate(launches):
                    self._start_one(launch, i)
            except BaseException:
                self.stop()
                raise
            log.info("%s serving %r at %s", self.backend.name, self.model_name, self.base_url)
            return self

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every process group (router first), then SIGKILL what is left after ``grace`` s."""
        procs, self._procs = self._procs[::-1], []
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("server pid %d ignored SIGTERM; killing it", proc.pid)
            _signal_group(proc, signal.SIGKILL)  # also reaps children that outlived the leader
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        if self._workdir is not None:  # symlinks and default logs; a log_path lives elsewhere
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        _live.discard(self)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Server:
        """``async with Server(...)``: start in a worker thread so the event loop keeps running."""
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        where = self.base_url if self._port else "not started"
        return f"Server(model={self.model_name!r}, backend={self.backend.name!r}, {where})"

    # -- internals ------------------------------------------------------------------------------
    def _ports(self) -> list[int]:
        needed = self.backend.ports_needed()
        if self.requested_port is None:
            return _distinct_free_ports(self.host, needed)
        if port_in_use(self.host, self.requested_port):
            raise ServerError(
                f"port {self.requested_port} on {self.host} is already in use: pass another port, "
                "or none to pick a free one"
            )
        return [*_distinct_free_ports(self.host, needed - 1), self.requested_port]

    def _start_one(self, launch: Launch, index: int) -> None:
        """Spawn one process and wait for its health; once, start its crash fallback instead if it died by a fault
        signal before it was healthy (e.g. llama.cpp repacking weights for CPU instructions the VM refuses)."""
        self._spawn(launch, index)
        try:
            self._wait_healthy(launch)
        except _DiedBySignal as death:
            if launch.crash_fallback is None or death.signum not in FAULT_SIGNALS:
                raise death.error from None
            log.warning("%s server for %r died by %s during start-up; starting its fallback",
                        self.backend.name, self.model_name, signal_name(death.signum))  # fmt: skip
            log.debug("fallback: %s", self._shown(launch.crash_fallback))
            if launch.on_fallback is not None:
                launch.on_fallback(death.signum)
            dead, log_file = self._procs.pop(), self._logs.pop()
            _signal_group(dead, signal.SIGKILL)  # anything it forked
            with open(log_file, "a", encoding="utf-8") as out:
                out.write(f"\n[lw-serve] killed by {signal_name(death.signum)}; starting again with the fallback\n")
            self._start_one(launch.crash_fallback, index)

    def _spawn(self, launch: Launch, index: int) -> None:
        assert self._workdir is not None
        cwd = launch.cwd or self._workdir
        for link, target in launch.links.items():
            path = cwd / link
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.symlink_to(target, target_is_directory=True)
        if self._log_path is not None:
            log_file = self._log_path if index == 0 else self._log_path.with_suffix(f".{index}.log")
            log_file.parent.mkdir(parents=True, exist_ok=True)
        else:
            log_file = self._workdir / f"server-{index}.log"
        self._logs.append(log_file)
        self._secrets.update(launch.secrets)
        env = {**os.environ, **launch.env}
        log.debug("starting %s", self._shown(launch))
        out: IO[bytes]
        with open(log_file, "ab") as out:
            proc = _spawner.popen(
                launch.argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._procs.append(proc)

    def _shown(self, launch: Launch) -> str:
        """The command as logs and errors show it."""
        return redact(shlex.join(launch.argv), self._secrets)

    def _wait_healthy(self, launch: Launch) -> None:
        proc = self._procs[-1]
        url = f"http://{_url_host(self.host)}:{launch.port}{launch.health_path}"
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=5.0) as http:
            while True:
                code = proc.poll()
                if code is not None:
                    how = f"was killed by {signal_name(-code)}" if code < 0 else f"exited with code {code}"
                    hint = f"\nwhat to try: {launch.crash_hint}" if launch.crash_hint else ""
                    error = ServerError(
                        f"{self.backend.name} server for {self.model_name!r} {how} during start-up (before it "
                        f"was healthy).{hint}\ncommand: {self._shown(launch)}\nlog tail:\n{self.log_tail()}"
                    )
                    if code < 0:
                        raise _DiedBySignal(-code, error)
                    raise error
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(url).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"{self.backend.name} server for {self.model_name!r} was not healthy at {url} after "
                        f"{self.startup_timeout:.0f} s (raise startup_timeout if the machine is busy).\n"
                        f"log tail:\n{self.log_tail()}"
                    )
                time.sleep(0.2)


class _DiedBySignal(Exception):
    """A process killed by a signal before it was healthy; ``error`` is raised unless a fallback takes over."""

    def __init__(self, signum: int, error: ServerError) -> None:
        super().__init__(str(error))
        self.signum, self.error = signum, error


def _distinct_free_ports(host: str, count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port(host)
        if port not in ports:
            ports.append(port)
    return ports


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
