"""The fixtures every test folder shares; what they are made of lives in tests/support/.

Nothing here imports container/ at import time, so that a test of pure parts (the layout, the
policies) still runs while a module it does not need is broken.

- ``router``: the one shared Crossbar.io router process (session scope).
- ``routers``: routers of a test's own (to kill, restart or misconfigure), stopped after it.
- ``children``: child processes spawned on the reactor, stopped by pid after the test.
- ``nodes``: ``container run`` processes, killed by pid with all they spawned after the test.
- ``workers`` / ``env``: container workers in this process, joined to the shared router.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from tests.support.node import Nodes
from tests.support.paths import APPS
from tests.support.processes import Children
from tests.support.router import RouterAddresses, start_router
from tests.support.routerproc import Routers

if APPS not in sys.path:
    sys.path.insert(0, APPS)


@pytest.fixture(scope="session")
def router() -> Iterator[RouterAddresses]:
    """The shared router (``tests.support.router.router_config``): for tests that only
    connect to it. A test that kills or restarts a router starts its own with ``routers``."""
    started = Routers()
    try:
        yield start_router(started)
    finally:
        started.stop_all()


@pytest.fixture
def routers() -> Iterator[Routers]:
    """``routers.start(config)`` starts a router process of the test's own; every one is
    stopped by pid after the test."""
    started = Routers()
    try:
        yield started
    finally:
        started.stop_all()


@pytest_twisted.async_yield_fixture
async def children() -> Any:
    """``children.spawn(args, env=...)`` starts a child process on the reactor; every one is
    stopped by pid (SIGTERM, then SIGKILL) after the test."""
    started = Children()
    try:
        yield started
    finally:
        await started.stop_all()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    """``nodes(config, name)`` runs ``container run`` on a config dict (written to tmp_path) or
    a config file; every node, and all it spawned, is killed by pid after the test."""
    started = Nodes(tmp_path)
    try:
        yield started
    finally:
        started.kill_all()


@pytest_twisted.async_yield_fixture
async def workers(router: RouterAddresses) -> Any:
    """``await workers(options)`` starts a worker; all are shut down after the test."""
    from tests.support.workers import WorkerEnv, start_worker_env, stop_worker_env

    started: list[WorkerEnv] = []

    async def start(options: dict[str, Any] | None = None, **kwargs: Any) -> WorkerEnv:
        env = await start_worker_env(router, options, **kwargs)
        started.append(env)
        return env

    yield start
    for env in started:
        await stop_worker_env(env)


@pytest_twisted.async_yield_fixture
async def env(workers: Any) -> Any:
    """One worker with default options."""
    yield await workers()
