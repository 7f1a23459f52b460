"""A node loses nothing and can always be stopped: worker exits, a second node of the same
configuration, a run directory removed or made read-only, a signal at any moment of the start,
a socket folder left behind by a killed node, a worker that cannot start (issue 12, node side).
Every case runs a real ``container run`` with real Crossbar.io routers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from tests.support import wampclient
from tests.support.node import (
    DEADLINE,
    STOP_DEADLINE,
    NodeProcess,
    component,
    hello_config,
    managing,
    run_to_end,
)
from tests.support.paths import APPS
from tests.support.ports import free_port, port_is_free
from tests.support.wampclient import poll


def exiter_config(port: int) -> dict[str, Any]:
    config = hello_config(port, [component("exiter", "exiter.Exiter", port)],
                          restart="restart-never")
    config["workers"][1]["options"]["pythonpath"] = [APPS]
    return config


@pytest_twisted.ensureDeferred
async def test_worker_exiting_with_status_1_unannounced_is_restarted_with_its_components(
    nodes,
) -> None:
    port = free_port()
    node = await nodes.ready(exiter_config(port))
    app = await wampclient.connect({"kind": "rawsocket", "host": "127.0.0.1", "port": port},
                                   "realm1")
    try:
        await app.call("com.example.exiter.exit", 1)
    except Exception:
        pass  # the callee's process is gone: the call fails, which is the point
    finally:
        await wampclient.close(app)
    [died] = await node.wait_event("worker died", worker="w1")
    assert died["code"] == 1
    await node.wait_event("worker restarted", worker="w1")
    await node.wait_event("on_component_start", count=2, component="exiter")
    assert node.events("worker exited") == []
    node.signal(signal.SIGTERM)
    assert await node.wait_exit(STOP_DEADLINE) == 0


@pytest_twisted.ensureDeferred
async def test_a_second_node_of_the_same_configuration_is_refused_and_touches_nothing(
    nodes,
) -> None:
    port = free_port()
    config = hello_config(port)
    first = await nodes.ready(config, "same")
    files = sorted(path.name for path in first.run_dir.iterdir())
    second = nodes(config, "same")
    assert await second.wait_exit(STOP_DEADLINE) == 1
    assert "a node is already running this configuration" in second.stderr()
    assert sorted(path.name for path in first.run_dir.iterdir()) == files
    async with managing(first) as client:
        assert await client.worker_call("crossbar.worker.w1", "get_components") == [
            "greeter", "listener"]
    first.signal(signal.SIGTERM)
    assert await first.wait_exit(STOP_DEADLINE) == 0
    assert port_is_free(port)


@pytest.mark.parametrize("damage", ["removed", "read-only"])
@pytest_twisted.ensureDeferred
async def test_a_damaged_run_directory_still_lets_the_node_report_and_stop(
    nodes, damage: str
) -> None:
    port = free_port()
    node = await nodes.ready(hello_config(port, restart="restart-failed"))
    worker_pid = node.ctl()["workers"][0]["pid"]
    if damage == "removed":
        shutil.rmtree(node.run_dir)
    else:
        os.chmod(node.run_dir, stat.S_IRUSR | stat.S_IXUSR)
    try:
        os.kill(worker_pid, signal.SIGKILL)
        await node.wait_event("worker died", worker="w1")
        node.signal(signal.SIGTERM)
        assert await node.wait_exit(STOP_DEADLINE + 30) == 0
    finally:
        if node.run_dir.exists():
            os.chmod(node.run_dir, stat.S_IRWXU)
    assert node.survivors() == []
    assert port_is_free(port)


@pytest.mark.parametrize("moment", ["run directory made", "first child", "router ready"])
@pytest_twisted.ensureDeferred
async def test_a_signal_at_any_moment_of_the_start_stops_the_node_cleanly(
    nodes, moment: str
) -> None:
    port = free_port()
    node = nodes(hello_config(port))
    if moment == "run directory made":  # before the reactor runs: planning, binding
        await poll(node.run_dir.exists, DEADLINE, interval=0.002)
    elif moment == "first child":
        await poll(lambda: bool(_children(node)), DEADLINE, interval=0.005)
    else:
        await node.wait_event("router ready")
    node.signal(signal.SIGTERM)
    assert await node.wait_exit(STOP_DEADLINE) == 0
    assert node.survivors() == []
    assert not node.run_dir.exists()
    assert port_is_free(port)


def _children(node: NodeProcess) -> list[int]:
    node.remember_children()
    return sorted(node.seen)


def test_a_worker_that_cannot_start_fails_the_node_instead_of_ready(tmp_path: Path) -> None:
    config = hello_config(free_port(), cpu_affinity=[4096])
    path = tmp_path / "affinity.json"
    path.write_text(json.dumps(config))
    result = run_to_end(path, "--log-format", "json", timeout=120)
    assert result.returncode == 1
    events = [json.loads(line).get("event") for line in result.stdout.splitlines()]
    assert "node ready" not in events
    assert "worker 'w1' could not start" in result.stderr
    assert "cpu_affinity" in result.stderr


@pytest_twisted.ensureDeferred
async def test_a_socket_folder_left_by_a_killed_node_is_replaced_by_the_next_run(
    nodes,
) -> None:
    deep = Path(tempfile.mkdtemp(prefix="deep-")) / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    try:
        port = free_port()
        config_path = deep / "node.json"
        config_path.write_text(json.dumps(hello_config(port)))
        first = await nodes.ready(config_path, "first")
        socket_path = Path(first.ctl()["management"].removeprefix("unix:"))
        assert not socket_path.is_relative_to(deep), "the path is too long for a socket"
        first.kill_all()
        assert socket_path.parent.exists(), "a node killed with SIGKILL leaves it behind"
        second = await nodes.ready(config_path, "second")
        assert second.ctl()["management"] == f"unix:{socket_path}"
        second.signal(signal.SIGTERM)
        assert await second.wait_exit(STOP_DEADLINE) == 0
        assert not socket_path.parent.exists()
    finally:
        shutil.rmtree(deep.parent.parent, ignore_errors=True)


@pytest_twisted.ensureDeferred
async def test_a_corrupt_checkpoint_is_set_aside_and_the_configured_components_come_back(
    nodes,
) -> None:
    port = free_port()
    node = await nodes.ready(hello_config(port))
    state_file = node.run_dir / "w1.state.json"
    worker_pid = node.ctl()["workers"][0]["pid"]
    os.kill(worker_pid, signal.SIGSTOP)  # no checkpoint write can race the corruption
    state_file.write_text("[]")
    os.kill(worker_pid, signal.SIGKILL)
    [aside] = await node.wait_event("checkpoint set aside", worker="w1")
    assert Path(aside["checkpoint"]["moved_to"]).read_text() == "[]", "the evidence is kept"
    await node.wait_event("on_component_start", count=2, component="greeter")
    await node.wait_event("on_component_start", count=2, component="listener")
    node.signal(signal.SIGTERM)
    assert await node.wait_exit(STOP_DEADLINE) == 0


def test_a_node_whose_output_reader_went_away_still_stops_on_a_signal(
    tmp_path: Path, nodes,
) -> None:
    """``container run ... | head``: once the pipe's reader is gone, SIGTERM still stops it."""
    path = tmp_path / "piped.json"
    path.write_text(json.dumps(hello_config(free_port())))
    with open(tmp_path / "piped.stderr.log", "wb") as log:
        process = nodes.popen(path, "--log-format", "json", stdout=subprocess.PIPE, stderr=log)
        assert process.stdout is not None
        for line in process.stdout:
            if b'"node ready"' in line:
                break
        process.stdout.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(STOP_DEADLINE + 10) == 0
