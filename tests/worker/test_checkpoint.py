"""The checkpoint file: every accepted configuration survives it, a failing write is seen and
retried, a file that cannot be used is set aside (never overwritten, never blocking)."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time

import pytest
import pytest_twisted
from twisted.internet import reactor

from container.errors import CheckpointError
from container.files import write_atomically
from container.worker.checkpoint import (
    decode_value,
    encode_checkpoint,
    encode_value,
    parse_checkpoint,
    read_checkpoint,
)
from tests.support import wampclient
from tests.support.router import WORKER_TICKET
from tests.support.wampclient import poll
from tests.support.workers import management_events, worker_command

AWKWARD = {
    "blob": b"\x00\xffbytes",
    "nested": [b"", {"deep": bytearray(b"x")}],
    "$bytes": "a key that looks like a tag",
    "ints": {1: "one", 2: b"two"},
    "when": datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC),
    "plain": {"a": [1, 2.5, None, True, "s"]},
}


def saved_ids(path: str) -> list[str]:
    """The component ids in the checkpoint at ``path`` (none while there is no file)."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as file:
        return sorted(json.load(file)["components"])


def leftovers(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if ".tmp-" in name)


def test_every_value_cbor_and_msgpack_carry_round_trips_through_json():
    encoded = json.loads(json.dumps(encode_value(AWKWARD)))
    assert decode_value(encoded) == AWKWARD


def test_a_checkpoint_round_trips_for_its_own_worker_only():
    data = encode_checkpoint("w1", {"c": {"extra": AWKWARD}})
    assert parse_checkpoint(data, "w1") == {"c": {"extra": AWKWARD}}
    with pytest.raises(CheckpointError, match="belongs to worker 'w1'"):
        parse_checkpoint(data, "w2")


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "state.json"
    target.mkdir()
    for _ in range(3):
        with pytest.raises(OSError):
            write_atomically(str(target), b"{}")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("contents", [b"not json", b"[]", b'"x"', b'{"components": null}',
                                      b'{"version": 1, "worker": "w1", "components": []}',
                                      b"\xff\xfe", b""])
def test_an_unusable_checkpoint_is_set_aside_not_resumed(tmp_path, contents):
    path = tmp_path / "state.json"
    path.write_bytes(contents)
    loaded = read_checkpoint(str(path), "w1")
    assert loaded.components == {}
    assert loaded.problem
    assert not path.exists()
    assert loaded.aside is not None and ".corrupt-" in loaded.aside
    with open(loaded.aside, "rb") as kept:
        assert kept.read() == contents


def test_a_checkpoint_of_another_worker_is_set_aside(tmp_path):
    path = tmp_path / "state.json"
    path.write_bytes(encode_checkpoint("other", {"c": {"type": "class"}}))
    loaded = read_checkpoint(str(path), "w1")
    assert loaded.components == {} and "belongs to worker 'other'" in loaded.problem
    assert os.path.exists(loaded.aside)


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink"])
def test_a_state_path_that_is_not_a_regular_file_is_never_opened(tmp_path, kind):
    path = tmp_path / "state.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        (tmp_path / "target").write_bytes(encode_checkpoint("w1", {}))
        path.symlink_to(tmp_path / "target")
    began = time.monotonic()
    loaded = read_checkpoint(str(path), "w1")
    assert time.monotonic() - began < 5
    assert "not a regular file" in loaded.problem
    assert not os.path.lexists(path) and os.path.lexists(loaded.aside)


def test_a_missing_checkpoint_is_an_empty_start(tmp_path):
    loaded = read_checkpoint(str(tmp_path / "none.json"), "w1")
    assert loaded.components == {} and loaded.problem is None


# -- in a worker joined to the router ------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_bytes_in_extra_are_checkpointed_and_resumed(workers, tmp_path):
    state_file = str(tmp_path / "state.json")
    first = await workers({}, state_file=state_file)
    config = first.component("hello.Quiet", extra={"key": b"\x00\x01", "n": 1})
    await first.call("start_component", "b", config)
    await first.call("start_component", "later", first.component("hello.Quiet"))
    await poll(lambda: "later" in saved_ids(state_file))
    status = await first.call("get_status")
    assert status["checkpoint"] == {"path": state_file, "ok": True, "error": None,
                                    "set_aside": None}
    with open(state_file, "rb") as file:
        saved = file.read()
    worker_id = "resumer1"
    resumed_file = tmp_path / "resumed.json"
    resumed_file.write_bytes(
        encode_checkpoint(worker_id, parse_checkpoint(saved, first.worker.settings.worker_id)))
    second = await workers({}, state_file=str(resumed_file), worker_id=worker_id)
    await second.events.wait_for("on_component_start", id="b")
    await second.events.wait_for("on_component_start", id="later")
    assert (await second.call("get_component", "b"))["config"]["extra"]["key"] == b"\x00\x01"
    assert leftovers(tmp_path) == []


