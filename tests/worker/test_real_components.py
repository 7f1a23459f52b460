"""Components written like autobahn's published examples, hosted unchanged, end to end on a
real Crossbar.io router: an onJoin that never returns, ``Session`` subclasses,
``Component`` and ``Application`` objects, code that stops the reactor or raises
``SystemExit``, and a start whose caller gives up.

Each test checks the state and the events, that a neighbour in the same worker keeps
answering, and that nothing of an ended component is left: no entry, no session on the
router, no registration.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.logger import formatEvent, globalLogPublisher

from tests.support import wampclient
from tests.support.router import WORKER_TICKET
from tests.support.wampclient import poll
from tests.support.workers import management_events, worker_command


async def app_client(env: Any) -> wampclient.ClientSession:
    return await wampclient.connect(
        {"kind": "rawsocket", "host": "127.0.0.1", "port": env.router.app_port}, "realm1")


async def expect_error(deferred: Any, uri: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await deferred
    assert caught.value.error == uri, caught.value
    return caught.value


class Neighbour:
    """A component started next to the one under test; it must keep answering."""

    def __init__(self, env: Any, app: wampclient.ClientSession) -> None:
        self.env, self.app = env, app
        self.prefix = env.unique("com.neighbour")

    async def start(self) -> None:
        await self.env.call("start_component", "neighbour", self.env.component(
            "hello.Greeter", extra={"prefix": self.prefix}))

    async def answers(self) -> None:
        assert await self.app.call(f"{self.prefix}.greet", "n") == "hello n"
        record = await self.env.call("get_component", "neighbour")
        assert record["state"] == "running" and record["restarts"] == 0


async def sessions_on_realm(app: wampclient.ClientSession) -> set[int]:
    return set(await app.call("wamp.session.list"))


async def gone(app: wampclient.ClientSession, session_id: int, procedure: str) -> None:
    """The router knows neither the session nor the procedure it registered."""
    assert session_id not in await sessions_on_realm(app)
    await expect_error(app.call(procedure), "wamp.error.no_such_procedure")


class Counter:
    """Counts events on a topic; ``reached(n)`` fires once ``n`` have arrived."""

    def __init__(self) -> None:
        self.count = 0
        self.payloads: list[Any] = []
        self._waiters: list[tuple[int, Deferred[None]]] = []

    def __call__(self, *args: Any) -> None:
        self.count += 1
        self.payloads.append(args[0] if args else None)
        for n, waiter in list(self._waiters):
            if self.count >= n:
                self._waiters.remove((n, waiter))
                waiter.callback(None)

    def reached(self, n: int) -> Deferred[None]:
        waiter: Deferred[None] = Deferred()
        if self.count >= n:
            waiter.callback(None)
        else:
            self._waiters.append((n, waiter))
        return waiter.addTimeout(wampclient.DEFAULT_TIMEOUT, reactor)


@pytest_twisted.async_yield_fixture
async def host(workers: Any) -> Any:
    """``await host(options)``: a worker, an application client and a running neighbour."""
    clients: list[wampclient.ClientSession] = []

    async def start(options: dict[str, Any] | None = None) -> tuple[Any, Any, Neighbour]:
        env = await workers(options)
        app = await app_client(env)
        clients.append(app)
        neighbour = Neighbour(env, app)
        await neighbour.start()
        return env, app, neighbour

    yield start
    for app in clients:
        await wampclient.close(app)


@pytest.fixture
def worker_log() -> Any:
    """Every log line written during the test, formatted, with its failure if any."""
    lines: list[tuple[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        failure = event.get("log_failure")
        lines.append((formatEvent(event) or "", failure))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


# ---------------------------------------------------------------------------------------------
# 1. an onJoin that never returns


@pytest_twisted.ensureDeferred
async def test_a_publisher_looping_in_onjoin_is_running_and_its_loop_ends_with_it(host):
    env, app, neighbour = await host({"ready_grace": 0.2})
    prefix = env.unique()
    events = Counter()
    await app.subscribe(events, f"{prefix}.topic1")

    started = await env.call("start_component", "pub", env.component(
        "published.Publisher", extra={"prefix": prefix}))
    assert (started["state"], started["phase"], started["ready_by"]) == (
        "running", "onjoin_running", "grace")
    record = await env.call("get_component", "pub")
    assert (record["state"], record["phase"], record["ready_by"]) == (
        "running", "onjoin_running", "grace")
    event = await env.events.wait_for("on_component_start", id="pub")
    assert event["ready_by"] == "grace" and event["phase"] == "onjoin_running"
    await events.reached(3)
    await neighbour.answers()

    run = env.worker.supervisor.components["pub"].run
    loop = run._join_code
    assert loop is not None and not loop.called  # the onJoin is still publishing
    await env.call("stop_component", "pub")
    stopped = await env.events.wait_for("on_component_stop", id="pub")
    assert stopped["reason"] == "requested"
    assert loop.called  # its loop ended with its session: nothing keeps running
    assert "pub" not in await env.call("get_components")
    assert started["session"] not in await sessions_on_realm(app)
    await neighbour.answers()


@pytest_twisted.ensureDeferred
async def test_a_component_that_says_ready_is_running_as_soon_as_its_api_exists(host):
    env, app, neighbour = await host({"ready_grace": 60})
    prefix = env.unique()
    started = await env.call("start_component", "time", env.component(
        "published.TimeService", extra={"prefix": prefix}))
    assert started["ready_by"] == "ready_call"
    assert started["phase"] == "onjoin_running"
    assert await app.call(f"{prefix}.now") == "2026-01-01T00:00:00Z"
    await neighbour.answers()


@pytest_twisted.ensureDeferred
async def test_a_component_ready_grace_overrides_the_containers(host):
    env, _, neighbour = await host({"ready_grace": 60})
    prefix = env.unique()
    started = await env.call("start_component", "pub", env.component(
        "published.Publisher", extra={"prefix": prefix}, ready_grace=0.1))
    assert started["ready_by"] == "grace"
    status = await env.call("get_status")
    assert status["policies"]["ready_grace"] == 60
    await neighbour.answers()


@pytest_twisted.ensureDeferred
async def test_onjoin_raising_after_ready_is_a_crash_restarted_by_policy(host):
    env, app, neighbour = await host({"restart": "restart-failed", "ready_grace": 0.1})
    prefix = env.unique()
    first = await env.call("start_component", "crashy", env.component(
        "published.LoopThenCrash", extra={"prefix": prefix}))
    assert first["ready_by"] == "grace"
    assert await app.call(f"{prefix}.crash") == "ok"
    stopped = await env.events.wait_for("on_component_stop", id="crashy")
    assert stopped["reason"] == "failed"
    assert stopped["message"] == "onJoin raised RuntimeError: sensor unplugged"
    assert stopped["will_restart"] is True
    again = await env.events.wait_for("on_component_start", id="crashy",
                                      where=lambda e: e["session"] != first["session"])
    assert again["restarts"] == 1
    assert first["session"] not in await sessions_on_realm(app)
    await neighbour.answers()


# ---------------------------------------------------------------------------------------------
# 2. Session subclasses, Component and Application objects


@pytest_twisted.ensureDeferred
async def test_session_subclasses_are_hosted(host):
    env, app, neighbour = await host({"ready_grace": 0.1})
    prefix = env.unique()
    greeter = await env.call("start_component", "greeter", env.component(
        "published.Greeter", extra={"prefix": prefix}))
    assert (greeter["state"], greeter["ready_by"], greeter["phase"]) == (
        "running", "onjoin", "joined")
    ticker = await env.call("start_component", "ticker", env.component(
        "published.Ticker", extra={"prefix": prefix}))
    assert ticker["ready_by"] == "grace"
    assert await app.call(f"{prefix}.greet", "s") == "hello s"
    assert await app.call(f"{prefix}.tick") == "tick"
    for component_id in ("greeter", "ticker"):
        await env.call("stop_component", component_id)
    await gone(app, greeter["session"], f"{prefix}.greet")
    await gone(app, ticker["session"], f"{prefix}.tick")
    await neighbour.answers()


@pytest_twisted.ensureDeferred
async def test_a_component_object_with_decorators_is_hosted_on_our_transport_and_realm(host):
    import component_object as module

    module.events.clear()
    env, app, neighbour = await host({"ready_grace": 60})
    config = env.component("component_object.component")
    started = await env.call("start_component", "obj", config)
    assert (started["state"], started["ready_by"]) == ("running", "ready_call")
    prefix = module.PREFIX
    assert await app.call(f"{prefix}.add2", 2, 3) == 5
    assert await app.call(f"{prefix}.extra") == {"source": "component"}  # the object's extra
    await app.publish(f"{prefix}.hello", "hi", options=_acknowledged())
    await poll(lambda: ("hello", "hi") in module.events)  # an event the test cannot await
    assert module.events[:2] == [("connect", "realm1"),
                                 ("join", "realm1", {"source": "component"})]
    await neighbour.answers()

    await env.call("stop_component", "obj")
    assert module.events[-2:] == [("leave", "wamp.close.normal"), ("disconnect", True)]
    await gone(app, started["session"], f"{prefix}.add2")

    # the configuration's extra wins over the object's; a restart builds a fresh session
    config["extra"] = {"source": "configuration"}
    await env.call("start_component", "obj", config)
    assert await app.call(f"{prefix}.extra") == {"source": "configuration"}
    restarted = await env.call("restart_component", "obj")
    assert restarted["started"]["ready_by"] == "ready_call"
    assert await app.call(f"{prefix}.add2", 1, 1) == 2


def _acknowledged() -> Any:
    from autobahn.wamp.types import PublishOptions

    return PublishOptions(acknowledge=True)


@pytest_twisted.ensureDeferred
async def test_a_component_objects_main_runs_and_its_return_leaves(host):
    import component_object as module

    env, app, neighbour = await host({"ready_grace": 0.1})
    await env.call("start_component", "main", env.component("component_object.with_main"))
    await app.call(f"{module.PREFIX}.main.finish")
    stopped = await env.events.wait_for("on_component_stop", id="main")
    assert stopped["reason"] == "left"
    assert (await env.call("get_component", "main"))["state"] == "stopped"
    await neighbour.answers()


@pytest_twisted.ensureDeferred
async def test_a_failing_join_handler_of_a_component_object_fails_the_start(host):
    env, _, neighbour = await host()
    error = await expect_error(
        env.call("start_component", "bad", env.component("component_object.failing")),
        "crossbar.error.cannot_start")
    assert "join handler refuses raised RuntimeError: no database" in error.args[0]
    assert await env.call("get_components") == ["neighbour"]
    await neighbour.answers()


@pytest_twisted.ensureDeferred
async def test_an_application_object_is_hosted_and_restarted(host):
    env, app, neighbour = await host()
    await env.call("start_component", "app", env.component("app_object.app"))
    assert await app.call("com.test.app_object.hello") == "Hello 5"
    await env.call("restart_component", "app")
    assert await app.call("com.test.app_object.hello") == "Hello 5"
    await env.call("stop_component", "app")
    await neighbour.answers()


# ---------------------------------------------------------------------------------------------
# 3. code that stops the reactor


@pytest.mark.parametrize(
    ("classname", "procedure", "says"),
    [
        ("published.StopsTheReactor", "quit", "the component called reactor.stop()"),
        ("published.StopsTheReactor", "quit_later", "reactor.stop() (from reactor.callLater)"),
        ("stoppers.StopsFromATimer", "quit", "the component called reactor.stop()"),
        ("published.Exits", "exit", "a handler raised SystemExit(0)"),
        ("published.ExitsInOnJoin", "finish", "onJoin raised SystemExit"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_stopping_the_reactor_or_exiting_ends_only_that_component(
        host, classname, procedure, says):
    env, app, neighbour = await host({"ready_grace": 0.1, "restart": "restart-failed"})
    prefix = env.unique()
    started = await env.call("start_component", "quitter", env.component(
        classname, extra={"prefix": prefix}))
    if procedure == "exit":  # the caller of a procedure that raised SystemExit gets an error
        await expect_error(app.call(f"{prefix}.{procedure}"), "wamp.error.runtime_error")
    else:
        await app.call(f"{prefix}.{procedure}")
    stopped = await env.events.wait_for("on_component_stop", id="quitter")
    assert stopped["reason"] == "left"
    assert stopped["will_restart"] is False  # left cleanly: restart-failed does not restart
    assert says in stopped["message"]
    record = await env.call("get_component", "quitter")
    assert (record["state"], record["stop_reason"]) == ("stopped", "left")
    await gone(app, started["session"], f"{prefix}.{procedure}")
    await neighbour.answers()
    assert (await env.call("get_status"))["components"] == {"running": 1, "stopped": 1}


@pytest_twisted.ensureDeferred
async def test_an_example_client_whose_ondisconnect_stops_the_reactor(host):
    env, app, neighbour = await host()
    prefix = env.unique()
    await env.call("start_component", "frontend", env.component(
        "published.Frontend", extra={"prefix": prefix, "max_events": 2}))
    for i in range(3):
        await app.publish(f"{prefix}.topic1", i, options=_acknowledged())
    stopped = await env.events.wait_for("on_component_stop", id="frontend")
    assert stopped["reason"] == "left"
    await neighbour.answers()
    # a requested stop of a component whose onDisconnect stops the reactor is just a stop
    await env.call("start_component", "quitter", env.component(
        "published.StopsTheReactor", extra={"prefix": prefix}))
    assert (await env.call("stop_component", "quitter"))["reason"] == "requested"
    await neighbour.answers()


@pytest_twisted.ensureDeferred
async def test_a_reactor_stop_that_cannot_be_told_apart_is_refused(host, worker_log):
    env, app, neighbour = await host()
    prefixes = [env.unique(), env.unique()]
    for n, prefix in enumerate(prefixes):
        await env.call("start_component", f"twin{n}", env.component(
            "stoppers.StopsFromATimer", extra={"prefix": prefix}))
    await app.call(f"{prefixes[0]}.quit")
    await poll(lambda: any("shared by components twin0, twin1" in line
                           for line, _ in worker_log))
    for prefix in prefixes:
        assert await app.call(f"{prefix}.ping") == "pong"
    await neighbour.answers()


@pytest_twisted.ensureDeferred
async def test_a_worker_process_outlives_a_component_that_stops_the_reactor(router, children):
    worker_id = "stopguard"
    prefix = f"crossbar.worker.{worker_id}"
    client, events = await management_events(router, prefix)
    worker = children.spawn(worker_command(router, worker_id),
                            env={"TEST_WORKER_TICKET": WORKER_TICKET})
    app = None
    try:
        await events.wait_for("on_worker_ready")
        transport = {"type": "rawsocket",
                     "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": router.app_port}}
        app_prefix = "com.test.stopguard"
        for component_id, classname in (("quitter", "published.StopsTheReactor"),
                                        ("neighbour", "hello.Greeter")):
            await client.call(f"{prefix}.start_component", component_id, {
                "type": "class", "classname": classname, "realm": "realm1",
                "transport": transport, "extra": {"prefix": f"{app_prefix}.{component_id}"}})
        app = await wampclient.connect(
            {"kind": "rawsocket", "host": "127.0.0.1", "port": router.app_port}, "realm1")
        await app.call(f"{app_prefix}.quitter.quit")
        stopped = await events.wait_for("on_component_stop", id="quitter")
        assert stopped["reason"] == "left"
        assert await app.call(f"{app_prefix}.neighbour.greet", "p") == "hello p"
        assert (await client.call(f"{prefix}.get_status"))["components"] == {
            "running": 1, "stopped": 1}
        # the worker's own end still stops its reactor; the quitter, which left by itself,
        # is not stopped (nor counted) a second time
        assert await client.call(f"{prefix}.shutdown") == ["neighbour"]
        assert await worker.exited.addTimeout(30, reactor) == 0
    finally:
        if app is not None:
            await wampclient.close(app)
        await wampclient.close(client)
    assert "Traceback" not in worker.text, worker.text


# ---------------------------------------------------------------------------------------------
# 4. a start whose caller gives up


@pytest.mark.parametrize("gives_up", ["cancels the call", "goes away"])
@pytest_twisted.ensureDeferred
async def test_a_start_whose_caller_gives_up_stops_the_session(host, worker_log, gives_up):
    env, app, neighbour = await host({"ready_grace": 60})
    prefix = env.unique()
    registered = Counter()
    await app.subscribe(registered, f"{prefix}.registered")
    before = await sessions_on_realm(app)
    caller = await wampclient.connect(env.router.management_address(), "crossbar",
                                      authid="tester", ticket="tester-secret")
    config = env.component("published.SlowRegistrar", extra={"prefix": prefix})
    starting = caller.call(f"{env.prefix}.start_component", "slow", config)
    starting.addErrback(lambda failure: failure)  # what the caller sees no longer matters
    await registered.reached(1)  # joined, registered, its onJoin goes on
    orphan = registered.payloads[0]
    assert await app.call(f"{prefix}.whoami") == orphan
    assert (await env.call("get_component", "slow"))["phase"] == "onjoin_running"

    if gives_up == "cancels the call":
        starting.cancel()
    else:
        await wampclient.close(caller)
    stopped = await env.events.wait_for("on_component_stop", id="slow")
    assert stopped["reason"] == "requested"
    assert stopped["message"] == "start_component was cancelled by its caller"
    assert env.events.count("on_component_start", id="slow") == 0
    assert await env.call("get_components") == ["neighbour"]
    await gone(app, orphan, f"{prefix}.whoami")
    assert await sessions_on_realm(app) == before

    # the same id starts again: nothing of the first attempt is in the way
    config["ready_grace"] = 0.1
    again = await env.call("start_component", "slow", config)
    assert again["state"] == "running"
    assert await app.call(f"{prefix}.whoami") == again["session"]
    await neighbour.answers()
    assert not [line for line, failure in worker_log
                if "CancelledError" in line or (failure is not None and "CancelledError" in
                                                failure.getTraceback())]
    if gives_up == "cancels the call":
        await wampclient.close(caller)
