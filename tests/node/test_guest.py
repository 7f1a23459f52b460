"""Guest workers: their launch resolved as Crossbar.io resolves it, their output modes, the
directory watcher on a fake clock, ``Supervised.restart`` on a fake reactor, and real guest
processes kept alive, fed on stdin and restarted by the node's supervision."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from container.errors import InvalidConfiguration
from container.node.guest import (
    GuestLaunch,
    GuestOutput,
    guest_key_paths,
    guest_launch,
    line_shown,
)
from container.node.plan import Launch
from container.node.procs import (
    DEFAULT_STDIO,
    ChildProcess,
    ExitStatus,
    RestartRules,
    Stdio,
    Supervised,
)
from container.node.watch import DirectoryWatcher, first_change, restart_on_change
from tests.support.fake_reactor import FakeReactor, tick

TIMEOUT = 30.0


def executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def guest(**fields: Any) -> dict[str, Any]:
    return {"type": "guest", "id": "g1", "executable": "tool", **fields}


# ---------------------------------------------------------------------------------------------
# guest_launch


def test_bare_name_is_found_on_the_node_path(tmp_path: Path) -> None:
    tool = executable(tmp_path / "bin" / "tool")
    launched = guest_launch(guest(arguments=["--x", "y"]), tmp_path,
                            {"PATH": str(tmp_path / "bin")})
    assert launched.launch.argv == [str(tool), "--x", "y"]


def test_executable_relative_to_workdir_wins_over_path(tmp_path: Path) -> None:
    executable(tmp_path / "bin" / "tool")
    local = executable(tmp_path / "app" / "tool")
    launched = guest_launch(guest(options={"workdir": "app"}), tmp_path,
                            {"PATH": str(tmp_path / "bin")})
    assert launched.launch.argv[0] == str(local)
    assert launched.launch.cwd == str(tmp_path / "app")


def test_executable_path_with_a_folder_is_relative_to_workdir(tmp_path: Path) -> None:
    script = executable(tmp_path / "app" / "scripts" / "run.sh")
    launched = guest_launch(guest(executable="scripts/run.sh", options={"workdir": "app"}),
                            tmp_path, {"PATH": ""})
    assert launched.launch.argv[0] == str(script)


def test_absolute_executable_is_used_as_given(tmp_path: Path) -> None:
    launched = guest_launch(guest(executable=sys.executable), tmp_path, {})
    assert launched.launch.argv[0] == os.path.abspath(sys.executable)


def test_workdir_defaults_to_the_node_directory(tmp_path: Path) -> None:
    executable(tmp_path / "tool")
    launched = guest_launch(guest(), tmp_path, {"PATH": ""})
    assert launched.launch.cwd == str(tmp_path)
    assert launched.launch.argv[0] == str(tmp_path / "tool")


def test_missing_executable_names_the_key_path_and_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfiguration) as raised:
        guest_launch(guest(executable="nope"), tmp_path, {"PATH": str(tmp_path)},
                     where=("workers", 2))
    assert str(raised.value) == (
        f"workers[2].executable: 'nope' not found on PATH or in {str(tmp_path)!r}"
    )


def test_missing_executable_without_key_path_names_the_guest(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfiguration, match=r"^guest worker 'g1': executable: 'nope'"):
        guest_launch(guest(executable="nope"), tmp_path, {"PATH": ""})


def test_file_that_is_not_executable_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain.sh").write_text("echo\n")
    with pytest.raises(InvalidConfiguration, match=r"^workers\[0\]\.executable: .* is not exec"):
        guest_launch(guest(executable="./plain.sh"), tmp_path, {}, where=("workers", 0))


def test_missing_workdir_names_the_key_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfiguration, match=r"^workers\[1\]\.options\.workdir: direc"):
        guest_launch(guest(options={"workdir": "nowhere"}), tmp_path, {},
                     where=("workers", 1))


def test_env_inherits_everything_by_default_and_sets_unbuffered(tmp_path: Path) -> None:
    launched = guest_launch(guest(executable=sys.executable), tmp_path, {"A": "1", "B": "2"})
    assert launched.launch.env == {"A": "1", "B": "2", "PYTHONUNBUFFERED": "1"}


def test_env_inherit_list_copies_only_those_names(tmp_path: Path) -> None:
    options = {"env": {"inherit": ["A", "MISSING"], "vars": {"C": "3"}}}
    launched = guest_launch(guest(executable=sys.executable, options=options), tmp_path,
                            {"A": "1", "B": "2"})
    assert launched.launch.env == {"A": "1", "C": "3", "PYTHONUNBUFFERED": "1"}


def test_env_inherit_false_keeps_only_vars_and_an_explicit_unbuffered(tmp_path: Path) -> None:
    options = {"env": {"inherit": False, "vars": {"PYTHONUNBUFFERED": ""}}}
    launched = guest_launch(guest(executable=sys.executable, options=options), tmp_path,
                            {"A": "1"})
    assert launched.launch.env == {"PYTHONUNBUFFERED": ""}


def test_stream_defaults_follow_crossbar(tmp_path: Path) -> None:
    launched = guest_launch(guest(executable=sys.executable), tmp_path, {})
    assert (launched.stdout, launched.stderr) == ("log", "log")
    assert (launched.stdin, launched.close_stdin) == (None, False)
    assert launched.stdio == Stdio(stdin=b"", close_stdin=False)


def test_stdin_json_payload_is_written_then_closed_unless_told(tmp_path: Path) -> None:
    value = {"name": "é", "n": [1, 2]}
    options = {"stdin": {"type": "json", "value": value}, "stdout": "close", "stderr": "drop"}
    launched = guest_launch(guest(executable=sys.executable, options=options), tmp_path, {})
    assert json.loads(launched.stdin or b"") == value
    assert launched.stdio == Stdio(stdin=launched.stdin or b"", close_stdin=True,
                                   close_stdout=True, close_stderr=False)
    options = {"stdin": {"type": "json", "value": 1, "close": False}}
    kept = guest_launch(guest(executable=sys.executable, options=options), tmp_path, {})
    assert (kept.stdin, kept.close_stdin) == (b"1", False)


def test_stdin_close_closes_without_payload(tmp_path: Path) -> None:
    launched = guest_launch(guest(executable=sys.executable, options={"stdin": "close"}),
                            tmp_path, {})
    assert (launched.stdin, launched.close_stdin) == (None, True)


def test_bad_stdin_and_output_modes_name_the_key(tmp_path: Path) -> None:
    bad = [({"stdin": {"type": "xml", "value": 1}}, r"options\.stdin:"),
           ({"stdout": "print"}, r"options\.stdout: 'print' is not one of"),
           ({"stdin": {"type": "json", "value": 1, "close": "yes"}}, r"options\.stdin\.close")]
    for options, message in bad:
        with pytest.raises(InvalidConfiguration, match=r"^workers\[3\]\." + message):
            guest_launch(guest(executable=sys.executable, options=options), tmp_path, {},
                         where=("workers", 3))


def test_watched_directories_are_absolute_and_relative_to_the_node_dir(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "app").mkdir()
    options = {"workdir": "app", "watch": {"directories": ["src"], "action": "restart"}}
    launched = guest_launch(guest(executable=sys.executable, options=options), tmp_path, {})
    assert launched.watch == (tmp_path / "src",)
    assert launched.watch_restart is True
    assert launched.watch_interval == 1.0


def test_missing_watched_directory_names_its_index(tmp_path: Path) -> None:
    options = {"watch": {"directories": ["gone"], "action": "restart"}}
    with pytest.raises(InvalidConfiguration,
                       match=r"^workers\[0\]\.options\.watch\.directories\[0\]: directory"):
        guest_launch(guest(executable=sys.executable, options=options), tmp_path, {},
                     where=("workers", 0))


def test_key_paths_use_the_ids_crossbar_generates() -> None:
    document = {"workers": [{"type": "router"}, {"type": "guest", "executable": "a"},
                            {"type": "guest", "id": "named", "executable": "b"}]}
    paths = guest_key_paths(document)
    assert paths["named"] == ("workers", 2)
    assert sorted(paths.values()) == [("workers", 1), ("workers", 2)]


# ---------------------------------------------------------------------------------------------
# output modes


def test_only_log_mode_shows_lines_and_never_blank_ones() -> None:
    assert line_shown("log", "hello")
    assert not line_shown("log", "   ")
    assert not line_shown("drop", "hello")
    assert not line_shown("close", "hello")


def test_guest_output_applies_each_streams_mode() -> None:
    shown: list[tuple[str, str]] = []
    launch = GuestLaunch("g1", Launch(["x"], {}, "/"), stdout="drop", stderr="log")
    output = GuestOutput(launch, lambda stream, line: shown.append((stream, line)))
    output("stdout", "dropped")
    output("stderr", "kept")
    assert shown == [("stderr", "kept")]


# ---------------------------------------------------------------------------------------------
# the directory watcher on a fake clock


class Changes:
    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, path: str) -> None:
        self.paths.append(path)


def watcher(tmp_path: Path, **kwargs: Any) -> tuple[Clock, DirectoryWatcher, Changes]:
    clock, changes = Clock(), Changes()
    watching = DirectoryWatcher(clock, [tmp_path], changes, 1.0, **kwargs)
    watching.start()
    return clock, watching, changes


def test_new_file_triggers_one_change_after_the_burst(tmp_path: Path) -> None:
    clock, watching, changes = watcher(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "app.py").write_text("x = 1\n")
    clock.advance(1.0)
    assert changes.paths == []  # still in the burst
    clock.advance(1.0)
    assert changes.paths == [str(tmp_path / "sub" / "app.py")]
    tick(clock, 5)
    assert len(changes.paths) == 1
    watching.stop()
    assert clock.getDelayedCalls() == []


def test_no_change_means_no_call(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("x = 1\n")
    clock, watching, changes = watcher(tmp_path)
    tick(clock, 10)
    assert changes.paths == []
    watching.stop()
    assert clock.getDelayedCalls() == []


def test_changes_in_consecutive_polls_make_one_call(tmp_path: Path) -> None:
    clock, watching, changes = watcher(tmp_path)
    (tmp_path / "a.py").write_text("a\n")
    clock.advance(1.0)
    (tmp_path / "b.py").write_text("b\n")
    clock.advance(1.0)
    (tmp_path / "a.py").write_text("a changed\n")
    clock.advance(1.0)
    clock.advance(1.0)
    assert changes.paths == [str(tmp_path / "a.py")]
    watching.stop()
    assert clock.getDelayedCalls() == []


def test_modified_and_removed_files_are_changes(tmp_path: Path) -> None:
    target = tmp_path / "app.py"
    target.write_text("x = 1\n")
    clock, watching, changes = watcher(tmp_path)
    target.write_text("x = 22\n")
    tick(clock, 2)
    target.unlink()
    tick(clock, 2)
    assert changes.paths == [str(target), str(target)]
    watching.stop()
    assert clock.getDelayedCalls() == []


def test_bytecode_vcs_and_run_dir_are_not_watched(tmp_path: Path) -> None:
    clock, watching, changes = watcher(tmp_path)
    for folder in ("__pycache__", ".git", ".container-run"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "file").write_text("x")
    (tmp_path / "module.pyc").write_bytes(b"x")
    tick(clock, 5)
    assert changes.paths == []
    watching.stop()
    assert clock.getDelayedCalls() == []


def test_a_poll_is_bounded_and_still_sees_changes(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).write_text(name)
    clock, watching, changes = watcher(tmp_path, max_files=2)
    (tmp_path / "c").write_text("not watched: past the bound in name order")
    tick(clock, 2)
    assert changes.paths == []
    (tmp_path / "a").write_text("watched")
    tick(clock, 2)
    assert changes.paths == [str(tmp_path / "a")]
    watching.stop()
    assert clock.getDelayedCalls() == []


def test_failing_handler_does_not_stop_the_watcher(tmp_path: Path) -> None:
    clock, calls = Clock(), []

    def failing(path: str) -> None:
        calls.append(path)
        raise RuntimeError("boom")

    watching = DirectoryWatcher(clock, [tmp_path], failing, 1.0)
    watching.start()
    (tmp_path / "a").write_text("a")
    tick(clock, 2)
    (tmp_path / "b").write_text("b")
    tick(clock, 2)
    assert len(calls) == 2
    assert watching.running
    watching.stop()
    watching.stop()
    assert clock.getDelayedCalls() == []


def test_first_change_finds_added_changed_and_removed() -> None:
    assert first_change({"a": (1, 1, 1)}, {"a": (1, 1, 1)}) is None
    assert first_change({}, {"a": (1, 1, 1)}) == "a"
    assert first_change({"a": (1, 1, 1)}, {"a": (2, 1, 1)}) == "a"
    assert first_change({"a": (1, 1, 1), "b": (1, 1, 2)}, {"a": (1, 1, 1)}) == "b"


# ---------------------------------------------------------------------------------------------
# Supervised.restart and Stdio on a fake reactor


class Events:
    """A SupervisionListener that records, and resolves waits as the records arrive."""

    def __init__(self) -> None:
        self.spawned_pids: list[int | None] = []
        self.spawned_restarting: list[bool] = []
        self.exits: list[tuple[ExitStatus, float | None]] = []
        self.lines: list[tuple[str, str]] = []
        self._waits: list[tuple[Callable[[], bool], Deferred[None]]] = []

    def spawned(self, child: Supervised, process: ChildProcess) -> None:
        self.spawned_pids.append(process.pid)
        self.spawned_restarting.append(child.restarting)
        self._check()

    def exited(self, child: Supervised, status: ExitStatus, restart_in: float | None) -> None:
        self.exits.append((status, restart_in))
        self._check()

    def on_line(self, stream: str, line: str) -> None:
        self.lines.append((stream, line))
        self._check()

    def wait(self, condition: Callable[[], bool], timeout: float = TIMEOUT) -> Deferred[None]:
        """Fires once ``condition()`` holds (checked on every record), or times out."""
        from twisted.internet import reactor

        waiting: Deferred[None] = Deferred()
        self._waits.append((condition, waiting))
        self._check()
        return waiting.addTimeout(timeout, reactor)

    def _check(self) -> None:
        for condition, waiting in list(self._waits):
            if not waiting.called and condition():
                self._waits.remove((condition, waiting))
                waiting.callback(None)


def always(status: ExitStatus) -> bool:
    return True


def fake_supervised(stdio: Stdio = DEFAULT_STDIO) -> tuple[FakeReactor, Supervised, Events]:
    reactor, events = FakeReactor(), Events()
    child = Supervised(reactor, "g1", lambda: Launch(["tool"], {}, "/"), RestartRules(always),
                       events, events.on_line, stdio)
    return reactor, child, events


def test_default_stdio_closes_stdin_and_reads_both_outputs() -> None:
    reactor, child, _ = fake_supervised()
    child.start()
    _, transport = reactor.children[0]
    assert (transport.written, transport.stdin_closed, transport.closed_fds) == (b"", True, [])
    assert reactor.getDelayedCalls() == []


def test_stdio_writes_the_payload_then_closes_what_it_is_told() -> None:
    reactor, child, _ = fake_supervised(Stdio(b'{"a":1}', close_stdin=False, close_stdout=True,
                                              close_stderr=True))
    child.start()
    _, transport = reactor.children[0]
    assert (transport.written, transport.stdin_closed) == (b'{"a":1}', False)
    assert transport.closed_fds == [1, 2]
    assert reactor.getDelayedCalls() == []


def test_restart_replaces_the_process_at_once_and_is_no_crash() -> None:
    reactor, child, events = fake_supervised()
    child.start()
    restarted = Deferred.fromCoroutine(child.restart(5.0))
    assert child.restarting
    assert reactor.children[0][1].signals == [signal.SIGTERM]
    reactor.end(0)
    assert restarted.called and not child.restarting
    assert events.exits == [(ExitStatus(None, signal.SIGTERM), 0.0)]
    assert events.spawned_pids == [100, 101]
    assert events.spawned_restarting == [False, True]
    assert child.generation == 1 and child.pid == 101
    assert reactor.getDelayedCalls() == []


def test_restart_during_a_backoff_wait_spawns_now() -> None:
    reactor, child, _ = fake_supervised()
    child.start()
    reactor.end(0, signal.SIGKILL)
    reactor.advance(0)  # the first crash is respawned at once
    reactor.end(1, signal.SIGKILL)  # the second waits for its backoff
    assert len(reactor.getDelayedCalls()) == 1
    Deferred.fromCoroutine(child.restart(5.0))
    assert len(reactor.children) == 3
    assert child.pid == 102
    assert reactor.getDelayedCalls() == []


def test_restart_is_ignored_while_one_runs_and_after_stop() -> None:
    reactor, child, _ = fake_supervised()
    child.start()
    Deferred.fromCoroutine(child.restart(5.0))
    Deferred.fromCoroutine(child.restart(5.0))
    reactor.end(0)
    assert len(reactor.children) == 2
    stopped = Deferred.fromCoroutine(child.stop(5.0))
    reactor.end(1)
    assert stopped.called
    Deferred.fromCoroutine(child.restart(5.0))
    assert len(reactor.children) == 2
    assert reactor.getDelayedCalls() == []


def test_stop_during_a_restart_wins() -> None:
    reactor, child, events = fake_supervised()
    child.start()
    restarted = Deferred.fromCoroutine(child.restart(5.0))
    stopped = Deferred.fromCoroutine(child.stop(5.0))
    reactor.end(0)
    assert restarted.called and stopped.called
    assert len(reactor.children) == 1
    assert events.exits == [(ExitStatus(None, signal.SIGTERM), None)]
    assert child.final == ExitStatus(None, signal.SIGTERM)
    assert reactor.getDelayedCalls() == []


# ---------------------------------------------------------------------------------------------
# real guests under supervision

GUEST_SCRIPT = """\
import json, os, sys, time
mode = sys.argv[1]
if mode == "stdin":
    print("payload", json.dumps(json.load(sys.stdin), sort_keys=True), flush=True)
