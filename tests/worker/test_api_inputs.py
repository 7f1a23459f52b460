"""What the management API refuses, and the shapes it answers in, over a real router.

A client in another language sees only the wire: flags that are not booleans, ids that are
not one WAMP URI component, arguments that do not fit, and configurations with a mistake
must each come back as a documented error URI with a message that starts where the mistake
is and holds nothing of Python's internals; every result and event is one positional value.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from autobahn.wamp.types import CallResult, SubscribeOptions

from tests.support import wampclient
from tests.support.wampclient import expect_error, message

INVALID_ARGUMENT = "wamp.error.invalid_argument"
INVALID_CONFIGURATION = "crossbar.error.invalid_configuration"
PYTHON_INTERNALS = ("<function", " at 0x", "ApplicationError(", "were given", "keyword argument",
                    "Traceback")


def assert_plain(text: str) -> None:
    """A message a person reads: one line (nothing unprintable, so no line breaks of any
    kind), none of Python's internals."""
    assert text.isprintable(), text
    for internal in PYTHON_INTERNALS:
        assert internal not in text, text


# -- flags -----------------------------------------------------------------------------------

NOT_BOOLEANS = [("false", "string 'false'"), ("no", "string 'no'"), (0, "integer 0"),
                (1, "integer 1"), (None, "null")]


@pytest.mark.parametrize(("value", "shown"), NOT_BOOLEANS)
@pytest.mark.parametrize("flag", ["reload_modules", "wait_for_router"])
@pytest_twisted.ensureDeferred
async def test_a_start_flag_that_is_not_a_boolean_is_refused_and_starts_nothing(
        env: Any, flag: str, value: Any, shown: str) -> None:
    error = await expect_error(
        env.call("start_component", "c1", env.component("hello.Quiet"), **{flag: value}),
        INVALID_ARGUMENT)
    assert message(error).startswith(f"{flag}: ")
    assert f"expected boolean, got {shown}" in message(error)
    assert error.kwargs["argument"] == flag
    assert await env.call("get_components") == []


@pytest_twisted.ensureDeferred
async def test_a_positional_flag_is_checked_too(env: Any) -> None:
    error = await expect_error(
        env.call("start_component", "c1", env.component("hello.Quiet"), "no"), INVALID_ARGUMENT)
    assert message(error).startswith("reload_modules: ")
    assert await env.call("get_components") == []


@pytest_twisted.ensureDeferred
async def test_restart_with_a_flag_that_is_not_a_boolean_leaves_the_component_alone(
        env: Any) -> None:
    first = await env.call("start_component", "c1", env.component("hello.Quiet"))
    error = await expect_error(env.call("restart_component", "c1", reload_modules="yes"),
                               INVALID_ARGUMENT)
    assert "reload_modules" in message(error)
    record = await env.call("get_component", "c1")
    assert (record["state"], record["restarts"], record["session"]) == (
        "running", 0, first["session"])


@pytest.mark.parametrize(("value", "shown"), NOT_BOOLEANS)
@pytest_twisted.ensureDeferred
async def test_get_components_full_must_be_a_boolean(env: Any, value: Any, shown: str) -> None:
    await env.call("start_component", "c1", env.component("hello.Quiet"))
    error = await expect_error(env.call("get_components", full=value), INVALID_ARGUMENT)
    assert message(error).startswith("full: ")
    assert shown in message(error)
    assert await env.call("get_components", full=False) == ["c1"]


# -- component ids -----------------------------------------------------------------------------

BAD_IDS = {
    "empty": "",
    "too long": "x" * 256,
    "a newline": "c1\nnode: worker w1 ready",
    "a control character": "c\x001",
    "a line separator": "c\u20281",
    "a C1 control character": "c\x851",
    "a space": "my component",
    "a tab": "c\t1",
    "a dot": "backend.1",
    "a hash": "c#1",
    "not a string": 5,
    "null": None,
}
GOOD_IDS = ["hello", "backend-1", "c1", "component001", "Größe_7", "x" * 255]


