"""Restart and shutdown policies, router loss and module reloading, end to end on real
Crossbar.io router processes."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import textwrap

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from tests.support import wampclient
from tests.support.router import start_router
from tests.support.wampclient import poll

FAST_BACKOFF = {"first": 0.0, "initial": 0.05, "max": 0.4, "multiplier": 2.0, "jitter": 0.0}


async def app_client(port: int) -> wampclient.ClientSession:
    return await wampclient.connect({"kind": "rawsocket", "host": "127.0.0.1", "port": port},
                                    "realm1")


@pytest_twisted.ensureDeferred
async def test_crash_loop_restarts_with_growing_delays(workers):
    env = await workers({"restart": "restart-always", "restart_backoff": FAST_BACKOFF})
    await env.call("start_component", "crasher", env.component("faulty.CrashesAfterJoin"))
    await env.events.wait_for("on_component_restart", id="crasher", attempt=6)
    delays = [e["delay"] for e in env.events.topics("on_component_restart")][:6]
    assert delays == pytest.approx([0.0, 0.05, 0.1, 0.2, 0.4, 0.4], abs=1e-3)
    stops = env.events.topics("on_component_stop")[:6]
    assert {s["reason"] for s in stops} == {"lost"}
    assert all(s["will_restart"] for s in stops)
    assert "crasher" in await env.call("get_components")


@pytest_twisted.ensureDeferred
async def test_restart_limit_gives_up_and_the_worker_stays_up(workers):
    env = await workers({"restart": "restart-always", "restart_backoff": FAST_BACKOFF,
                         "restart_limit": {"max_restarts": 3, "period": 60}})
    await env.call("start_component", "crasher", env.component("faulty.CrashesAfterJoin"))
    await env.call("start_component", "steady", env.component("hello.Quiet"))
    final = await env.events.wait_for("on_component_stop", id="crasher", gave_up=True)
    assert final["will_restart"] is False
    assert final["state"] == "failed"
    record = await env.call("get_component", "crasher")
    assert record["state"] == "failed"
    assert "gave up after 3 restarts within 60 s" in record["last_error"]
    assert record["restarts"] == 3
    assert (await env.call("get_component", "steady"))["state"] == "running"


@pytest_twisted.ensureDeferred
async def test_restart_failed_restarts_a_crash_but_not_a_clean_leave(workers):
    env = await workers({"restart": "restart-failed", "restart_backoff": FAST_BACKOFF})
    prefix = env.unique()
    config = env.component("hello.LeavesOnRequest", extra={"prefix": prefix})
    await env.call("start_component", "c1", config)
    app = await app_client(env.router.app_port)
    try:
        await app.call(f"{prefix}.leave", "com.example.error.fatal")  # a leave with an error
        stop = await env.events.wait_for("on_component_stop", id="c1")
        assert (stop["reason"], stop["will_restart"]) == ("failed", True)
        await env.events.wait_for("on_component_start", id="c1", restarts=1)

        with contextlib.suppress(ApplicationError):  # it may drop before answering
            await app.call(f"{prefix}.drop")  # transport lost
        await env.events.wait_for("on_component_start", id="c1", restarts=2)
        assert env.events.topics("on_component_stop")[-1]["reason"] == "lost"

        await app.call(f"{prefix}.leave", "wamp.close.normal")  # a clean leave
        stop = await env.events.wait_for("on_component_stop", id="c1", reason="left")
        assert stop["will_restart"] is False
        assert (await env.call("get_component", "c1"))["state"] == "stopped"
    finally:
        await wampclient.close(app)


@pytest_twisted.ensureDeferred
async def test_requested_stop_is_not_restarted_under_restart_always(workers):
    env = await workers({"restart": "restart-always", "restart_backoff": FAST_BACKOFF})
    await env.call("start_component", "c1", env.component("hello.Quiet"))
    await env.call("stop_component", "c1")
    stop = await env.events.wait_for("on_component_stop", id="c1")
    assert (stop["reason"], stop["will_restart"]) == ("requested", False)
    assert await env.call("get_components") == []
    assert env.events.count("on_component_restart") == 0


@pytest_twisted.ensureDeferred
async def test_components_come_back_after_the_router_is_killed_and_restarted(
    workers, routers
):
    app_router = start_router(routers).process  # of our own: killed, and brought back
    env = await workers({"restart": "restart-failed",
                         "restart_backoff": {"initial": 0.1, "max": 1.0}})
    host, port = app_router.tcp("app")
    transport = {"type": "rawsocket", "endpoint": {"type": "tcp", "host": host, "port": port}}
    ids = [f"c{i}" for i in range(10)]
    prefix = env.unique()
    for component_id in ids:
        await env.call("start_component", component_id, env.component(
            "hello.Greeter", transport, extra={"prefix": f"{prefix}.{component_id}"}))

    app_router.kill()
    for component_id in ids:
        stop = await env.events.wait_for("on_component_stop", id=component_id)
        assert (stop["reason"], stop["will_restart"]) == ("lost", True)
    await deferToThread(app_router.restart)
    for component_id in ids:
        await env.events.wait_for("on_component_start", id=component_id, timeout=60,
                                  where=lambda event: event["restarts"] >= 1)

    assert await env.call("get_components") == sorted(ids)
    records = await env.call("get_components", full=True)
    assert {r["state"] for r in records} == {"running"}
    app = await app_client(port)
    try:
        assert await app.call(f"{prefix}.c3.greet", "again") == "hello again"
    finally:
        await wampclient.close(app)


@pytest_twisted.ensureDeferred
async def test_restart_never_components_are_reported_lost_not_dropped(workers, routers):
    app_router = start_router(routers).process
    env = await workers({})
    host, port = app_router.tcp("app")
    transport = {"type": "rawsocket", "endpoint": {"type": "tcp", "host": host, "port": port}}
    await env.call("start_component", "c1", env.component("hello.Quiet", transport))
    app_router.kill()
    stop = await env.events.wait_for("on_component_stop", id="c1")
    assert (stop["reason"], stop["will_restart"]) == ("lost", False)
    record = await env.call("get_component", "c1")
    assert record["state"] == "failed"
    assert "lost" in record["last_error"]


@pytest_twisted.ensureDeferred
async def test_wait_for_router_retries_until_the_router_is_up(workers, routers):
    app_router = start_router(routers).process
    env = await workers({"restart_backoff": {"initial": 0.1, "max": 0.5}})
    host, port = app_router.tcp("app")
    app_router.stop()
    transport = {"type": "rawsocket", "endpoint": {"type": "tcp", "host": host, "port": port}}
    starting = env.call("start_component", "c1", env.component("hello.Quiet", transport),
                        wait_for_router=True)
    await env.events.wait_for("on_component_stop", id="c1", reason="lost")
    assert not starting.called
    await deferToThread(app_router.restart)
    started = await starting
    assert started["state"] == "running"


@pytest.mark.parametrize(
    ("shutdown", "leave_reasons", "exit_code"),
    [
        ("shutdown-on-any-component-stopped", ["wamp.close.normal"], 0),
        ("shutdown-on-any-component-failed", ["com.example.error.boom"], 1),
        ("shutdown-on-last-component-stopped", ["wamp.close.normal", "wamp.close.normal"], 0),
        ("shutdown-on-last-component-stopped", ["wamp.close.normal", "com.example.error.x"], 1),
    ],
)
@pytest_twisted.ensureDeferred
async def test_shutdown_policies_exit_codes(workers, shutdown, leave_reasons, exit_code):
    env = await workers({"shutdown": shutdown})
    prefix = env.unique()
    for index in range(len(leave_reasons)):
        await env.call("start_component", f"c{index}", env.component(
            "hello.LeavesOnRequest", extra={"prefix": f"{prefix}.{index}"}))
    app = await app_client(env.router.app_port)
    try:
        for index, reason in enumerate(leave_reasons):
            assert env.worker.exit_code is None  # not before the last one
            await app.call(f"{prefix}.{index}.leave", reason)
            await env.events.wait_for("on_component_stop", id=f"c{index}")
    finally:
        await wampclient.close(app)
    assert await env.worker.done.addTimeout(30, reactor) == exit_code
    event = await env.events.wait_for("on_shutdown")
    assert event["exit_code"] == exit_code
    assert event["reason"] == "policy"


VERSIONED = '''
from autobahn.twisted.wamp import ApplicationSession

VERSION = {version}


class Versioned(ApplicationSession):
    async def onJoin(self, details):
        await self.register(lambda: VERSION, self.config.extra["prefix"] + ".version")
'''


def write_module(path, version: int, source: str = VERSIONED) -> None:
    path.write_text(textwrap.dedent(source.format(version=version)))
    stamp = os.stat(path).st_mtime + version  # a new mtime even on coarse clocks
    os.utime(path, (stamp, stamp))


@pytest.fixture
def module_dir(tmp_path):
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))


@pytest_twisted.ensureDeferred
async def test_restart_with_reload_runs_the_changed_code(env, module_dir):
    name = f"versioned_{env.worker.settings.worker_id}"
    write_module(module_dir / f"{name}.py", 1)
    prefix = env.unique()
    await env.call("start_component", "v", env.component(f"{name}.Versioned",
                                                         extra={"prefix": prefix}))
    app = await app_client(env.router.app_port)
    try:
        assert await app.call(f"{prefix}.version") == 1
        write_module(module_dir / f"{name}.py", 2)
        restarted = await env.call("restart_component", "v", reload_modules=True)
        assert restarted["started"]["reloaded"] == [name]
        event = await env.events.wait_for("on_component_start", id="v", restarts=1)
        assert event["reloaded"] == [name]  # the event says what the answer says
        assert await app.call(f"{prefix}.version") == 2

        (module_dir / f"{name}.py").write_text("VERSION = (\n")  # a syntax error
        os.utime(module_dir / f"{name}.py", (1e9 + 5, 1e9 + 5))
        with pytest.raises(ApplicationError) as caught:
            await env.call("restart_component", "v", reload_modules=True)
        assert caught.value.error == "crossbar.error.class_import_failed"
        assert "syntax error" in caught.value.args[0]
        # not stopped, not half-replaced: still version 2
        assert (await env.call("get_component", "v"))["state"] == "running"
        assert await app.call(f"{prefix}.version") == 2
        assert sys.modules[name].VERSION == 2
    finally:
        await wampclient.close(app)


@pytest_twisted.ensureDeferred
async def test_watch_mode_restarts_components_whose_source_changed(workers, module_dir):
    env = await workers({"watch": {"enabled": True, "interval": 0.05, "debounce": 0.1}})
    name = f"watched_{env.worker.settings.worker_id}"
    write_module(module_dir / f"{name}.py", 1)
    prefix = env.unique()
    await env.call("start_component", "w", env.component(f"{name}.Versioned",
                                                         extra={"prefix": prefix}))
    await env.call("start_component", "other", env.component("hello.Quiet"))
    write_module(module_dir / f"{name}.py", 2)
    await env.events.wait_for("on_component_restart", id="w", cause="reload")
    await env.events.wait_for("on_component_start", id="w", restarts=1)
    app = await app_client(env.router.app_port)
    try:
        assert await app.call(f"{prefix}.version") == 2
    finally:
        await wampclient.close(app)
    assert env.events.count("on_component_restart", id="other") == 0


def read_state(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


@pytest_twisted.ensureDeferred
async def test_the_component_set_is_checkpointed_and_resumed(workers, tmp_path):
    state_file = str(tmp_path / "state.json")
    first = await workers({}, state_file=state_file)
    for component_id in ("c1", "c2", "c3"):
        await first.call("start_component", component_id, first.component("hello.Quiet"))
    await first.call("stop_component", "c2")
    await poll(lambda: os.path.exists(state_file)
               and sorted(read_state(state_file)["components"]) == ["c1", "c3"])
    saved = read_state(state_file)

    # a new worker process given that file brings the same set back by itself
    # (a checkpoint is resumed only by the worker id it was written for)
    resumed_file = str(tmp_path / "resumed.json")
    with open(resumed_file, "w", encoding="utf-8") as handle:
        json.dump({**saved, "worker": "resumer"}, handle)
    second = await workers({}, state_file=resumed_file, worker_id="resumer")
    await second.events.wait_for("on_component_start", id="c1")
    await second.events.wait_for("on_component_start", id="c3")
    assert await second.call("get_components") == ["c1", "c3"]
    assert (await second.call("get_component", "c1"))["config"] == saved["components"]["c1"]
