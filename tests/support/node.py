"""``container run`` as a child process: ``NodeProcess``, ``Nodes`` (the ``nodes`` fixture,
which kills every node it started and everything each spawned, by pid), the hello example's
configuration on a given port, and a client of a node's management realm."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
from twisted.internet import reactor

from tests.support.paths import EXAMPLES, ROOT
from tests.support.processes import kill, signal_pid
from tests.support.wampclient import poll

DEADLINE = 30.0
STOP_DEADLINE = 20.0
ALL = {"call": True, "register": True, "publish": True, "subscribe": True}


def component(component_id: str, classname: str, port: int, **fields: Any) -> dict[str, Any]:
    return {"id": component_id, "type": "class", "classname": classname, "realm": "realm1",
            "transport": {"type": "rawsocket", "serializer": "cbor",
                          "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": port}},
            **fields}


def hello_config(port: int, components: list[dict[str, Any]] | None = None,
                 **options: Any) -> dict[str, Any]:
    """The hello example's layout on ``port``: realm1 for anybody, the example components."""
    if components is None:
        components = [component("greeter", "hello.Greeter", port, extra={"interval": 0.2}),
                      component("listener", "hello.Listener", port)]
    return {
        "version": 2,
        "workers": [
            {"type": "router", "id": "router1",
             "realms": [{"name": "realm1", "roles": [
                 {"name": "anonymous", "permissions": [
                     {"uri": "", "match": "prefix", "allow": ALL}]}]}],
             "transports": [{"type": "universal", "id": "app",
                             "endpoint": {"type": "tcp", "interface": "127.0.0.1",
                                          "port": port},
                             "rawsocket": {}, "websocket": {"ws": {"type": "websocket"}}}]},
            {"type": "container", "id": "w1",
             "options": {"pythonpath": [str(EXAMPLES)], **options},
             "components": components},
        ],
    }


def run_command(config_path: Path, *more: str) -> list[str]:
    """``container run CONFIG ...`` with this interpreter."""
    return [sys.executable, "-m", "container", "run", str(config_path), *more]


def run_to_end(config_path: Path, *more: str,
               timeout: float = DEADLINE) -> subprocess.CompletedProcess[str]:
    """``container run CONFIG ...`` run to its end (a node expected to refuse to start)."""
    return subprocess.run(run_command(config_path, *more), capture_output=True, text=True,
                          timeout=timeout, cwd=str(ROOT))


class NodeProcess:
    """A ``container run CONFIG --log-format json`` child; its stdout lines parsed as they
    come (a reader thread), its stderr in a file, every process it spawned remembered."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.run_dir = config_path.parent / ".container-run" / config_path.stem
        self.records: list[dict[str, Any]] = []
        self.seen: set[int] = set()
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        self.log_path = log_path
        self.popen = subprocess.Popen(
            run_command(config_path, "--log-format", "json"),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log, cwd=str(ROOT),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with contextlib.suppress(ValueError):
                self.records.append(json.loads(line))

    # -- what it said ---------------------------------------------------------------------------

    def events(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [r for r in list(self.records) if r.get("event") == event
                and all(r.get(k) == v for k, v in fields.items())]

    def stderr(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_event(self, event: str, timeout: float = DEADLINE, count: int = 1,
                         **fields: Any) -> list[dict[str, Any]]:
        def there() -> bool:
            self.remember_children()
            if self.popen.poll() is not None and len(self.events(event, **fields)) < count:
                raise AssertionError(f"node exited ({self.popen.returncode}) before "
                                     f"{event} {fields}:\n{self.stderr()[-3000:]}")
            return len(self.events(event, **fields)) >= count

        await poll(there, timeout, interval=0.02)
        return self.events(event, **fields)

    def ctl(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "ctl.json").read_text())

    # -- its processes --------------------------------------------------------------------------

    def remember_children(self) -> None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.popen.pid).children(recursive=True):
                self.seen.add(child.pid)

    def survivors(self) -> list[int]:
        return [pid for pid in self.seen if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]

    async def wait_exit(self, timeout: float = STOP_DEADLINE) -> int:
        await poll(lambda: self.popen.poll() is not None, timeout, interval=0.02)
        self._reader.join(5)
        return self.popen.returncode

    def signal(self, signum: int) -> None:
        self.remember_children()
        if self.popen.poll() is None:
            signal_pid(self.popen.pid, signum)

    def kill_all(self) -> None:
        """Kill the node and everything it spawned that is still there (by pid)."""
        self.remember_children()
        for pid in [self.popen.pid, *self.seen]:
            signal_pid(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        self._reader.join(5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._log.close()


class Nodes:
    """``nodes(config, name)`` runs a node on ``config``: a dict (written to
    ``folder/NAME.json``) or the path of a configuration file. Its stderr goes to
    ``folder/NAME.stderr.log``. ``kill_all`` kills every node started, by pid, with everything
    it spawned."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[NodeProcess] = []
        self.bare: list[subprocess.Popen[bytes]] = []

    def __call__(self, config: dict[str, Any] | Path, name: str | None = None) -> NodeProcess:
        if isinstance(config, Path):
            path, name = config, name or config.stem
        else:
            name = name or "node"
            path = self.folder / f"{name}.json"
            path.write_text(json.dumps(config, indent=2))
        node = NodeProcess(path, self.folder / f"{name.replace('/', '_')}.stderr.log")
        self.started.append(node)
        return node

    async def ready(self, config: dict[str, Any] | Path, name: str | None = None,
                    timeout: float = DEADLINE) -> NodeProcess:
        """``nodes(config, name)``, once it has said "node ready"."""
        node = self(config, name)
        await node.wait_event("node ready", timeout=timeout)
        return node

    def popen(self, config_path: Path, *more: str, **options: Any) -> subprocess.Popen[bytes]:
        """``container run CONFIG ...`` as a bare ``Popen`` whose pipes the test handles
        (``options`` as for ``Popen``); killed by pid in ``kill_all`` if still running."""
        process = subprocess.Popen(run_command(config_path, *more), cwd=str(ROOT), **options)
        self.bare.append(process)
        return process

    def kill_all(self) -> None:
        for node in self.started:
            node.kill_all()
        for process in self.bare:
            kill(process)


@contextlib.asynccontextmanager
async def managing(node: NodeProcess) -> AsyncIterator[Any]:
    """``async with managing(node) as client``: a ``management_client``, closed after."""
    client = await management_client(node)
    try:
        yield client
    finally:
        await client.close()


async def management_client(node: NodeProcess) -> Any:
    """Join the node's management realm with the credentials it wrote for ``container ctl``."""
    from container.management import Credentials, parse_management_url
    from container.management.client import connect_management

    ctl = node.ctl()
    return await connect_management(
        reactor, parse_management_url(ctl["management"]), ctl["realm"],
        Credentials(ctl["authid"], ctl["authmethod"], ctl["secret"]),
    )