@pytest.mark.parametrize("procedure", ["start_component", "stop_component",
                                       "restart_component", "get_component"])
@pytest.mark.parametrize("case", sorted(BAD_IDS))
@pytest_twisted.ensureDeferred
async def test_a_component_id_that_is_not_one_uri_component_is_refused(
        env: Any, procedure: str, case: str) -> None:
    component_id = BAD_IDS[case]
    args = (component_id, env.component("hello.Quiet")) if procedure == "start_component" else (
        component_id,)
    error = await expect_error(env.call(procedure, *args), INVALID_CONFIGURATION)
    assert error.kwargs["key"] == "component_id"
    assert message(error).startswith("component_id: ")
    assert "1 to 255 characters" in message(error)  # says what is allowed
    assert_plain(message(error))
    assert len(message(error)) < 400  # a long id is not echoed whole
    assert await env.call("get_components") == []


@pytest_twisted.ensureDeferred
async def test_usual_ids_and_the_longest_allowed_are_accepted(env: Any) -> None:
    for component_id in GOOD_IDS:
        started = await env.call("start_component", component_id, env.component("hello.Quiet"))
        assert started["id"] == component_id
    assert await env.call("get_components") == sorted(GOOD_IDS)


# -- what the documentation promises -----------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_on_component_start_carries_the_start_result(env: Any) -> None:
    started = await env.call("start_component", "c1", env.component("hello.Quiet"),
                             reload_modules=True)
    event = await env.events.wait_for("on_component_start", id="c1")
    assert event["reloaded"] == started["reloaded"] == []
    assert {key: event[key] for key in started} == started
    assert (event["restarts"], event["attempt"]) == (0, 0)
    restarted = await env.call("restart_component", "c1")
    event = await env.events.wait_for("on_component_start", id="c1", restarts=1)
    assert event["reloaded"] == restarted["started"]["reloaded"] == []


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda c: c.pop("realm"), "realm"),
        (lambda c: c["transport"]["endpoint"].pop("port"), "transport.endpoint.port"),
        (lambda c: c["transport"].update(type="carrier-pigeon"), "transport.type"),
        (lambda c: c["transport"]["endpoint"].update(port="8080"), "transport.endpoint.port"),
        (lambda c: c.update(colour="blue"), "colour"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_invalid_configuration_starts_with_the_key_it_names(
        env: Any, mutate: Any, key: str) -> None:
    config = env.component("hello.Quiet")
    mutate(config)
    error = await expect_error(env.call("start_component", "bad", config), INVALID_CONFIGURATION)
    assert error.kwargs["key"] == key
    assert message(error).startswith(f"{key}: ")
    assert error.kwargs["problems"][0].startswith(f"{key}: ")


@pytest_twisted.ensureDeferred
async def test_each_missing_key_is_named_itself(env: Any) -> None:
    config = env.component("hello.Quiet")
    del config["realm"], config["transport"]
    error = await expect_error(env.call("start_component", "bad", config), INVALID_CONFIGURATION)
    assert error.kwargs["problems"] == ["realm: missing required key 'realm'",
                                        "transport: missing required key 'transport'"]
    assert message(error) == "realm: missing required key 'realm' (and 1 more)"


@pytest_twisted.ensureDeferred
async def test_a_misspelt_key_gets_the_close_match_over_the_api(env: Any) -> None:
    config = env.component("hello.Quiet")
    config["clasname"] = config.pop("classname")
    error = await expect_error(env.call("start_component", "bad", config), INVALID_CONFIGURATION)
    assert "did you mean 'classname'?" in message(error)
    assert error.kwargs["key"] == "clasname"


@pytest_twisted.ensureDeferred
async def test_stop_result_says_id_and_component_id(env: Any) -> None:
    await env.call("start_component", "c1", env.component("hello.Quiet"))
    stopped = await env.call("stop_component", "c1")
    assert stopped["id"] == stopped["component_id"] == "c1"
    await env.call("start_component", "c2", env.component("hello.Quiet"))
    restarted = await env.call("restart_component", "c2")
    assert restarted["stopped"]["id"] == restarted["stopped"]["component_id"] == "c2"


@pytest_twisted.ensureDeferred
async def test_the_stop_events_of_a_shutdown_name_its_caller(workers: Any) -> None:
    env = await workers()
    for component_id in ("a", "b"):
        await env.call("start_component", component_id, env.component("hello.Quiet"))
    assert sorted(await env.call("shutdown")) == ["a", "b"]
    for component_id in ("a", "b"):
        event = await env.events.wait_for("on_component_stop", id=component_id)
        assert event["reason"] == "requested"
        assert event["caller"]["authid"] == "tester"


@pytest.mark.parametrize(
    ("procedure", "args", "kwargs", "says"),
    [
        ("start_component", ("c1",), {}, "missing argument 'config'"),
        ("get_component", ("c1", "extra"), {}, "takes at most 1 positional argument, got 2"),
        ("get_component", (), {}, "missing argument 'component_id'"),
        ("get_status", (), {"details": 1}, "no argument named 'details'"),
        ("get_components", (), {"verbose": True}, "no argument named 'verbose'"),
        ("stop_component", ("c1",), {"component_id": "c1"},
         "argument 'component_id' given twice"),
        ("shutdown", ("now",), {}, "takes no positional arguments, got 1"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_arguments_that_do_not_fit_say_what_the_procedure_takes(
        env: Any, procedure: str, args: tuple[Any, ...], kwargs: dict[str, Any],
        says: str) -> None:
    error = await expect_error(env.call(procedure, *args, **kwargs), INVALID_ARGUMENT)
    assert says in message(error)
    assert message(error).startswith(f"{procedure}(")  # the procedure's arguments
    assert_plain(message(error))
    assert await env.call("get_components") == []


@pytest.mark.parametrize(
    ("classname", "uri", "says"),
    [
        ("api_faults.JoinRaisesApplicationError", "crossbar.error.cannot_start",
         "onJoin raised com.example.database_unavailable: the database is down"),
        ("api_faults.make_session", "crossbar.error.class_import_failed",
         "it is a function (api_faults.make_session)"),
        ("faulty.NOT_A_CLASS", "crossbar.error.class_import_failed", "it is an integer (42)"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_failures_are_described_without_python_reprs(
        env: Any, classname: str, uri: str, says: str) -> None:
    error = await expect_error(env.call("start_component", "bad", env.component(classname)), uri)
    assert says in message(error)
    assert_plain(message(error))


@pytest_twisted.ensureDeferred
async def test_results_and_events_are_one_positional_value(env: Any) -> None:
    """What a client in any language reads: args[0], a dict or a list, and no kwargs."""
    received: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def record(*args: Any, **kwargs: Any) -> None:
        received.append((args, kwargs))

    await env.client.subscribe(record, f"{env.prefix}.", options=SubscribeOptions(match="prefix"))
    calls: list[tuple[str, tuple[Any, ...]]] = [
        ("start_component", ("c1", env.component("hello.Quiet"))),
        ("get_component", ("c1",)),
        ("get_components", ()),
        ("get_status", ()),
        ("restart_component", ("c1",)),
        ("stop_component", ("c1",)),
    ]
    for procedure, args in calls:
        result = await env.call(procedure, *args)
        assert not isinstance(result, CallResult), procedure  # one positional, no kwargs
        assert isinstance(result, dict | list), procedure
    await wampclient.poll(lambda: len(received) >= 5)  # start, stop, restart, start, stop
    for args, kwargs in received:
        assert len(args) == 1 and isinstance(args[0], dict), args
        assert kwargs == {}, kwargs
