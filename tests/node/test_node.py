"""``container run`` end to end: the node controller as a real subprocess on a configuration
written here (free loopback ports), with the example components from ``node-config/``.

Every node is started through the ``nodes`` fixture, which remembers the node and every
process it spawned (psutil) and kills whatever is left after the test, by pid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.support import wampclient
from tests.support.node import (
    DEADLINE,
    STOP_DEADLINE,
    component,
    hello_config,
    managing,
    run_to_end,
)
from tests.support.paths import EXAMPLES
from tests.support.ports import free_port, port_is_free
from tests.support.router import TESTER_TICKET, WORKER_TICKET
from tests.support.wampclient import poll

# -------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_configured_components_join_and_talk_over_the_router(nodes):
    port = free_port()
    node = await nodes.ready(hello_config(port))
    started = {r["component"] for r in node.events("on_component_start", worker="w1")}
    assert started == {"greeter", "listener"}
    app = await wampclient.connect({"kind": "rawsocket", "host": "127.0.0.1", "port": port},
                                   "realm1")
    try:
        answer = await app.call("com.example.hello.greet", "test")
        assert answer.startswith("hello test")
    finally:
        await wampclient.close(app)
    # the listener got ticks from the greeter and called it back (it logs the answers)
    await poll(lambda: "greeter says" in node.stderr(), DEADLINE)


@pytest_twisted.ensureDeferred
async def test_management_realm_is_private_and_ctl_file_is_owner_only(nodes):
    port = free_port()
    config = hello_config(port)
    # the worst case: the application transport hands out a role by name, for any realm
    router = config["workers"][0]
    router["realms"][0]["roles"][0]["name"] = "controller"
    router["transports"][0]["rawsocket"] = {
        "auth": {"anonymous": {"type": "static", "role": "controller"}}}
    node = await nodes.ready(config)
    assert (node.run_dir.stat().st_mode & 0o777) == 0o700
    assert (node.run_dir / "ctl.json").stat().st_mode & 0o777 == 0o600
    ctl = node.ctl()
    assert ctl["node_pid"] == node.popen.pid
    assert [w["id"] for w in ctl["workers"]] == ["w1"]
    assert ctl["management"].startswith("unix:")
    with pytest.raises(Exception, match=r"no_such_role|not_authorized|no_such_realm"):
        await wampclient.connect({"kind": "rawsocket", "host": "127.0.0.1", "port": port},
                                 "crossbar")
    async with managing(node) as client:
        status = await client.worker_call("crossbar.worker.w1", "get_status")
        assert status["id"] == "w1"
    router_config = json.loads((node.run_dir / "router-node-management.json").read_text())
    management = next(t for t in router_config["transports"] if t["id"] == "management")
    principals = management["auth"]["ticket"]["principals"]
    assert sorted(principals) == ["ctl", "node", "worker-w1"]
    secrets = [p["ticket"] for p in principals.values()]
    node.remember_children()
    for pid in [node.popen.pid, *node.seen]:
        command_line = " ".join(psutil.Process(pid).cmdline())
        assert not any(secret in command_line for secret in secrets)


@pytest_twisted.ensureDeferred
async def test_sigterm_stops_components_cleanly_and_frees_everything(nodes):
    port = free_port()
    node = await nodes.ready(hello_config(port))
    node.remember_children()
    assert len(node.seen) >= 2  # a router and a worker at least
    node.signal(signal.SIGTERM)
    assert await node.wait_exit(STOP_DEADLINE) == 0
    stops = node.events("on_component_stop", worker="w1")
    assert {r["component"] for r in stops} == {"greeter", "listener"}
    assert all(r["data"]["reason"] == "requested" for r in stops)
    assert port_is_free(port)
    assert node.survivors() == []
    assert not node.run_dir.exists()


def test_invalid_config_exits_non_zero_and_starts_nothing(tmp_path):
    config = hello_config(free_port())
    config["workers"][1]["options"]["restart"] = "restart-sometimes"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(config, indent=2))
    done = run_to_end(path)
    assert done.returncode == 1
    assert f"{path}:" in done.stderr and "workers[1].options.restart" in done.stderr
    assert "nothing was started" in done.stderr
    assert not (tmp_path / ".container-run").exists()


def test_port_in_use_is_reported_before_anything_starts(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        path = tmp_path / "busy.json"
        path.write_text(json.dumps(hello_config(port)))
        done = run_to_end(path)
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in done.stderr and "in use" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy.json"], "nothing left behind"


@pytest_twisted.ensureDeferred
async def test_component_that_cannot_start_fails_the_node_after_cleanup(nodes):
    port = free_port()
    node = nodes(hello_config(port, [component("good", "hello.Listener", port),
                                     component("bad", "hello.NoSuchClass", port)]))
    assert await node.wait_exit(DEADLINE) == 1
    assert "component 'bad' of worker 'w1' could not be started" in node.stderr()
    assert "crossbar.error.class_import_failed" in node.stderr()
    assert port_is_free(port)
    assert node.survivors() == []


@pytest_twisted.ensureDeferred
async def test_killed_worker_comes_back_with_every_component_including_api_started(nodes):
    port = free_port()
    node = await nodes.ready(hello_config(port))
    async with managing(node) as client:
        prefix = "crossbar.worker.w1"
        await client.worker_call(prefix, "start_component", "late",
                                 component("late", "hello.Listener", port))
        state_file = node.run_dir / "w1.state.json"
        await poll(lambda: "late" in state_file.read_text(), DEADLINE)
        old_pid = node.ctl()["workers"][0]["pid"]
        os.kill(old_pid, signal.SIGKILL)

        await node.wait_event("worker restarted", worker="w1")
        await poll(lambda: node.ctl()["workers"][0]["pid"] not in (None, old_pid), DEADLINE)
        new_pid = node.ctl()["workers"][0]["pid"]
        assert psutil.pid_exists(new_pid)
        await node.wait_event("on_component_start", component="late", worker="w1")

        async def running() -> set[str]:
            try:
                records = await client.worker_call(prefix, "get_components", full=True)
            except Exception:
                return set()
            return {r["id"] for r in records if r["state"] == "running"}

        found: set[str] = set()
        deadline = time.monotonic() + DEADLINE
        while found != {"greeter", "listener", "late"} and time.monotonic() < deadline:
            found = await running()
            if found != {"greeter", "listener", "late"}:
                await deferLater(reactor, 0.1, lambda: None)
        assert found == {"greeter", "listener", "late"}
        status = await client.worker_call(prefix, "get_status")
        assert status["pid"] == new_pid
    # resumed by the worker itself, not started twice by the node
    assert len(node.events("on_component_start", component="greeter")) == 2
    node.signal(signal.SIGTERM)
    assert await node.wait_exit(STOP_DEADLINE) == 0
    assert node.survivors() == []


@pytest_twisted.ensureDeferred
async def test_killed_router_comes_back_on_the_same_port_with_its_components(nodes):
    port = free_port()
    node = await nodes.ready(hello_config(port, restart="restart-failed"))
    [router] = [r for r in node.ctl()["routers"] if r["id"] == "router1"]
    os.kill(router["pid"], signal.SIGKILL)
    await node.wait_event("router restarted", router="router1")
    [again] = [r for r in node.ctl()["routers"] if r["id"] == "router1"]
    assert again["pid"] != router["pid"]

    async def greeted() -> bool:
        try:
            app = await wampclient.connect(
                {"kind": "rawsocket", "host": "127.0.0.1", "port": port}, "realm1", timeout=5)
        except Exception:
            return False
        try:
            return str(await app.call("com.example.hello.greet", "again")).startswith("hello")
        except Exception:
            return False
        finally:
            await wampclient.close(app)

    # the greeter lost its router, was restarted by its policy and registered again
    deadline = time.monotonic() + DEADLINE
    while not await greeted():
        assert time.monotonic() < deadline, "the greeter did not come back"
        await deferLater(reactor, 0.1, lambda: None)
    # the node rejoined the management realm too: it sees the components stop
    node.signal(signal.SIGTERM)
    assert await node.wait_exit(STOP_DEADLINE) == 0
    assert {r["component"] for r in node.events("on_component_stop")} >= {"greeter", "listener"}
    assert port_is_free(port)


GUEST_SCRIPT = """\
import os, sys, time
print("guest up", os.getpid(), sys.argv[1], os.environ["GREETING"], flush=True)
time.sleep(600)
"""


@pytest_twisted.ensureDeferred
async def test_guest_worker_runs_and_is_restarted_after_it_is_killed(nodes, tmp_path):
    (tmp_path / "guest_app").mkdir()
    (tmp_path / "guest_app" / "loop.py").write_text(GUEST_SCRIPT)
    config = {"version": 2, "workers": [{
        "type": "guest", "id": "looper", "executable": sys.executable,
        "arguments": ["-u", "loop.py", "first-arg"],
        "options": {"workdir": "guest_app", "env": {"vars": {"GREETING": "hi"}}},
    }]}
    node = nodes(config, "guests")
    [started] = await node.wait_event("guest started", guest="looper")
    await poll(lambda: f"[looper] guest up {started['pid']} first-arg hi" in node.stderr(),
               DEADLINE, interval=0.05)
    os.kill(started["pid"], signal.SIGKILL)
    [died] = await node.wait_event("guest died", guest="looper")
    assert died["signal"] == signal.SIGKILL
    [restarted] = await node.wait_event("guest restarted", guest="looper")
    assert restarted["pid"] != started["pid"]
    await poll(lambda: f"[looper] guest up {restarted['pid']} first-arg hi" in node.stderr(),
               DEADLINE, interval=0.05)
    node.signal(signal.SIGTERM)
    assert await node.wait_exit(STOP_DEADLINE) == 0
    assert not psutil.pid_exists(restarted["pid"])


@pytest_twisted.ensureDeferred
async def test_external_router_mode_uses_the_given_management_realm(nodes, router):
    config = {
        "version": 2,
        "controller": {"management": {
            "transport": {"type": "rawsocket", "serializer": "cbor",
                          "endpoint": {"type": "tcp", "host": "127.0.0.1",
                                       "port": router.management_port}},
            "realm": "crossbar",
            "auth": {"ticket": {"authid": "worker", "ticket": WORKER_TICKET}},
        }},
        "workers": [{"type": "container", "id": "external-w",
                     "options": {"pythonpath": [str(EXAMPLES)]},
                     "components": [component("ext", "hello.Listener", router.app_port)]}],
    }
    node = await nodes.ready(config)
    assert node.ctl()["management"] == f"rs://127.0.0.1:{router.management_port}"
    tester = await wampclient.connect(router.management_address(), "crossbar",
                                      authid="tester", ticket=TESTER_TICKET)
    try:
        assert await tester.call("crossbar.worker.external-w.get_components") == ["ext"]
    finally:
        await wampclient.close(tester)
    node.signal(signal.SIGTERM)
    assert await node.wait_exit(STOP_DEADLINE) == 0
    assert node.survivors() == []


@pytest_twisted.ensureDeferred
async def test_worker_that_shuts_down_by_itself_is_not_restarted_and_the_node_exits(nodes):
    port = free_port()
    node = await nodes.ready(hello_config(port))
    async with managing(node) as client:
        stopped = await client.worker_call("crossbar.worker.w1", "shutdown")
        assert sorted(stopped) == ["greeter", "listener"]
    assert await node.wait_exit(STOP_DEADLINE) == 0
    exited = node.events("worker exited", worker="w1")
    assert len(exited) == 1 and exited[0]["code"] == 0
    assert node.events("worker restarted") == []
    assert port_is_free(port)
    assert node.survivors() == []


# -------------------------------------------------------------------------------------------
# the plan: what the node will start, decided without starting anything


def _plan(tmp_path: Path, config: dict[str, Any], environ: dict[str, str] | None = None) -> Any:
    from container.node.config import load_node_config
    from container.node.main import draw_secrets
    from container.node.plan import build_plan
    from container.node.rundir import run_dir_for

    path = tmp_path / "plan.json"
    path.write_text(json.dumps(config))
    loaded = load_node_config(path, crossbar=False)
    return build_plan(loaded, run_dir_for(loaded), draw_secrets(loaded),
                      environ=environ or {"HOME": "/home/x", "PATH": "/bin"})


def test_plan_hosts_the_management_router_beside_the_first_router(tmp_path):
    config = hello_config(8080)
    plan = _plan(tmp_path, config)
    [router] = plan.routers
    assert router.id == "router1" and router.management
    assert [r["name"] for r in router.config["realms"]] == ["realm1"], "the user's router as given"
    assert [t["id"] for t in router.config["transports"]] == ["app"]
    assert router.launch.argv[-2:] == ["--management", str(router.management_path)]
    assert router.management_path.parent == plan.run_dir
    management = router.management_config
    [realm] = management["realms"]
    [role] = [role["name"] for role in realm["roles"]]
    assert realm["name"] == "crossbar"
    assert role.startswith("node-management-") and len(role) > len("node-management-") + 8
    again = _plan(tmp_path, config).routers[0].management_config
    assert role != again["realms"][0]["roles"][0]["name"], "the role is named afresh every run"
    [transport] = management["transports"]
    assert transport["type"] == "rawsocket"
    assert transport["endpoint"] == {"type": "unix", "path": str(plan.management.socket),
                                     "backlog": 1024}
    assert set(transport["auth"]) == {"ticket"}
    principals = transport["auth"]["ticket"]["principals"]
    assert sorted(principals) == ["ctl", "node", "worker-w1"]
    assert len({p["ticket"] for p in principals.values()}) == 3
    assert {p["role"] for p in principals.values()} == {role}
    assert plan.run_dir == tmp_path / ".container-run" / "plan"


def test_plan_without_a_router_gives_the_management_router_a_process_of_its_own(tmp_path):
    config = hello_config(8080)
    config["workers"] = config["workers"][1:]
    [router] = _plan(tmp_path, config).routers
    assert router.id == "node-management" and router.management
    assert router.config["realms"][0]["name"] == "crossbar"
    assert "--key-dir" in router.launch.argv, "its node key stays out of the user's folder"


def test_plan_leaves_a_user_realm_named_like_the_management_realm_to_the_user(tmp_path):
    config = hello_config(8080)
    config["workers"][0]["realms"].append({"name": "crossbar"})
    plan = _plan(tmp_path, config)
    assert [r["name"] for r in plan.routers[0].config["realms"]] == ["realm1", "crossbar"]


def test_plan_keeps_secrets_off_the_worker_command_line(tmp_path):
    plan = _plan(tmp_path, hello_config(8080, env={"vars": {"API_TOKEN": "t0ps3cret"}}))
    worker = plan.workers[0]
    secret = worker.launch.env["CONTAINER_MANAGEMENT_SECRET"]
    assert secret not in " ".join(worker.launch.argv)
    assert "t0ps3cret" not in " ".join(worker.launch.argv)
    assert worker.launch.argv[worker.launch.argv.index("--options-file") + 1] == str(
        plan.run_dir / "w1.options.json")
    assert worker.options["env"]["vars"]["API_TOKEN"] == "t0ps3cret"
    argv = worker.launch.argv
    assert argv[1:4] == ["-m", "container", "worker"]
    assert argv[argv.index("--authid") + 1] == "worker-w1"
    assert argv[argv.index("--management") + 1] == f"unix:{plan.management.socket}"
    assert argv[argv.index("--state-file") + 1] == str(plan.run_dir / "w1.state.json")
    assert worker.launch.env["HOME"] == "/home/x"  # inherit defaults to true


def test_worker_environment_follows_crossbar_env_options():
    from container.node.plan import process_env

    environ = {"HOME": "/home/x", "PATH": "/bin", "SECRET": "s"}
    assert process_env({"env": {"inherit": False, "vars": {"A": "1"}}}, environ, {}) == {
        "A": "1"}
    assert process_env({"env": {"inherit": ["PATH", "NOPE"]}}, environ, {"X": "y"}) == {
        "PATH": "/bin", "X": "y"}
    assert process_env({}, environ, {}) == environ


def test_external_management_uses_the_configured_router_and_credentials(tmp_path):
    config = hello_config(8080)
    config["controller"] = {"management": {
        "transport": {"type": "websocket", "url": "ws://10.0.0.1:9000/ws"},
        "realm": "mgmt", "auth": {"wampcra": {"authid": "ops", "secret": "pw"}}}}
    plan = _plan(tmp_path, config)
    assert plan.management.url == "ws://10.0.0.1:9000/ws"
    assert plan.management.realm == "mgmt"
    assert plan.management.socket is None
    assert [r.id for r in plan.routers] == ["router1"], "no management router of our own"
    argv = plan.workers[0].launch.argv
    assert argv[argv.index("--authmethod") + 1] == "wampcra"
    assert plan.workers[0].launch.env["CONTAINER_MANAGEMENT_SECRET"] == "pw"


def test_router_launch_hands_over_listening_sockets_by_transport_id():
    from container.node.plan import Launch, with_listening_sockets

    launch = with_listening_sockets(Launch(["python", "-m", "container.router", "c.json"], {},
                                           "/"), {"app": 7, "management": 9})
    assert launch.argv[-4:] == ["--listen-fd", "app=3", "--listen-fd", "management=4"]
    assert launch.fds == {3: 7, 4: 9}


def test_plan_is_a_pure_function_of_the_run_dir_and_secrets_given(tmp_path):
    from container.node.config import load_node_config
    from container.node.plan import build_plan
    from container.node.realm import Secrets

    path = tmp_path / "pure.json"
    path.write_text(json.dumps(hello_config(8080)))
    config = load_node_config(path, crossbar=False)
    secrets = Secrets("r0le", "node-ticket", "ctl-ticket", {"w1": "worker-ticket"})
    run_dir = tmp_path / "nowhere" / "run"
    plan = build_plan(config, run_dir, secrets, environ={})
    assert plan == build_plan(config, run_dir, secrets, environ={})
    assert not (tmp_path / "nowhere").exists(), "planning touches no file"
    assert plan.management.socket == run_dir.absolute() / "management.sock"
    assert plan.management.role == "node-management-r0le"
    tickets = plan.routers[0].management_config["transports"][0]["auth"]["ticket"]
    assert {a: p["ticket"] for a, p in tickets["principals"].items()} == {
        "node": "node-ticket", "ctl": "ctl-ticket", "worker-w1": "worker-ticket"}


def test_pinning_the_real_ports_leaves_the_plan_as_it_was(tmp_path):
    import copy

    from container.router.listeners import bind_listeners, close_listeners, pin_ports

    config = hello_config(8080)
    config["workers"][0]["transports"][0]["endpoint"]["port"] = 0  # the router's: any port
    plan = _plan(tmp_path, config)
    [router] = plan.routers
    before = copy.deepcopy(router.config)
    sockets = bind_listeners(router.config, str(tmp_path))
    try:
        pinned = pin_ports(router.config, sockets)
    finally:
        close_listeners({router.id: sockets})
    assert pinned["transports"][0]["endpoint"]["port"] != 0
    assert router.config == before
