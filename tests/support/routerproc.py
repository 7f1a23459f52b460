"""Run the embedded Crossbar.io router (``python -m container.router``) as a child process.

Tests start routers through the ``routers`` fixture (a ``Routers``), which stops every one
it started, by pid, in its teardown::

    router = routers.start(config)            # in a short temporary folder of its own
    url = router.url("app", "ws")             # ws://127.0.0.1:PORT/ws
    host, port = router.tcp("app")            # for a rawsocket client
    path = router.unix_path("mgmt")           # for a rawsocket client on a unix socket
    router.kill()                             # simulate losing the router ...
    router.restart()                          # ... and bring it back on the same ports

The ready line is awaited with a deadline by polling the pipe (no fixed sleeps). The router's
stderr (its log) goes to a file in ``tmp_dir`` so that a chatty router can never block on a
full pipe; it is quoted in the error when the router fails to start. Every process is
signalled by its pid and reaped, so nothing outlives the test that started it.
"""

from __future__ import annotations

import copy
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.paths import ROOT
from tests.support.processes import kill, terminate

#: How long the router may take to print its ready line (importing crossbar takes ~2 s).
READY_TIMEOUT = 30.0
#: How long a SIGTERM'd router may take to exit before it is killed.
STOP_TIMEOUT = 15.0