elif mode == "closed-stdout":
    try:
        print("to stdout", flush=True)
    except BrokenPipeError:
        sys.stderr.write("stdout is closed\\n")
        sys.stderr.flush()
        os._exit(0)
else:
    print("hello", os.getpid(), flush=True)
    sys.stderr.write("err %d\\n" % os.getpid())
    sys.stderr.flush()
if mode == "once":
    sys.exit(0)
time.sleep(60)
"""


@pytest_twisted.async_yield_fixture
async def run_guest(tmp_path: Path) -> Any:
    """``run_guest(mode, options)``: a real guest under Supervised; all stopped afterwards."""
    from twisted.internet import reactor

    (tmp_path / "guest.py").write_text(GUEST_SCRIPT)
    started: list[tuple[Supervised, DirectoryWatcher | None]] = []

    def run(mode: str, options: dict[str, Any] | None = None,
            restartable: Callable[[ExitStatus], bool] = always) -> tuple[Supervised, Events]:
        config = {"type": "guest", "id": "g1", "executable": sys.executable,
                  "arguments": ["guest.py", mode], "options": options or {}}
        launched = guest_launch(config, tmp_path, os.environ, where=("workers", 0))
        events = Events()
        child = Supervised(reactor, "g1", lambda: launched.launch, RestartRules(restartable),
                           events, GuestOutput(launched, events.on_line), launched.stdio)
        watching = restart_on_change(reactor, launched, child, 5.0, lambda path, go: None)
        started.append((child, watching))
        if watching is not None:
            watching.start()
        child.start()
        return child, events

    yield run
    for child, watching in started:
        if watching is not None:
            watching.stop()
        await child.stop(5.0)


def hello_from(events: Events, pid: int | None) -> Callable[[], bool]:
    return lambda: ("stdout", f"hello {pid}") in events.lines


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest_twisted.ensureDeferred
async def test_killed_guest_is_started_again_with_its_output_logged(run_guest: Any) -> None:
    child, events = run_guest("forever")
    first = child.pid
    assert first is not None
    await events.wait(hello_from(events, first))
    await events.wait(lambda: ("stderr", f"err {first}") in events.lines)
    os.kill(first, signal.SIGKILL)
    await events.wait(lambda: len(events.spawned_pids) == 2)
    second = child.pid
    assert second is not None and second != first
    await events.wait(hello_from(events, second))
    killed, restart_in = events.exits[0]
    assert killed == ExitStatus(None, signal.SIGKILL) and restart_in is not None
    status = await child.stop(5.0)
    assert status == ExitStatus(None, signal.SIGTERM)
    assert child.pid is None and not alive(second)


@pytest_twisted.ensureDeferred
async def test_stdin_json_payload_reaches_the_guest(run_guest: Any) -> None:
    value = {"greeting": "grüß dich", "n": [1, 2]}
    _, events = run_guest("stdin", {"stdin": {"type": "json", "value": value}})
    expected = ("stdout", "payload " + json.dumps(value, sort_keys=True))
    await events.wait(lambda: expected in events.lines)


@pytest_twisted.ensureDeferred
async def test_dropped_stdout_is_read_but_not_shown(run_guest: Any) -> None:
    child, events = run_guest("once", {"stdout": "drop"}, restartable=lambda status: False)
    await events.wait(lambda: len(events.exits) == 1)  # every line has arrived by now
    assert events.lines == [("stderr", f"err {events.spawned_pids[0]}")]
    assert child.final == ExitStatus(0)


@pytest_twisted.ensureDeferred
async def test_closed_stdout_makes_the_guests_writes_fail(run_guest: Any) -> None:
    child, events = run_guest("closed-stdout", {"stdout": "close"},
                              restartable=lambda status: False)
    await events.wait(lambda: len(events.exits) == 1)
    assert events.lines == [("stderr", "stdout is closed")]
    assert child.final == ExitStatus(0)


@pytest_twisted.ensureDeferred
async def test_restart_gives_a_new_process_that_logs_again(run_guest: Any) -> None:
    child, events = run_guest("forever")
    first = child.pid
    await events.wait(hello_from(events, first))
    status = await child.restart(5.0)
    assert status == ExitStatus(None, signal.SIGTERM)
    assert events.exits == [(status, 0.0)]
    assert child.pid is not None and child.pid != first and not alive(first or 0)
    await events.wait(hello_from(events, child.pid))


@pytest_twisted.ensureDeferred
async def test_changed_file_in_watched_directory_restarts_the_guest(
    run_guest: Any, tmp_path: Path
) -> None:
    (tmp_path / "src").mkdir()
    watch = {"directories": ["src"], "action": "restart", "timeout": 0.05}
    child, events = run_guest("forever", {"watch": watch})
    first = child.pid
    await events.wait(hello_from(events, first))
    (tmp_path / "src" / "app.py").write_text("changed = True\n")
    await events.wait(lambda: len(events.spawned_pids) == 2)
    assert events.exits[0][1] == 0.0
    await events.wait(hello_from(events, child.pid))
