"""The worker as a separate process joined to a `crossbar start` router, as in production."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import pytest_twisted

from tests.support import wampclient
from tests.support.paths import APPS
from tests.support.ports import free_port
from tests.support.processes import terminate
from tests.support.workers import worker_argv

TICKETS = {"worker": "w-secret", "tester": "t-secret"}


def crossbar_node_config(management_port: int, app_port: int) -> dict:
    allow_all = [{"uri": "", "match": "prefix",
                  "allow": {"call": True, "register": True, "publish": True, "subscribe": True},
                  "disclose": {"caller": True, "publisher": True}, "cache": True}]
    principals = {authid: {"ticket": ticket, "role": "controller"}
                  for authid, ticket in TICKETS.items()}
    return {
        "version": 2,
        "controller": {},
        "workers": [{
            "type": "router",
            "realms": [
                {"name": "realm1", "roles": [{"name": "anonymous", "permissions": allow_all}]},
                {"name": "management", "roles": [{"name": "controller", "permissions": allow_all}]},
            ],
            "transports": [
                {"type": "rawsocket", "serializers": ["cbor", "msgpack", "json"],
                 "endpoint": {"type": "tcp", "port": management_port, "interface": "127.0.0.1"},
                 "auth": {"ticket": {"type": "static", "principals": principals}}},
                {"type": "rawsocket", "serializers": ["cbor", "msgpack", "json"],
                 "endpoint": {"type": "tcp", "port": app_port, "interface": "127.0.0.1"}},
            ],
        }],
    }


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"crossbar exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)  # polling a port that nothing announces
    raise RuntimeError(f"crossbar did not listen on {port} within {timeout} s")


@pytest.fixture(scope="module")
def crossbar_router(tmp_path_factory):
    cbdir = tmp_path_factory.mktemp("cbdir")
    ports = {"management": free_port(), "app": free_port()}
    (cbdir / "config.json").write_text(json.dumps(
        crossbar_node_config(ports["management"], ports["app"])))
    crossbar = os.path.join(os.path.dirname(sys.executable), "crossbar")
    log = open(cbdir / "crossbar.log", "wb")  # noqa: SIM115 - closed in teardown
    process = subprocess.Popen([crossbar, "start", "--cbdir", str(cbdir)],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_listening(ports["management"], process)
        wait_listening(ports["app"], process)
        yield ports
    finally:
        terminate(process)
        log.close()


def worker_command(port: int, worker_id: str, options: dict | None = None) -> list[str]:
    return worker_argv(port, worker_id, {"pythonpath": [APPS], **(options or {})},
                       realm="management")


async def management_client(port: int, prefix: str) -> tuple:
    client = await wampclient.connect({"kind": "rawsocket", "host": "127.0.0.1", "port": port},
                                      "management", authid="tester", ticket=TICKETS["tester"])
    return client, await wampclient.follow(client, prefix)


def component(app_port: int, classname: str, **fields) -> dict:
    return {"type": "class", "classname": classname, "realm": "realm1",
            "transport": {"type": "rawsocket",
                          "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": app_port}},
            **fields}


@pytest_twisted.ensureDeferred
async def test_worker_process_serves_the_api_and_exits_zero_on_sigterm(crossbar_router, children):
    prefix = "crossbar.worker.proc1"
    client, events = await management_client(crossbar_router["management"], prefix)
    worker = children.spawn(worker_command(crossbar_router["management"], "proc1"),
                   env={"TEST_WORKER_TICKET": TICKETS["worker"]})
    try:
        ready = await events.wait_for("on_worker_ready", timeout=60)
        assert ready["pid"] == worker.pid
        started = await client.call(f"{prefix}.start_component", "g",
                                    component(crossbar_router["app"], "hello.Quiet"))
        assert started["state"] == "running"
        status = await client.call(f"{prefix}.get_status")
        assert status["pid"] == worker.pid
        assert await client.call(f"{prefix}.get_components") == ["g"]
        assert await worker.stop() == 0
        stop = await events.wait_for("on_component_stop", id="g")
        assert stop["reason"] == "requested"
        shutdown = await events.wait_for("on_shutdown")
        assert shutdown["stopped"] == ["g"]
    finally:
        await wampclient.close(client)


@pytest_twisted.ensureDeferred
async def test_worker_process_exits_nonzero_when_a_failure_shuts_it_down(
    crossbar_router, children
):
    prefix = "crossbar.worker.proc2"
    client, events = await management_client(crossbar_router["management"], prefix)
    worker = children.spawn(worker_command(crossbar_router["management"], "proc2",
                                           {"shutdown": "shutdown-on-any-component-failed"}),
                            env={"TEST_WORKER_TICKET": TICKETS["worker"]})
    try:
        await events.wait_for("on_worker_ready", timeout=60)
        await client.call(f"{prefix}.start_component", "crasher",
                          component(crossbar_router["app"], "faulty.CrashesAfterJoin"))
        assert await worker.exited == 1
        shutdown = await events.wait_for("on_shutdown")
        assert shutdown["exit_code"] == 1
        assert shutdown["reason"] == "policy"
    finally:
        await wampclient.close(client)


@pytest_twisted.ensureDeferred
async def test_worker_refused_by_the_management_realm_exits_3(crossbar_router, children):
    worker = children.spawn(worker_command(crossbar_router["management"], "intruder"),
                            env={"TEST_WORKER_TICKET": "wrong"})
    assert await worker.exited == 3
    assert "refused" in worker.text


def test_bad_options_are_refused_before_anything_starts():
    result = subprocess.run(
        [sys.executable, "-m", "container", "worker", "--management", "rs://127.0.0.1:9",
         "--id", "x", "--options", '{"restart": "sometimes"}'],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "restart" in result.stderr and "restart-never" in result.stderr


def test_the_worker_never_imports_crossbar():
    probe = ("import sys, container.cli, container.worker.process, container.worker.supervisor, "
             "container.worker.api, container.management; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'crossbar'))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"