class RouterStartError(RuntimeError):
    """The router process exited or stayed silent instead of printing its ready line."""

    def __init__(self, message: str, returncode: int | None, stderr: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


class RouterProcess:
    """A running ``python -m container.router`` child and the addresses it listens on."""

    def __init__(self, config: dict[str, Any], tmp_dir: Path, *, loglevel: str = "info") -> None:
        self.config = copy.deepcopy(config)
        self.tmp_dir = Path(tmp_dir)
        self.loglevel = loglevel
        self.transports: list[dict[str, Any]] = []
        self.returncode: int | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._generation = 0
        self.config_path = self.tmp_dir / "router-config.json"
        self.log_path = self.tmp_dir / "router-0.log"

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError("the router process has not been started")
        return self._popen.pid

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def start(
        self,
        timeout: float = READY_TIMEOUT,
        sockets: Mapping[str, socket.socket] | None = None,
    ) -> RouterProcess:
        """Spawn the router on ``self.config`` and wait for its ready line.

        ``sockets`` (from ``container.router.listeners.bind_listeners``) are handed to the child
        as ``--listen-fd ID=FD`` and closed here once it has them; by default every plain
        endpoint of the configuration is bound here, ``port: 0`` getting a free port that
        stays the router's across restarts."""
        if self.running:
            raise RuntimeError(f"router pid {self.pid} is still running")
        if sockets is None:  # Crossbar.io refuses port 0: bind here and pin the real ports
            from container.router.listeners import bind_listeners, pin_ports

            sockets = bind_listeners(self.config, str(self.tmp_dir))
            self.config = pin_ports(self.config, sockets)
        fd_args = [f"--listen-fd={tid}={sock.fileno()}" for tid, sock in sockets.items()]
        self.config_path.write_text(json.dumps(self.config, indent=2))
        self.log_path = self.tmp_dir / f"router-{self._generation}.log"
        self._generation += 1
        self.returncode = None
        with open(self.log_path, "wb") as log:
            self._popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "container.router",
                    str(self.config_path),
                    "--loglevel",
                    self.loglevel,
                    *fd_args,
                ],
                pass_fds=[sock.fileno() for sock in sockets.values()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=str(ROOT),
                env=_child_env(),
            )
        for sock in sockets.values():
            sock.close()
        try:
            ready = self._read_ready_line(timeout)
        except BaseException:
            self.kill()
            raise
        self.transports = ready["transports"]
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM by pid and wait; SIGKILL if it does not exit in time. Returns the exit code
        (None if it was never started). Safe to call twice."""
        if self._popen is None:
            return None
        terminate(self._popen, timeout)
        return self._reaped()

    def kill(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGKILL by pid (a router crash: no clean close, unix socket file left behind)."""
        if self._popen is None:
            return None
        kill(self._popen, timeout)
        return self._reaped()

    def restart(self, timeout: float = READY_TIMEOUT) -> RouterProcess:
        """Stop the router if it runs, then start a new one listening on the same addresses.

        TCP ports that were 0 in the config are pinned to the ports the first start reported,
        so clients can reconnect to the address they knew."""
        self.stop()
        self.config = self._pinned_config()
        return self.start(timeout)

    def read_log(self) -> str:
        """The current router process's stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> RouterProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------------

    def transport(self, transport_id: str) -> dict[str, Any]:
        """The ready-line entry of one transport."""
        for t in self.transports:
            if t["id"] == transport_id:
                return t
        known = ", ".join(t["id"] for t in self.transports)
        raise KeyError(f"no transport {transport_id!r} (the router has: {known})")

    def tcp(self, transport_id: str) -> tuple[str, int]:
        """(host, port) of a TCP transport."""
        endpoint = self.transport(transport_id)["endpoint"]
        if endpoint["type"] != "tcp":
            raise ValueError(f"transport {transport_id!r} listens on {endpoint['type']}, not tcp")
        return endpoint["host"], int(endpoint["port"])

    def port(self, transport_id: str) -> int:
        return self.tcp(transport_id)[1]

    def unix_path(self, transport_id: str) -> str:
        endpoint = self.transport(transport_id)["endpoint"]
        if endpoint["type"] != "unix":
            raise ValueError(f"transport {transport_id!r} listens on {endpoint['type']}, not unix")
        return str(endpoint["path"])

    def url(self, transport_id: str, path: str = "ws") -> str:
        """WebSocket URL of a TCP transport. A plain websocket transport answers on any path; a
        universal one only on the paths of its "websocket" map."""
        host, port = self.tcp(transport_id)
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{port}/{path.lstrip('/')}"

    def client_transport(
        self,
        transport_id: str,
        kind: str = "rawsocket",
        serializer: str = "cbor",
        path: str = "ws",
    ) -> dict[str, Any]:
        """A Crossbar.io component ``transport`` config that reaches this router."""
        endpoint = self.transport(transport_id)["endpoint"]
        if endpoint["type"] == "tcp":
            client_ep: dict[str, Any] = {
                "type": "tcp",
                "host": endpoint["host"],
                "port": endpoint["port"],
            }
        else:
            client_ep = {"type": "unix", "path": endpoint["path"]}
        if kind == "rawsocket":
            return {"type": "rawsocket", "endpoint": client_ep, "serializer": serializer}
        if kind != "websocket":
            raise ValueError(f"kind must be 'rawsocket' or 'websocket', not {kind!r}")
        url = (
            self.url(transport_id, path) if endpoint["type"] == "tcp" else f"ws://localhost/{path}"
        )
        return {
            "type": "websocket",
            "url": url,
            "endpoint": client_ep,
            "serializers": [serializer],
        }

    # -- internals -------------------------------------------------------------------------------

    def _read_ready_line(self, timeout: float) -> dict[str, Any]:
        assert self._popen is not None and self._popen.stdout is not None
        fd = self._popen.stdout.fileno()
        deadline = time.monotonic() + timeout
        buf = b""
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._start_error(f"no ready line within {timeout:.0f} s")
            readable, _, _ = select.select([fd], [], [], min(remaining, 0.5))
            if not readable:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self._popen.wait(STOP_TIMEOUT)
                raise self._start_error("the router exited before it was ready")
            buf += chunk
        line = buf.split(b"\n", 1)[0]
        try:
            ready = json.loads(line)
        except ValueError as e:
            raise self._start_error(f"unexpected first line on stdout: {line!r}") from e
        if ready.get("event") != "ready" or ready.get("pid") != self._popen.pid:
            raise self._start_error(f"unexpected ready line: {ready!r}")
        return ready

    def _start_error(self, message: str) -> RouterStartError:
        code = self._popen.poll() if self._popen is not None else None
        stderr = self.read_log()
        tail = "\n".join(stderr.splitlines()[-30:])
        return RouterStartError(f"{message} (exit code {code}); stderr:\n{tail}", code, stderr)

    def _reaped(self) -> int | None:
        assert self._popen is not None
        if self._popen.stdout is not None:
            self._popen.stdout.close()
        self.returncode = self._popen.returncode
        return self.returncode

    def _pinned_config(self) -> dict[str, Any]:
        config = copy.deepcopy(self.config)
        reported = {t["id"]: t["endpoint"] for t in self.transports}
        for i, t in enumerate(config.get("transports", [])):
            endpoint = t.get("endpoint", {})
            tid = t.get("id", f"transport{i}")
            if endpoint.get("type") == "tcp" and endpoint.get("port") == 0 and tid in reported:
                endpoint["port"] = reported[tid]["port"]
        return config


class Routers:
    """Router processes started for a test (or a module, or the session): each in a folder
    of its own with a short path (unix socket paths are limited to about 100 bytes), all
    stopped by pid and their folders removed by ``stop_all``."""

    def __init__(self) -> None:
        self.started: list[RouterProcess] = []
        self._folders: list[Path] = []

    def folder(self) -> Path:
        """A new empty folder with a short path, removed by ``stop_all``."""
        path = Path(tempfile.mkdtemp(prefix="rt-"))
        self._folders.append(path)
        return path

    def start(
        self,
        config: dict[str, Any],
        folder: Path | None = None,
        *,
        timeout: float = READY_TIMEOUT,
        sockets: Mapping[str, socket.socket] | None = None,
    ) -> RouterProcess:
        """Write ``config`` into ``folder`` (a new one by default), start the router and wait
        until it is listening. ``sockets``: pre-bound listeners for some transports (see
        ``RouterProcess.start``). Raises :class:`RouterStartError` (with the router's stderr)
        if it exits or stays silent."""
        process = RouterProcess(config, folder or self.folder())
        self.started.append(process)
        return process.start(timeout, sockets)

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()
        for path in self._folders:
            shutil.rmtree(path, ignore_errors=True)


def _child_env() -> dict[str, str]:
    """The test's environment, with the project importable regardless of the test's cwd."""
    env = dict(os.environ)
    paths = [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env
