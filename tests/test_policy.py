"""Restart and shutdown policies, backoff arithmetic and restart intensity: pure values."""

import pytest

from container.errors import InvalidConfiguration
from container.options import container_options_problems, parse_container_options
from container.policy import (
    Backoff,
    RestartLimit,
    RestartPolicy,
    RestartWindow,
    ShutdownPolicy,
    StopReason,
)


def test_restart_on_failed_is_accepted_as_restart_failed():
    assert RestartPolicy.parse("restart-on-failed") is RestartPolicy.FAILED
    assert parse_container_options({"restart": "restart-on-failed"}).restart is RestartPolicy.FAILED


@pytest.mark.parametrize(
    ("policy", "reason", "expected"),
    [
        (RestartPolicy.NEVER, StopReason.FAILED, False),
        (RestartPolicy.ALWAYS, StopReason.LEFT, True),
        (RestartPolicy.ALWAYS, StopReason.LOST, True),
        (RestartPolicy.FAILED, StopReason.FAILED, True),
        (RestartPolicy.FAILED, StopReason.LOST, True),
        (RestartPolicy.FAILED, StopReason.LEFT, False),
    ],
)
def test_restart_decision(policy, reason, expected):
    assert policy.should_restart(reason) is expected


@pytest.mark.parametrize("policy", list(RestartPolicy))
def test_a_requested_stop_is_never_restarted(policy):
    assert policy.should_restart(StopReason.REQUESTED) is False


@pytest.mark.parametrize("policy", list(ShutdownPolicy))
def test_a_requested_stop_never_shuts_the_worker_down(policy):
    assert policy.should_shutdown(StopReason.REQUESTED, remaining=0) is False


def test_shutdown_decisions():
    assert ShutdownPolicy.ON_LAST_STOPPED.should_shutdown(StopReason.LEFT, remaining=1) is False
    assert ShutdownPolicy.ON_LAST_STOPPED.should_shutdown(StopReason.LEFT, remaining=0) is True
    assert ShutdownPolicy.ON_ANY_STOPPED.should_shutdown(StopReason.LEFT, remaining=3) is True
    assert ShutdownPolicy.ON_ANY_FAILED.should_shutdown(StopReason.LEFT, remaining=0) is False
    assert ShutdownPolicy.ON_ANY_FAILED.should_shutdown(StopReason.LOST, remaining=3) is True
    assert ShutdownPolicy.MANUAL.should_shutdown(StopReason.FAILED, remaining=0) is False


def test_backoff_first_restart_is_immediate_then_grows_to_the_cap():
    backoff = Backoff(first=0.0, initial=0.1, max=2.0, multiplier=2.0, jitter=0.0)
    delays = [backoff.delay(attempt) for attempt in range(1, 9)]
    assert delays == [0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


def test_backoff_jitter_stays_within_its_fraction():
    backoff = Backoff(initial=1.0, jitter=0.25, max=10)
    assert backoff.delay(2, uniform=lambda: 0.0) == pytest.approx(0.75)
    assert backoff.delay(2, uniform=lambda: 1.0) == pytest.approx(1.25)
    assert backoff.delay(2, uniform=lambda: 0.5) == pytest.approx(1.0)


def test_backoff_survives_huge_attempt_numbers():
    assert Backoff(max=5.0, jitter=0).delay(10_000) == 5.0


def test_restart_window_allows_n_restarts_per_period():
    window = RestartWindow(RestartLimit(max_restarts=3, period=10.0))
    assert [window.allow(t) for t in (0.0, 1.0, 2.0)] == [True, True, True]
    assert window.allow(3.0) is False
    assert window.allow(10.5) is True  # the restart at t=0 has left the window


def test_no_limit_allows_everything():
    window = RestartWindow(None)
    assert all(window.allow(float(t)) for t in range(1000))


@pytest.mark.parametrize(
    ("options", "ok"),
    [
        ({"restart": "restart-always", "shutdown": "shutdown-on-any-component-failed"}, False),
        ({"restart": "restart-always", "shutdown": "shutdown-on-last-component-stopped"}, False),
        ({"restart": "restart-failed", "shutdown": "shutdown-on-any-component-failed"}, False),
        ({"restart": "restart-failed", "shutdown": "shutdown-on-any-component-stopped"}, True),
        ({"restart": "restart-always", "shutdown": "shutdown-on-any-component-failed",
          "restart_limit": {"max_restarts": 3, "period": 10}}, True),
        ({"restart": "restart-never", "shutdown": "shutdown-on-any-component-failed"}, True),
    ],
)
def test_shutdown_modes_that_can_never_trigger_are_refused(options, ok):
    problems = container_options_problems(options)
    assert (problems == []) is ok
    if not ok:
        assert problems[0].path == ("shutdown",)
        assert "can never trigger" in problems[0].message


def test_unknown_and_wrong_typed_options_are_refused_naming_the_key():
    with pytest.raises(InvalidConfiguration) as caught:
        parse_container_options({"restart_backoff": {"initial": "fast"}})
    assert "restart_backoff.initial" in str(caught.value)
    with pytest.raises(InvalidConfiguration) as caught:
        parse_container_options({"restrat": "restart-always"})
    assert "restrat" in str(caught.value)
    with pytest.raises(InvalidConfiguration) as caught:
        parse_container_options({"restart": "sometimes"})
    assert "valid: restart-never," in str(caught.value)


def test_options_become_typed_values():
    options = parse_container_options({
        "restart": "restart-always",
        "restart_backoff": {"initial": 0.5, "max": 8, "stable_after": 3},
        "restart_limit": {"max_restarts": 5, "period": 60},
        "stop_timeout": 2,
    })
    assert options.backoff.initial == 0.5
    assert options.backoff.stable_after == 3
    assert options.restart_limit == RestartLimit(5, 60)
    assert options.stop_timeout == 2.0
