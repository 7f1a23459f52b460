"""``container ctl`` end to end: the real command as a child process, against a real Crossbar.io
router and container workers living in this process (so children run without blocking the
reactor), plus unit tests of its pure parts (event lines, tables, ctl files, component files)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest
import pytest_twisted
from autobahn.wamp.types import PublishOptions
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue

from container.ctl.commands import load_component_file
from container.ctl.output import Output, format_duration, format_event
from container.ctl.target import WorkerRef, read_ctl_file
from container.errors import CtlError
from container.events import describe_worker_event
from container.management import Credentials
from tests.support import wampclient
from tests.support.ports import free_port
from tests.support.processes import ChildProcess, Children
from tests.support.router import OBSERVER_TICKET, TESTER_TICKET, start_router
from tests.support.wampclient import poll

SECRET_VARIABLE = "CTL_TEST_TICKET"
OBSERVER_VARIABLE = "CTL_TEST_OBSERVER_TICKET"
CONTAINER = os.path.join(os.path.dirname(sys.executable), "container")
TIMEOUT = 60.0


def command_line() -> list[str]:
    """The real ``container`` console script (``python -m container`` if not installed)."""
    if os.path.exists(CONTAINER):
        return [CONTAINER]
    return [sys.executable, "-m", "container"]


def child_environment(**extra: str) -> dict[str, str]:
    environment = {**os.environ, SECRET_VARIABLE: TESTER_TICKET,
                   OBSERVER_VARIABLE: OBSERVER_TICKET, **extra}
    environment.pop("CONTAINER_MANAGEMENT_SECRET", None)
    environment["COLUMNS"] = "200"
    return environment


def management(router: Any, *more: str, authid: str = "tester") -> list[str]:
    """Connection options for the test router's ticket-authenticated management realm
    ("observer" has the authrole "trusted", the only one that can discover workers: tester's
    "controller" role sees none)."""
    variable = OBSERVER_VARIABLE if authid == "observer" else SECRET_VARIABLE
    return ["--management", f"rs://127.0.0.1:{router.management_port}", "--realm", "crossbar",
            "--authid", authid, "--secret-env", variable, *more]


async def run_ctl(*arguments: str, env: dict[str, str] | None = None) -> tuple[str, str, int]:
    """Run ``container ctl ARGUMENTS`` to the end without blocking the reactor."""
    executable, *rest = command_line()
    out, err, code = await getProcessOutputAndValue(
        executable, [*rest, "ctl", *arguments], env=env or child_environment(), reactor=reactor
    ).addTimeout(TIMEOUT, reactor)
    return out.decode(), err.decode(), code


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def table_rows(text: str) -> list[list[str]]:
    return [line.split() for line in lines(text)]


# ---------------------------------------------------------------------------------------------
# list, status


@pytest_twisted.ensureDeferred
async def test_list_shows_every_component_with_its_state_and_last_error(env):
    await env.call("start_component", "alpha", env.component("hello.Quiet"))
    await env.call("start_component", "crashy", env.component("faulty.CrashesAfterJoin"))
    await env.events.wait_for("on_component_stop", id="crashy")
    worker = env.worker.settings.worker_id

    # no --worker: the workers are found through the WAMP meta API
    out, err, code = await run_ctl(*management(env.router, authid="observer"), "list")
    assert code == 0, err
    header, *rows = table_rows(out)
    assert header[:5] == ["WORKER", "ID", "STATE", "UPTIME", "RESTARTS"]
    ours = {row[1]: row for row in rows if row[0] == worker}
    assert ours["alpha"][2] == "running"
    assert ours["alpha"][3].endswith("s")
    assert ours["alpha"][4] == "0"
    assert ours["crashy"][2] == "failed"
    assert ours["crashy"][3] == "-"
    assert len(ours["crashy"]) > 5  # the last error is shown

    out, err, code = await run_ctl(*management(env.router, "--worker", worker), "list", "--json")
    assert code == 0, err
    [listed] = json.loads(out)
    assert listed["worker"] == worker
    assert listed["prefix"] == env.prefix
    states = {record["id"]: record["state"] for record in listed["components"]}
    assert states == {"alpha": "running", "crashy": "failed"}
    failed = next(r for r in listed["components"] if r["id"] == "crashy")
    assert failed["last_error"]


@pytest_twisted.ensureDeferred
async def test_discovery_hidden_by_the_meta_api_says_how_to_name_workers(env):
    # tester's role is not "trusted": Crossbar.io's meta API hides crossbar.* from it
    out, err, code = await run_ctl(*management(env.router), "list", "--json")
    assert code == 0, err
    assert json.loads(out) == []
    [line] = lines(err)
    assert "authrole 'trusted'" in line
    assert "--worker ID" in line


@pytest_twisted.ensureDeferred
async def test_list_shows_a_worker_without_components(env):
    worker = env.worker.settings.worker_id
    out, err, code = await run_ctl(*management(env.router, "--worker", worker), "list")
    assert code == 0, err
    assert table_rows(out)[1][:3] == [worker, "-", "no"]


@pytest_twisted.ensureDeferred
async def test_status_reports_each_worker(env):
    await env.call("start_component", "alpha", env.component("hello.Quiet"))
    worker = env.worker.settings.worker_id

    out, err, code = await run_ctl(*management(env.router, "--worker", worker), "status")
    assert code == 0, err
    header, row = table_rows(out)
    assert header == ["WORKER", "PID", "UPTIME", "COMPONENTS", "RESTART", "SHUTDOWN"]
    assert row[:2] == [worker, str(os.getpid())]
    assert "1 running" in " ".join(row)
    assert "restart-never" in row
    assert "shutdown-manual" in row

    out, err, code = await run_ctl(*management(env.router, authid="observer"), "status", "--json")
    assert code == 0, err
    status = next(s for s in json.loads(out) if s.get("id") == worker)
    assert status["components"] == {"running": 1}
    assert status["prefix"] == env.prefix
    assert status["shutting_down"] is False


# ---------------------------------------------------------------------------------------------
# start, stop, restart


@pytest_twisted.ensureDeferred
async def test_start_from_a_file_runs_the_component(env, tmp_path):
    worker = env.worker.settings.worker_id
    file = tmp_path / "greeter.json"
    file.write_text(json.dumps(env.component("hello.Greeter", extra={"prefix": env.unique()}),
                               indent=2))

    out, err, code = await run_ctl(*management(env.router), "start", worker, "greeter", str(file))
    assert code == 0, err
    assert f"started greeter on worker {worker}" in out
    record = await env.call("get_component", "greeter")
    assert record["state"] == "running"
    assert record["config"]["classname"] == "hello.Greeter"
    assert f"session {record['session']}" in out


@pytest_twisted.ensureDeferred
async def test_start_with_broken_json_names_file_line_and_column(env, tmp_path):
    worker = env.worker.settings.worker_id
    file = tmp_path / "broken.json"
    file.write_text('{\n  "type": "class",\n  "realm": "realm1"\n  "classname": "hello.Quiet"\n}\n')

    out, err, code = await run_ctl(*management(env.router), "start", worker, "x", str(file))
    assert code == 1
    assert out == ""
    [line] = lines(err)
    assert line.startswith(f"error: {file}:4:3: invalid JSON: Expecting ',' delimiter")
    assert await env.call("get_components") == []


@pytest_twisted.ensureDeferred
async def test_start_with_an_invalid_config_names_the_key_where_it_is(env, tmp_path):
    worker = env.worker.settings.worker_id
    config = env.component("hello.Quiet")
    config["transport"]["type"] = "carrier-pigeon"
    file = tmp_path / "invalid.json"
    file.write_text(json.dumps(config, indent=2))

    _, err, code = await run_ctl(*management(env.router), "start", worker, "x", str(file))
    assert code == 1
    [line] = lines(err)
    assert line.startswith(f"error: {file}:")
    assert "transport" in line
    assert await env.call("get_components") == []


@pytest_twisted.ensureDeferred
async def test_a_start_the_worker_refuses_is_one_error_line(env, tmp_path):
    worker = env.worker.settings.worker_id
    file = tmp_path / "join-raises.json"
    file.write_text(json.dumps(env.component("faulty.JoinRaises")))

    out, err, code = await run_ctl(*management(env.router), "start", worker, "bad", str(file))
    assert code == 1
    assert out == ""
    [line] = lines(err)
    assert line.startswith("error: crossbar.error.cannot_start: ")
    assert "database unavailable" in line


@pytest_twisted.ensureDeferred
async def test_stop_stops_the_component(env):
    worker = env.worker.settings.worker_id
    await env.call("start_component", "alpha", env.component("hello.Quiet"))

    out, err, code = await run_ctl(*management(env.router), "stop", worker, "alpha")
    assert code == 0, err
    assert f"stopped alpha on worker {worker}" in out
    event = await env.events.wait_for("on_component_stop", id="alpha")
    assert event["reason"] == "requested"
    assert await env.call("get_components") == []


@pytest_twisted.ensureDeferred
async def test_restart_with_reload_starts_a_new_session(env):
    worker = env.worker.settings.worker_id
    first = await env.call("start_component", "alpha", env.component("hello.Quiet"))

    out, err, code = await run_ctl(*management(env.router), "restart", worker, "alpha",
                                   "--reload", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["stopped"]["component_id"] == "alpha"
    assert result["started"]["session"] != first["session"]
    assert result["caller"]["authid"] == "tester"
    await env.events.wait_for("on_component_restart", id="alpha", cause="requested")
    record = await env.call("get_component", "alpha")
    assert record["state"] == "running"
    assert record["restarts"] == 1

    out, err, code = await run_ctl(*management(env.router), "restart", worker, "alpha")
    assert code == 0, err
    assert f"restarted alpha on worker {worker}" in out


@pytest_twisted.ensureDeferred
async def test_an_unknown_component_is_one_error_line_and_exit_1(env):
    worker = env.worker.settings.worker_id
    for command in (["stop", worker, "nope"], ["restart", worker, "nope"]):
        out, err, code = await run_ctl(*management(env.router), *command)
        assert code == 1
        assert out == ""
        assert lines(err) == [
            "error: crossbar.error.no_such_object: no component with id 'nope' in this container"
        ]


@pytest_twisted.ensureDeferred
async def test_an_unknown_worker_is_one_error_line_and_exit_1(router):
    _, err, code = await run_ctl(*management(router), "stop", "no-such-worker", "x")
    assert code == 1
    [line] = lines(err)
    assert line.startswith("error: wamp.error.no_such_procedure: no worker 'no-such-worker'")
    assert "crossbar.worker.no-such-worker.stop_component" in line


# ---------------------------------------------------------------------------------------------
# connection and usage errors


@pytest_twisted.ensureDeferred
async def test_an_unreachable_router_is_one_line_and_exit_1():
    out, err, code = await run_ctl("--management", f"rs://127.0.0.1:{free_port()}", "list")
    assert code == 1
    assert out == ""
    [line] = lines(err)
    assert line.startswith("error: cannot connect to the management realm at ")


@pytest_twisted.ensureDeferred
async def test_a_wrong_ticket_is_one_line_and_exit_1(router):
    arguments = management(router)
    arguments[arguments.index("--secret-env") + 1] = "CTL_TEST_NO_SUCH_VARIABLE"
    os.environ.pop("CTL_TEST_NO_SUCH_VARIABLE", None)
    _, err, code = await run_ctl(*arguments, "list")
    assert code == 2  # no secret at all: a usage error
    assert "CTL_TEST_NO_SUCH_VARIABLE" in err

    _, err, code = await run_ctl(*management(router), "list",
                                 env=child_environment(**{SECRET_VARIABLE: "wrong"}))
    assert code == 1
    [line] = lines(err)
    assert line.startswith("error: the management realm 'crossbar' refused to let us join")


@pytest.mark.parametrize("arguments", [
    ["list"],
    ["--config", "a.json", "--management", "rs://127.0.0.1:1", "list"],
    ["--management", "rs://127.0.0.1:1", "--prefix", "custom.api", "list"],
    ["--management", "nonsense://x", "list"],
    ["--config", "a.json", "--realm", "other", "list"],
    ["--management", "rs://127.0.0.1:1", "--authid", "x", "--secret-file", "/no/such", "list"],
    ["--management", "rs://127.0.0.1:1", "stop", "w1"],
    ["--management", "rs://127.0.0.1:1", "frobnicate"],
])
def test_usage_errors_exit_2(arguments):
    result = subprocess.run([*command_line(), "ctl", *arguments], capture_output=True,
                            text=True, timeout=TIMEOUT, env=child_environment())
    assert result.returncode == 2, result
    assert "usage:" in result.stderr


# ---------------------------------------------------------------------------------------------
# watch


def spawn_ctl(children: Children, *arguments: str) -> ChildProcess:
    """``container ctl ARGUMENTS`` running while the test reads its output."""
    return children.spawn([*command_line(), "ctl", *arguments], env=child_environment(),
                          inherit=False)


@pytest_twisted.ensureDeferred
async def test_watch_prints_events_as_they_happen_until_sigterm(env, children):
    worker = env.worker.settings.worker_id
    child = spawn_ctl(children, *management(env.router), "watch")
    await child.wait_for("watching crossbar.worker.*", "err")
    await env.call("start_component", "alpha", env.component("hello.Quiet"))
    await child.wait_for(f"{worker}/alpha started (realm realm1", "out")
    await env.call("stop_component", "alpha")
    await child.wait_for(f"{worker}/alpha stopped (requested)", "out")
    code = await child.stop()
    assert code == 0, child.err
    started, stopped = (line for line in lines(child.out) if f"{worker}/alpha" in line)
    assert "started" in started
    assert "stopped" in stopped
    assert "Traceback" not in child.err


@pytest_twisted.ensureDeferred
async def test_watch_json_prints_one_event_per_line(env, children):
    worker = env.worker.settings.worker_id
    child = spawn_ctl(children, *management(env.router, "--worker", worker), "watch", "--json")
    await child.wait_for(f"watching {env.prefix}.*", "err")
    await env.call("start_component", "alpha", env.component("faulty.CrashesAfterJoin"))
    await child.wait_for('"on_component_stop"', "out")
    code = await child.stop()
    assert code == 0, child.err
    events = [json.loads(line) for line in lines(child.out)]
    assert [e["event"] for e in events][:2] == ["on_component_start", "on_component_stop"]
    assert all(e["payload"]["worker"] == worker for e in events)
    assert events[1]["payload"]["reason"] == "lost"
    assert events[1]["topic"] == f"{env.prefix}.on_component_stop"


@pytest_twisted.ensureDeferred
async def test_watch_exits_1_when_the_management_realm_stays_away(routers, children):
    lonely = start_router(routers)
    child = spawn_ctl(children, *management(lonely), "watch", "--reconnect-for", "1")
    await child.wait_for("watching crossbar.worker.*", "err")
    lonely.process.kill()
    code = await child.exited.addTimeout(TIMEOUT, reactor)
    assert code == 1
    assert lines(child.err)[-2:] == [
        "lost the connection to the management realm; reconnecting for up to 1 s",
        "error: lost the connection to the management realm and could not join it again "
        "within 1 s",
    ]


@pytest_twisted.ensureDeferred
async def test_watch_follows_events_again_after_the_router_restarts(routers, children):
    router = start_router(routers)
    child = spawn_ctl(children, *management(router), "watch")
    await child.wait_for("watching crossbar.worker.*", "err")
    router.process.kill()
    await child.wait_for("lost the connection to the management realm", "err")
    router.process.restart()
    await child.wait_for("reconnected: watching crossbar.worker.* again", "err")
    publisher = await wampclient.connect(router.management_address(), "crossbar",
                                         authid="tester", ticket=TESTER_TICKET)
    try:
        await publisher.publish(
            "crossbar.worker.w9.on_component_start",
            {"worker": "w9", "id": "late", "realm": "realm1", "session": 7},
            options=PublishOptions(acknowledge=True))
        await child.wait_for("w9/late started (realm realm1, session 7)", "out")
    finally:
        await wampclient.close(publisher)
    code = await child.stop()
    assert code == 0, child.err
    assert "Traceback" not in child.err


@pytest_twisted.ensureDeferred
async def test_a_command_interrupted_while_waiting_exits_128_plus_signal(env, tmp_path, children):
    worker = env.worker.settings.worker_id
    file = tmp_path / "slow.json"
    # a long grace period: the start must still be under way when ctl is interrupted
    file.write_text(json.dumps({**env.component("faulty.SlowJoin"), "ready_grace": 60}))
    child = spawn_ctl(children, *management(env.router), "start", worker, "slow", str(file))
    # the start is under way (and never finishes: SlowJoin's onJoin does not return)
    await poll(lambda: "slow" in env.worker.supervisor.components, timeout=TIMEOUT)
    code = await child.stop()
    assert code == 128 + signal.SIGTERM
    assert lines(child.err) == ["interrupted"]
    assert child.out == ""


# ---------------------------------------------------------------------------------------------
# shutdown


@pytest_twisted.ensureDeferred
async def test_shutdown_stops_the_components_and_the_worker_exits(workers):
    env = await workers()
    worker = env.worker.settings.worker_id
    await env.call("start_component", "alpha", env.component("hello.Quiet"))
    await env.call("start_component", "beta", env.component("hello.Quiet"))

    out, err, code = await run_ctl(*management(env.router), "shutdown", worker)
    assert code == 0, err
    assert f"worker {worker} shut down; stopped 2 components" in out
    assert await env.worker.done.addTimeout(TIMEOUT, reactor) == 0
    event = await env.events.wait_for("on_shutdown")
    assert sorted(event["stopped"]) == ["alpha", "beta"]

    # the worker is gone: talking to it is one clear line
    _, err, code = await run_ctl(*management(env.router, "--worker", worker), "status")
    assert code == 1
    assert f"no worker '{worker}'" in err


# ---------------------------------------------------------------------------------------------
# --config: the node's ctl file


def write_ctl_file(tmp_path: Any, router: Any, workers: list[dict[str, Any]],
                   node_pid: int | None = None) -> str:
    config = tmp_path / "node.json"
    config.write_text("{}")
    folder = tmp_path / ".container-run" / "node"
    folder.mkdir(parents=True)
    (folder / "ctl.json").write_text(json.dumps({
        "node_pid": os.getpid() if node_pid is None else node_pid,
        "config": str(config),
        "management": f"rs://127.0.0.1:{router.management_port}",
        "realm": "crossbar", "authid": "tester", "authmethod": "ticket",
        "secret": TESTER_TICKET, "workers": workers, "routers": [],
    }))
    os.chmod(folder / "ctl.json", 0o600)
    return str(config)


@pytest_twisted.ensureDeferred
async def test_config_form_reads_the_nodes_ctl_file(env, tmp_path):
    worker = env.worker.settings.worker_id
    config = write_ctl_file(tmp_path, env.router,
                            [{"id": worker, "prefix": env.prefix, "pid": os.getpid()}])
    await env.call("start_component", "alpha", env.component("hello.Quiet"))

    out, err, code = await run_ctl("--config", config, "list")
    assert code == 0, err
    [_, row] = table_rows(out)  # only the workers the node lists
    assert row[:3] == [worker, "alpha", "running"]

    out, err, code = await run_ctl("--config", config, "stop", worker, "alpha")
    assert code == 0, err
    assert await env.call("get_components") == []


@pytest_twisted.ensureDeferred
async def test_config_form_without_a_running_node_is_one_line(tmp_path):
    config = tmp_path / "node.json"
    _, err, code = await run_ctl("--config", str(config), "list")
    assert code == 1
    expected = tmp_path / ".container-run" / "node" / "ctl.json"
    assert lines(err) == [f"error: no node is running {config} (no {expected})"]


@pytest_twisted.ensureDeferred
async def test_config_form_with_a_stale_ctl_file_is_one_line(router, tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    config = write_ctl_file(tmp_path, router, [], node_pid=gone.pid)
    _, err, code = await run_ctl("--config", config, "list")
    assert code == 1
    [line] = lines(err)
    assert line.startswith(f"error: no node is running {config} (")
    assert f"node process {gone.pid} is gone" in line


def test_read_ctl_file_gives_address_credentials_and_workers(router, tmp_path):
    config = write_ctl_file(tmp_path, router, [
        {"id": "w1", "prefix": "crossbar.worker.w1", "pid": 1},
        {"id": "custom", "prefix": "com.example.custom", "pid": 2},
    ])
    target = read_ctl_file(config)
    assert target.realm == "crossbar"
    assert target.credentials == Credentials("tester", "ticket", TESTER_TICKET)
    assert target.address.endpoint.port == router.management_port
    assert [w.id for w in target.workers] == ["w1", "custom"]
    assert target.worker("custom").prefix == "com.example.custom"
    assert target.worker("other").prefix == "crossbar.worker.other"
    assert target.watch_prefixes() == ["crossbar.worker.", "com.example.custom."]
    only = read_ctl_file(config, ["custom"])
    assert only.workers == (WorkerRef("custom", "com.example.custom"),)
    assert only.watch_prefixes() == ["com.example.custom."]


def test_ctl_file_that_is_not_json_is_refused(tmp_path):
    folder = tmp_path / ".container-run" / "node"
    folder.mkdir(parents=True)
    (folder / "ctl.json").write_text("{")
    with pytest.raises(CtlError, match="not a valid ctl file"):
        read_ctl_file(tmp_path / "node.json")


# ---------------------------------------------------------------------------------------------
# options after the command


@pytest_twisted.ensureDeferred
async def test_options_may_follow_the_command(env, tmp_path):
    worker = env.worker.settings.worker_id
    await env.call("start_component", "alpha", env.component("hello.Quiet"))
    out, err, code = await run_ctl("list", "--json", *management(env.router, "--worker", worker))
    assert code == 0, err
    assert [c["id"] for c in json.loads(out)[0]["components"]] == ["alpha"]

    config = write_ctl_file(tmp_path, env.router, [{"id": worker, "prefix": env.prefix}])
    out, err, code = await run_ctl("--json", "stop", worker, "alpha", "--config", config)
    assert code == 0, err
    assert json.loads(out)["component_id"] == "alpha"


# ---------------------------------------------------------------------------------------------
# pure parts


def test_event_lines_say_what_happened():
    def line(kind: str, **payload: Any) -> str:
        return format_event(f"crossbar.worker.w1.{kind}", {"worker": "w1", **payload})[0]

    assert line("on_component_start", id="a", realm="realm1", session=7, restarts=0) == (
        "w1/a started (realm realm1, session 7)")
    assert line("on_component_start", id="a", realm="r", session=8, restarts=2).endswith(
        ", restart #2)")
    assert line("on_component_stop", id="a", reason="requested", will_restart=False) == (
        "w1/a stopped (requested)")
    assert line("on_component_stop", id="a", reason="failed", message="boom\ntrace",
                will_restart=True, restart_in=1.25, attempt=2) == (
        "w1/a failed (boom trace; restarting in 1.2s, attempt 2)")
    assert line("on_component_stop", id="a", reason="lost", message="gone",
                will_restart=False, gave_up=True) == (
        "w1/a lost its connection (gone; gave up restarting it)")
    assert line("on_component_restart", id="a", cause="requested", attempt=0) == (
        "w1/a restarting (requested)")
    assert line("on_component_restart", id="a", cause="failed", attempt=3, delay=4.0) == (
        "w1/a restarting (after it failed, attempt 3, in 4.0s)")
    assert line("on_worker_ready", pid=42, components=["a", "b"]) == (
        "worker w1 ready (pid 42, 2 components)")
    assert line("on_shutdown", reason="requested", exit_code=0, stopped=["a"]) == (
        "worker w1 shut down (requested; exit code 0, stopped 1 component)")
    assert line("on_something_new", x=1) == (
        'worker w1 on_something_new ({"worker": "w1", "x": 1})')


def test_the_node_and_watch_word_an_event_alike():
    """One wording (container.events): the node lays it out in columns, watch in a line."""
    event = {"worker": "w1", "id": "a", "reason": "failed", "message": "boom",
             "will_restart": True, "restart_in": 0.41, "attempt": 2}
    what, details = describe_worker_event("on_component_stop", event)
    assert (what, details) == ("failed", "boom; restarting in 0.4s, attempt 2")
    assert format_event("crossbar.worker.w1.on_component_stop", event)[0] == (
        f"w1/a {what} ({details})")
    assert describe_worker_event("on_worker_ready", {"pid": 42, "components": []}) == (
        "worker ready", "pid 42, 0 components")


def test_durations_read_at_a_glance():
    assert [format_duration(s) for s in (None, 0, 5.25, 61, 3 * 3600 + 120, 90000)] == [
        "-", "0.0s", "5.2s", "1m01s", "3h02m", "1d01h"]


def test_plain_tables_are_aligned_and_terminal_tables_use_rich():
    plain = io.StringIO()
    Output(plain, terminal=False).table(["worker", "id"], [["w1", "a"], ["w10", "bb"]])
    assert plain.getvalue().splitlines() == ["WORKER  ID", "w1      a", "w10     bb"]
    rich = io.StringIO()
    Output(rich, terminal=True).table(["worker", "id"], [["w1", "a[b]"]])
    assert "┃" in rich.getvalue() or "│" in rich.getvalue()
    assert "a[b]" in rich.getvalue()  # user text is not taken for rich markup


def test_component_file_paths_are_relative_to_the_file(tmp_path):
    file = tmp_path / "sub" / "c.json"
    file.parent.mkdir()
    file.write_text(json.dumps({
        "type": "class", "classname": "hello.Quiet", "realm": "realm1",
        "transport": {"type": "rawsocket", "endpoint": {"type": "unix", "path": "../r.sock"}},
    }))
    config = load_component_file(str(file))
    assert config["transport"]["endpoint"]["path"] == str(tmp_path / "r.sock")


def test_component_file_must_hold_an_object(tmp_path):
    file = tmp_path / "list.json"
    file.write_text("[]")
    with pytest.raises(CtlError, match=r"list\.json:1:1: .* must be a JSON object"):
        load_component_file(str(file))


def test_a_component_file_naming_another_id_is_refused_before_connecting(tmp_path):
    file = tmp_path / "c.json"
    file.write_text(json.dumps({
        "id": "alpha", "type": "class", "classname": "hello.Quiet", "realm": "realm1",
        "transport": {"type": "rawsocket",
                      "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": 1}},
    }))
    result = subprocess.run(
        [*command_line(), "ctl", "--management", "rs://127.0.0.1:1", "start", "w1", "beta",
         str(file)], capture_output=True, text=True, timeout=TIMEOUT, env=child_environment())
    assert result.returncode == 1
    assert result.stderr == (
        f"error: {file}: its \"id\" is 'alpha' but the command says 'beta'\n")