@pytest_twisted.ensureDeferred
async def test_a_failing_write_is_reported_retried_and_leaves_no_temporary_files(
    workers, tmp_path
):
    state_file = tmp_path / "state.json"
    env = await workers({}, state_file=str(state_file))
    state_file.mkdir()  # the state path turns into a directory: every write fails
    await env.call("start_component", "c1", env.component("hello.Quiet"))

    async def checkpoint() -> dict:
        return (await env.call("get_status"))["checkpoint"]

    await poll(lambda: not env.worker.checkpoint.status()["ok"])
    failing = await checkpoint()
    assert failing["ok"] is False
    assert str(state_file) in failing["error"] and "directory" in failing["error"].lower()
    await env.call("start_component", "c2", env.component("hello.Quiet"))
    assert leftovers(tmp_path) == []
    state_file.rmdir()  # fixed: the retry writes the whole set
    await poll(lambda: state_file.is_file(), timeout=10)
    assert sorted(json.loads(state_file.read_text())["components"]) == ["c1", "c2"]
    assert (await checkpoint())["ok"] is True
    assert leftovers(tmp_path) == []


@pytest_twisted.ensureDeferred
async def test_a_corrupt_checkpoint_is_set_aside_reported_and_not_overwritten(workers, tmp_path):
    state_file = tmp_path / "state.json"
    state_file.write_text('{"components": null}')
    env = await workers({}, state_file=str(state_file))
    status = (await env.call("get_status"))["checkpoint"]
    aside = status["set_aside"]["moved_to"]
    assert "not a valid checkpoint" in status["set_aside"]["problem"]
    with open(aside, encoding="utf-8") as kept:
        assert kept.read() == '{"components": null}'
    await env.call("start_component", "c1", env.component("hello.Quiet"))
    await poll(lambda: state_file.is_file())
    with open(aside, encoding="utf-8") as kept:
        assert kept.read() == '{"components": null}'


# -- as a process -------------------------------------------------------------------------


def test_a_worker_whose_state_directory_is_not_writable_refuses_to_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "container", "worker", "--management", "rs://127.0.0.1:9",
         "--id", "x", "--state-file", str(blocker / "state.json")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "not writable" in result.stderr and str(blocker) in result.stderr


@pytest_twisted.ensureDeferred
async def test_components_started_after_a_bytes_config_survive_kill_9(router, tmp_path, children):
    worker_id = "killed9"
    prefix = f"crossbar.worker.{worker_id}"
    state_file = str(tmp_path / "state.json")
    env = {"TEST_WORKER_TICKET": WORKER_TICKET}
    client, events = await management_events(router, prefix)
    first = children.spawn(worker_command(router, worker_id, "--state-file", state_file), env=env)
    try:
        await events.wait_for("on_worker_ready", timeout=60)
        transport = router.rawsocket_transport()
        await client.call(f"{prefix}.start_component", "bin",
                          {"type": "class", "classname": "hello.Quiet", "realm": "realm1",
                           "transport": transport, "extra": {"blob": b"\x00\xff"}})
        await client.call(f"{prefix}.start_component", "after",
                          {"type": "class", "classname": "hello.Quiet", "realm": "realm1",
                           "transport": transport})
        await poll(lambda: "after" in saved_ids(state_file))
        first.signal(9)
        await first.exited
        events.events.clear()
        children.spawn(worker_command(router, worker_id, "--state-file", state_file), env=env)
        await events.wait_for("on_component_start", id="after", timeout=60)
        await events.wait_for("on_component_start", id="bin", timeout=60)
        assert sorted(await client.call(f"{prefix}.get_components")) == ["after", "bin"]
        config = await client.call(f"{prefix}.get_component", "bin")
        assert config["config"]["extra"]["blob"] == b"\x00\xff"
        assert leftovers(tmp_path) == []
    finally:
        await wampclient.close(client)


@pytest_twisted.ensureDeferred
async def test_a_second_worker_with_an_id_in_use_exits_3(router, children):
    worker_id = "twin"
    prefix = f"crossbar.worker.{worker_id}"
    env = {"TEST_WORKER_TICKET": WORKER_TICKET}
    client, events = await management_events(router, prefix)
    first = children.spawn(worker_command(router, worker_id), env=env)
    try:
        ready = await events.wait_for("on_worker_ready", timeout=60)
        second = children.spawn(worker_command(router, worker_id), env=env)
        assert await second.exited.addTimeout(60, reactor) == 3
        assert "already serving" in second.text
        status = await client.call(f"{prefix}.get_status")
        assert status["pid"] == ready["pid"] == first.pid
    finally:
        await wampclient.close(client)


def test_ctl_status_tells_about_a_failing_or_set_aside_checkpoint():
    from container.ctl.output import checkpoint_notes

    assert checkpoint_notes(None) == []
    assert checkpoint_notes({"path": "p", "ok": True, "error": None, "set_aside": None}) == []
    notes = checkpoint_notes({"path": "p", "ok": False, "error": "cannot write the checkpoint p",
                              "set_aside": {"path": "p", "problem": "is a FIFO",
                                            "moved_to": "p.corrupt-1"}})
    assert notes == ["checkpoint failing: cannot write the checkpoint p",
                     "checkpoint p is a FIFO; set aside as p.corrupt-1"]
