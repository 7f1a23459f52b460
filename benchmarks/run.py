"""Benchmarks of the container worker, side by side with the floor and Crossbar.io's container.

    .venv/bin/python benchmarks/run.py [--quick] [--runs 5] [--out bench-results/results.json]

Everything runs on this machine, on loopback, in one invocation; every figure is the median
of ``--runs`` runs with min and max. See docs/benchmarks.md for what each figure means.

1. API start: N components started concurrently through ``start_component`` into one fresh
   ``container worker`` process on the embedded Crossbar.io router (listen backlog 1024),
   from the first call until the last component joined (the ``started`` time each result
   carries: its onJoin finished) and until the last result was back. Floor: N plain
   autobahn sessions opened concurrently from one fresh bare process (benchmarks/floor.py)
   to the same router, same transport (RawSocket/TCP) and serializer (CBOR), until the last
   onJoin. Also the router's CPU time during our start, the bound no start can beat, and
   the managed floor (benchmarks/managed_floor.py): a bare process behind the same
   management call, whose start_component only opens a plain session.
2. Node cold start: ``container run FILE`` and ``crossbar start`` on the same node file (one
   router, one container of K components), from launch to the first and to the last
   component joined (the components stamp CLOCK_MONOTONIC into a file on join).
3. Memory (RSS): the worker idle (joined to the management realm, no component) and its
   growth per component at N; the floor process idle and its growth per session; Crossbar.io's
   container worker process with 1 and N components.
4. Restart: crash (transport aborted) to the restarted instance joined, first restart,
   ``restart-always``; CPU share of the worker process while a component crashes right after
   every join, for a window of 10 s.
5. Management API with N components hosted: latency p50/p99 of ``get_components`` and
   ``get_component``, and the throughput of 100 concurrent calls.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import txaio  # noqa: E402

txaio.use_twisted()

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred, DeferredList  # noqa: E402

from benchmarks import configs, procs, report  # noqa: E402
from benchmarks.report import Figure, Row, Target  # noqa: E402
from container.management import Credentials, parse_management_url  # noqa: E402
from container.management.client import ManagementClient, connect_management  # noqa: E402

FLOOR_SCRIPT = str(ROOT / "benchmarks" / "floor.py")
MANAGED_FLOOR_SCRIPT = str(ROOT / "benchmarks" / "managed_floor.py")
CROSSBAR = str(Path(sys.executable).parent / "crossbar")
SECTIONS = ("api", "restart", "memory", "cold")
MIB = 2**20
KIB = 2**10


# ---------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------


@dataclass
class Settings:
    runs: int = 5
    quick: bool = False
    crossbar: bool = True
    ns: list[int] = field(default_factory=lambda: [1, 50, 200, 1000])
    memory_ns: list[int] = field(default_factory=lambda: [200, 1000])
    ks: list[int] = field(default_factory=lambda: [1, 200])
    restart_samples: int = 5
    loop_window: float = 10.0
    latency_calls: int = 300
    concurrency: int = 100
    settle: float = 0.5
    warmup: bool = True
    worker_loglevel: str = "info"
    out: Path = ROOT / "bench-results" / "results.json"
    keep: bool = False
    profile: Path | None = None
    only: list[str] = field(default_factory=lambda: list(SECTIONS))

    @property
    def mgmt_n(self) -> int:
        return max(self.ns)

    def as_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def parse_arguments(argv: list[str]) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny N, one run, short windows (a smoke run, under a minute)")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 5)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON results file (default bench-results/results.json)")
    parser.add_argument("--no-crossbar", action="store_true",
                        help="skip the Crossbar.io references (crossbar start)")
    parser.add_argument("--n", type=int, action="append", default=None,
                        help="API start sizes (repeat; default 1 50 200 1000)")
    parser.add_argument("--worker-loglevel", default="info",
                        help="log level of the container workers (default info, as the node)")
    parser.add_argument("--only", action="append", choices=SECTIONS, default=None,
                        help="run only these sections (repeat; default all)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="record py-spy profiles (raw collapsed stacks) of the worker, the "
                             "floor and the router during the first API start run of the "
                             "largest N and the first container crash-loop window into DIR")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.quick:
        settings = Settings(
            runs=1, quick=True, ns=[1, 10], memory_ns=[10], ks=[1, 3], restart_samples=1,
            loop_window=1.0, latency_calls=20, concurrency=100, settle=0.2, warmup=False,
        )
    if args.runs is not None:
        if args.runs < 1:
            parser.error("--runs must be at least 1")
        settings.runs = args.runs
    if args.n:
        settings.ns = sorted(set(args.n))
        settings.memory_ns = [n for n in settings.memory_ns if n in settings.ns] or [max(args.n)]
    settings.crossbar = not args.no_crossbar
    settings.worker_loglevel = args.worker_loglevel
    settings.keep = args.keep
    settings.profile = args.profile
    settings.only = args.only or list(SECTIONS)
    if args.out is not None:
        settings.out = args.out
    return settings


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def now() -> float:
    """CLOCK_MONOTONIC, the clock the benchmark components stamp with."""
    return time.monotonic()


def log(text: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def joined_after(results: list[Any], wall_started: float, what: str) -> list[float]:
    """Seconds from ``wall_started`` to each component's join, in order: each result's
    ``started`` is when its onJoin finished (UTC, microseconds). Raises if any call failed."""
    failures = [result for ok, result in results if not ok]
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(results)} {what} failed, first: "
                           f"{failures[0].getErrorMessage()}")
    return sorted(
        datetime.fromisoformat(r["started"].replace("Z", "+00:00")).timestamp() - wall_started
        for _, r in results)


def read_stamps(path: Path) -> list[tuple[str, str, float]]:
    """``(event, key, t)`` for every complete line of a stamp file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    stamps = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            stamps.append((parts[0], parts[1], float(parts[2])))
    return stamps


async def wait_until(
    check: Callable[[], Any], timeout: float, what: str, child: procs.Child | None = None,
    interval: float = 0.01,
) -> Any:
    """Poll ``check`` until it returns something truthy (bounded in time)."""
    deadline = now() + timeout
    while True:
        result = check()
        if result:
            return result
        if child is not None and not child.running:
            raise procs.ChildError(
                f"{child.name} exited with {child.exit_code} while waiting for {what}; "
                f"stderr:\n{child.stderr_tail()}"
            )
        if now() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        await procs.sleep(interval)


class EventWatch:
    """Lifecycle events of every worker (prefix ``crossbar.worker.``), as the node follows them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._waiters: list[tuple[Callable[[str, Any], bool], Deferred[Any]]] = []

    def __call__(self, topic: str, payload: Any) -> None:
        self.events.append((topic, payload))
        for waiter in list(self._waiters):
            if waiter[0](topic, payload):
                self._waiters.remove(waiter)
                waiter[1].callback(payload)
        if len(self.events) > 10_000:
            del self.events[:5_000]

    async def wait_for(self, topic: str, timeout: float, child: procs.Child) -> Any:
        def match(t: str, _: Any) -> bool:
            return t == topic

        for t, payload in self.events:
            if match(t, payload):
                return payload
        deferred: Deferred[Any] = Deferred()
        self._waiters.append((match, deferred))
        deferred.addTimeout(timeout, reactor)
        exited = child.exited

        def died(code: int) -> int:
            if not deferred.called:
                deferred.errback(procs.ChildError(
                    f"{child.name} exited with {code}: {child.stderr_tail()}"))
            return code

        exited.addCallback(died)
        try:
            return await deferred
        except TimeoutError:
            raise TimeoutError(f"no {topic} within {timeout:g} s; stderr of {child.name}:\n"
                               f"{child.stderr_tail()}") from None


# ---------------------------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.work = Path(tempfile.mkdtemp(prefix="wamp-container-bench-"))
        self.logs = self.work / "logs"
        self.logs.mkdir()
        self.figures: dict[str, Figure] = {}
        self.rows: list[Row] = []
        self.targets: list[Target] = []
        self.worker_ticket = secrets.token_hex(16)
        self.bench_ticket = secrets.token_hex(16)
        self.router: procs.Child | None = None
        self.app_port = 0
        self.management_port = 0
        self.client: ManagementClient | None = None
        self.watch = EventWatch()
        self._serial = 0
        self._profiled: dict[str, bool] = {}
        self._declare()

    # -- figures ------------------------------------------------------------------------

    def fig(self, key: str, label: str = "", unit: str = "") -> Figure:
        figure = self.figures.get(key)
        if figure is None:
            figure = self.figures[key] = Figure(key, label or key, unit)
        return figure

    def add(self, key: str, value: float) -> None:
        self.figures[key].samples.append(value)

    def failed(self, keys: list[str], error: BaseException) -> None:
        text = f"{type(error).__name__}: {error}".strip()
        text = text if len(text) < 600 else text[:600] + "..."
        log(f"FAILED {', '.join(keys)}: {text}")
        if not isinstance(error, procs.ChildError | TimeoutError):
            traceback.print_exception(error, file=sys.stderr)
        for key in keys:
            figure = self.figures[key]
            figure.error = figure.error or text

    def _declare(self) -> None:
        s = self.s
        cb = "Crossbar.io"
        for n in s.ns:
            self.fig(f"api_start.n{n}.container", f"API start N={n}", "s")
            self.fig(f"api_start.n{n}.floor", f"floor N={n}", "s")
            self.fig(f"api_start.n{n}.container.returned", f"API start N={n}: last result", "s")
            self.fig(f"api_start.n{n}.container.first", f"API start N={n}: first joined", "s")
            self.fig(f"api_start.n{n}.floor.first", f"floor N={n}: first joined", "s")
            self.fig(f"api_start.n{n}.managed", f"managed floor N={n}", "s")
            self.fig(f"api_start.n{n}.managed.returned", f"managed floor N={n}: last result", "s")
            self.rows.append(Row("API start: N components until all joined", f"N={n}",
                                 f"api_start.n{n}.container", f"api_start.n{n}.floor", "floor"))
            self.fig(f"api_start.n{n}.calls", f"N={n} get_status calls alone", "s")
            self.fig(f"api_start.n{n}.container.router_seconds", f"router CPU N={n}", "s")
        managed = ("API start: a bare process behind the same management call (its "
                   "start_component only opens a plain session), until all joined")
        for n in s.ns:
            self.rows.append(Row(managed, f"N={n}", f"api_start.n{n}.managed",
                                 f"api_start.n{n}.floor", "floor"))
            self.rows.append(Row(managed, f"N={n} (ours against it)", f"api_start.n{n}.container",
                                 f"api_start.n{n}.managed", "managed floor"))
        for n in s.ns:
            self.rows.append(Row("API start: until the first component joined", f"N={n}",
                                 f"api_start.n{n}.container.first", f"api_start.n{n}.floor.first",
                                 "floor"))
        for n in s.ns:
            self.rows.append(Row("API start: until the last start_component result was back",
                                 f"N={n}", f"api_start.n{n}.container.returned",
                                 f"api_start.n{n}.floor", "floor"))
        for n in s.ns:
            self.rows.append(Row("API start: the router's CPU time during our start (one core: "
                                 "no start can be shorter)", f"N={n}",
                                 f"api_start.n{n}.container.router_seconds",
                                 f"api_start.n{n}.floor", "floor"))
        for n in s.ns:
            self.rows.append(Row("API start: the management round trips alone (N concurrent "
                                 "get_status to the idle worker)", f"N={n}",
                                 f"api_start.n{n}.calls", f"api_start.n{n}.floor", "floor"))
        cpu = "API start: CPU time per component during the start (ms)"
        for n in s.ns:
            for who, label in (("process", "worker / floor process"), ("router", "router"),
                               ("client", "management client")):
                self.fig(f"api_start.n{n}.container.cpu_{who}", f"CPU {label} N={n}", "ms")
                self.fig(f"api_start.n{n}.floor.cpu_{who}", f"floor CPU {label} N={n}", "ms")
                if n == max(s.ns) or n == 200:
                    self.rows.append(Row(cpu, f"N={n} {label}",
                                         f"api_start.n{n}.container.cpu_{who}",
                                         f"api_start.n{n}.floor.cpu_{who}", "floor"))
        ks = s.ks
        for k in ks:
            for system in ("container", "crossbar"):
                self.fig(f"cold.k{k}.{system}.first", f"cold start K={k} first join", "s")
                self.fig(f"cold.k{k}.{system}.all", f"cold start K={k} all joined", "s")
                self.fig(f"memory.node.k{k}.{system}", f"node-started worker RSS K={k}", "MiB")
        for k in ks:
            section = "Node cold start: launch until joined (run vs crossbar start)"
            self.rows.append(Row(section, f"K={k} first joined", f"cold.k{k}.container.first",
                                 f"cold.k{k}.crossbar.first", cb))
            self.rows.append(Row(section, f"K={k} all joined", f"cold.k{k}.container.all",
                                 f"cold.k{k}.crossbar.all", cb))
        memory = "Memory: RSS of the worker process"
        self.fig("memory.idle.container", "worker idle RSS", "MiB")
        self.fig("memory.idle.floor", "bare autobahn process RSS", "MiB")
        self.fig("memory.idle.crossbar", "Crossbar.io container worker RSS, 1 component", "MiB")
        self.rows.append(Row(memory, "idle", "memory.idle.container", "memory.idle.floor",
                             "floor"))
        self.rows.append(Row(memory, "idle (Crossbar.io: 1 component)", "memory.idle.container",
                             "memory.idle.crossbar", cb))
        for n in s.memory_ns:
            self.fig(f"memory.n{n}.container.rss", f"worker RSS N={n}", "MiB")
            self.fig(f"memory.n{n}.floor.rss", f"floor RSS N={n}", "MiB")
            self.fig(f"memory.n{n}.crossbar.rss", f"Crossbar.io RSS N={n}", "MiB")
            self.fig(f"memory.n{n}.container.per_component", f"per component N={n}", "KiB")
            self.fig(f"memory.n{n}.floor.per_session", f"floor per session N={n}", "KiB")
            self.fig(f"memory.n{n}.crossbar.per_component", f"Crossbar.io per comp N={n}", "KiB")
            self.rows.append(Row(memory, f"per component N={n}",
                                 f"memory.n{n}.container.per_component",
                                 f"memory.n{n}.floor.per_session", "floor"))
            self.rows.append(Row(memory, f"per component N={n}",
                                 f"memory.n{n}.container.per_component",
                                 f"memory.n{n}.crossbar.per_component", cb))
            self.rows.append(Row(memory, f"total N={n}", f"memory.n{n}.container.rss",
                                 f"memory.n{n}.crossbar.rss", cb))
        for k in ks:
            self.rows.append(Row(memory, f"node-started K={k} (Stamp)",
                                 f"memory.node.k{k}.container", f"memory.node.k{k}.crossbar", cb))
        restart = "Restart (restart-always)"
        for system in ("container", "crossbar"):
            self.fig(f"restart.first.{system}", "first restart: crash to joined", "ms")
            self.fig(f"restart.loop.{system}.cpu", "crash loop CPU, % of one core", "%")
            self.fig(f"restart.loop.{system}.router_cpu", "router CPU during crash loop", "%")
            self.fig(f"restart.loop.{system}.rate", "crash loop restarts per second", "/s")
        self.fig("restart.loop.container.kept", "component kept (1 = not given up)", "")
        self.rows.append(Row(restart, "first restart", "restart.first.container",
                             "restart.first.crossbar", cb))
        self.rows.append(Row(restart, f"crash loop worker CPU ({s.loop_window:g} s)",
                             "restart.loop.container.cpu", "restart.loop.crossbar.cpu", cb))
        self.rows.append(Row(restart, "crash loop restarts/s", "restart.loop.container.rate",
                             "restart.loop.crossbar.rate", cb))
        self.rows.append(Row(restart, "crash loop router CPU", "restart.loop.container.router_cpu",
                             "restart.loop.crossbar.router_cpu", cb))
        mgmt = f"Management API with N={s.mgmt_n} components"
        for name in ("get_components", "get_component", "get_components_full"):
            for q in ("p50", "p99"):
                self.fig(f"mgmt.{name}.{q}", f"{name} {q}", "ms")
                self.rows.append(Row(mgmt, f"{name} {q}", f"mgmt.{name}.{q}", None))
        self.fig("mgmt.throughput", f"{s.concurrency} concurrent get_component", "/s")
        self.rows.append(Row(mgmt, f"{s.concurrency} concurrent calls", "mgmt.throughput", None))
        self.targets = [
            Target("worker idle RSS <= 1.1x bare autobahn process",
                   "memory.idle.container/memory.idle.floor", 1.1),
            *[Target(f"per-component growth N={n} <= 1.1x floor per session",
                     f"memory.n{n}.container.per_component/memory.n{n}.floor.per_session", 1.1)
              for n in s.memory_ns],
            *[Target(f"API start N={n} <= 1.2x floor",
                     f"api_start.n{n}.container/api_start.n{n}.floor", 1.2)
              for n in s.ns if n == 200 or (s.quick and n == max(s.ns))],
            *[Target(f"node cold start K={k}: first component joined <= 2.5 s",
                     f"cold.k{k}.container.first", 2.5) for k in ks],
            *[Target(f"node cold start K={k}: first joined <= 0.6x crossbar start",
                     f"cold.k{k}.container.first/cold.k{k}.crossbar.first", 0.6)
              for k in ks],
            *[Target(f"node cold start K={k}: all joined faster than Crossbar.io",
                     f"cold.k{k}.container.all/cold.k{k}.crossbar.all", 1.0, "<") for k in ks],
            Target("first restart <= 12 ms", "restart.first.container", 12.0),
            Target("crash loop < 5 % of one core", "restart.loop.container.cpu", 5.0, "<"),
            Target("crash loop keeps the component", "restart.loop.container.kept", 1.0, ">="),
            Target(f"get_components p99 <= 5 ms at N={s.mgmt_n}", "mgmt.get_components.p99",
                   5.0),
        ]

    # -- shared infrastructure ---------------------------------------------------------------

    async def start_router(self) -> None:
        path = self.work / "router.json"
        path.write_text(json.dumps(configs.router_config(self.worker_ticket, self.bench_ticket)))
        self.router = procs.spawn(
            "router", [sys.executable, "-m", "container.router", str(path), "--loglevel", "warn"],
            cwd=str(self.work), log_path=self.logs / "router.log",
        )
        line = await self.router.wait_line(lambda text: '"ready"' in text, 90)
        ports = {t["id"]: int(t["endpoint"]["port"]) for t in json.loads(line)["transports"]}
        self.app_port, self.management_port = ports["app"], ports["management"]
        self.client = await connect_management(
            reactor, parse_management_url(f"rs://127.0.0.1:{self.management_port}"),
            configs.MANAGEMENT_REALM, Credentials(configs.BENCH_AUTHID, "ticket",
                                                  self.bench_ticket),
        )
        await self.client.follow("crossbar.worker.", self.watch)
        log(f"router pid {self.router.pid}: app port {self.app_port}, management port "
            f"{self.management_port}")

    async def stop_router(self) -> None:
        if self.client is not None:
            await self.client.close()
        if self.router is not None:
            await self.router.stop()

    def worker_id(self, stem: str) -> str:
        self._serial += 1
        return f"{stem}{self._serial}"

    async def spawn_worker(
        self, worker_id: str, options: dict[str, Any] | None = None
    ) -> tuple[procs.Child, str]:
        """A ``container worker`` process, once it announced ``on_worker_ready``."""
        prefix = f"crossbar.worker.{worker_id}"
        args = [
            sys.executable, "-m", "container", "worker",
            "--management", f"rs://127.0.0.1:{self.management_port}",
            "--realm", configs.MANAGEMENT_REALM, "--id", worker_id,
            "--authid", configs.WORKER_AUTHID, "--secret-env", "BENCH_WORKER_TICKET",
            "--options", json.dumps({"pythonpath": [configs.APPS], **(options or {})}),
            "--loglevel", self.s.worker_loglevel,
        ]
        child = procs.spawn(f"worker {worker_id}", args, env={"BENCH_WORKER_TICKET":
                                                            self.worker_ticket},
                            cwd=str(self.work), log_path=self.logs / f"{worker_id}.log")
        try:
            await self.watch.wait_for(f"{prefix}.on_worker_ready", 90, child)
        except BaseException:
            await child.stop()
            raise
        return child, prefix

    async def stop_worker(self, child: procs.Child, prefix: str) -> None:
        """``shutdown`` through the API (stops every component), then stop the process."""
        if child.running and self.client is not None:
            try:
                await self.call(prefix, "shutdown", timeout=120)
                await child.wait_exit(30)
            except Exception as error:
                log(f"shutdown of {child.name} failed ({error}); stopping it by pid")
        await child.stop()

    async def call(self, prefix: str, procedure: str, *args: Any, timeout: float = 60,
                   **kwargs: Any) -> Any:
        assert self.client is not None
        return await self.client.worker_call(prefix, procedure, *args, **kwargs).addTimeout(
            timeout, reactor)

    # -- profiling (optional) ---------------------------------------------------------------

    async def profilers(self, name: str, pids: dict[str, int | None]) -> list[procs.Child]:
        """py-spy recorders attached to ``pids`` (none unless --profile was given)."""
        folder = self.s.profile
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy")
        if folder is None:
            return []
        if spy is None:
            log("--profile: py-spy not found (pip install py-spy); not profiling")
            return []
        folder.mkdir(parents=True, exist_ok=True)
        recorders = []
        for what, pid in pids.items():
            if pid is None:
                continue
            out = folder / f"{name}.{what}.txt"
            recorders.append(procs.spawn(
                f"py-spy {what}",
                [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "1000",
                 "--nonblocking", "--output", str(out)],
                log_path=self.logs / "py-spy.log"))
        await procs.sleep(1.0)  # attached before the measured work starts
        return recorders

    async def stop_profilers(self, recorders: list[procs.Child]) -> None:
        for recorder in recorders:
            recorder.signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for recorder in recorders:
            await recorder.wait_exit(20)
            await recorder.stop()
        if recorders:
            log(f"profiles written to {self.s.profile}")

    # -- 1, 3, 5: API start, memory, management latency ------------------------------------

    async def api_start(self) -> None:
        for n in self.s.ns:
            for run in range(self.s.runs):
                kinds = ["floor", "container", "managed"]
                kinds = kinds[run % 3:] + kinds[:run % 3]  # no kind always first
                for kind in kinds:
                    log(f"API start N={n} run {run + 1}/{self.s.runs}: {kind}")
                    keys = self._api_keys(n, kind)
                    try:
                        if kind == "floor":
                            await self.floor_run(n)
                        elif kind == "managed":
                            await self.managed_run(n)
                        else:
                            await self.container_run(n)
                    except Exception as error:
                        self.failed(keys, error)
                    await procs.sleep(self.s.settle)

    def _api_keys(self, n: int, kind: str) -> list[str]:
        if kind == "managed":
            return [f"api_start.n{n}.managed", f"api_start.n{n}.managed.returned"]
        ours = ["calls", "container.returned", "container.router_seconds"]
        keys = [f"api_start.n{n}.{kind}", f"api_start.n{n}.{kind}.first", f"memory.idle.{kind}",
                *([f"api_start.n{n}.{key}" for key in ours] if kind == "container" else []),
                *[f"api_start.n{n}.{kind}.cpu_{who}" for who in ("process", "router", "client")]]
        if n in self.s.memory_ns:
            keys.append(f"memory.n{n}.{kind}.rss")
            keys.append(f"memory.n{n}.{kind}." + ("per_session" if kind == "floor"
                                                 else "per_component"))
        if kind == "container" and n == self.s.mgmt_n:
            keys += [k for k in self.figures if k.startswith("mgmt.")]
        return keys

    def cpu_meter(self, child: procs.Child) -> dict[str, tuple[int, float]]:
        """CPU seconds used so far by the process under test, the router and this client."""
        assert child.pid is not None and self.router is not None and self.router.pid is not None
        pids = {"process": child.pid, "router": self.router.pid, "client": os.getpid()}
        return {who: (pid, procs.cpu_seconds(pid)) for who, pid in pids.items()}

    def add_cpu(self, stem: str, before: dict[str, tuple[int, float]], n: int) -> None:
        for who, (pid, seconds) in before.items():
            self.add(f"{stem}.cpu_{who}", (procs.cpu_seconds(pid) - seconds) * 1000 / n)

    def _profile_pids(self, n: int, child: procs.Child) -> dict[str, int | None]:
        """Profile once per kind: the first run of the largest N."""
        if n != max(self.s.ns) or self._profiled.get(child.name.split()[0]):
            return {}
        self._profiled[child.name.split()[0]] = True
        return {"process": child.pid, "router": self.router.pid if self.router else None}

    async def floor_run(self, n: int) -> None:
        args = [sys.executable, FLOOR_SCRIPT, "--port", str(self.app_port), "--n", str(n),
                "--realm", configs.APP_REALM, "--serializer", "cbor"]
        child = procs.spawn(f"floor N={n}", args, cwd=str(self.work),
                            log_path=self.logs / "floor.log")
        try:
            await child.wait_line(lambda line: '"ready"' in line, 60)
            await procs.sleep(self.s.settle)
            idle = procs.rss(child.pid)  # type: ignore[arg-type]
            recorders = await self.profilers(f"api{n}-floor", self._profile_pids(n, child))
            cpu = self.cpu_meter(child)
            child.write_line("go")
            result = json.loads(await child.wait_line(lambda line: '"joined"' in line, 180))
            self.add_cpu(f"api_start.n{n}.floor", cpu, n)
            await self.stop_profilers(recorders)
            if result["joined"] != n:
                raise RuntimeError(f"floor: {result['joined']} of {n} sessions joined "
                                   f"({result['failed']} failed to connect)")
            await procs.sleep(self.s.settle)
            full = procs.rss(child.pid)  # type: ignore[arg-type]
            self.add(f"api_start.n{n}.floor", result["elapsed"])
            self.add(f"api_start.n{n}.floor.first", result["first"])
            self.add("memory.idle.floor", idle / MIB)
            if n in self.s.memory_ns:
                self.add(f"memory.n{n}.floor.rss", full / MIB)
                self.add(f"memory.n{n}.floor.per_session", (full - idle) / n / KIB)
        finally:
            child.write_line("quit")
            await child.wait_exit(15)
            await child.stop()

    async def container_run(self, n: int) -> None:
        child, prefix = await self.spawn_worker(self.worker_id(f"api{n}x"))
        try:
            await procs.sleep(self.s.settle)
            idle = procs.rss(child.pid)  # type: ignore[arg-type]
            self.add(f"api_start.n{n}.calls", await self.round_trips(prefix, n))
            await procs.sleep(self.s.settle)
            recorders = await self.profilers(f"api{n}-container", self._profile_pids(n, child))
            cpu = self.cpu_meter(child)
            results, elapsed, wall_started = await self.start_concurrently(prefix, n)
            self.add_cpu(f"api_start.n{n}.container", cpu, n)
            router_pid, router_before = cpu["router"]
            self.add(f"api_start.n{n}.container.router_seconds",
                     procs.cpu_seconds(router_pid) - router_before)
            await self.stop_profilers(recorders)
            joined = joined_after(results, wall_started, "starts")
            await procs.sleep(self.s.settle)
            full = procs.rss(child.pid)  # type: ignore[arg-type]
            self.add(f"api_start.n{n}.container", joined[-1])
            self.add(f"api_start.n{n}.container.first", joined[0])
            self.add(f"api_start.n{n}.container.returned", elapsed)
            self.add("memory.idle.container", idle / MIB)
            if n in self.s.memory_ns:
                self.add(f"memory.n{n}.container.rss", full / MIB)
                self.add(f"memory.n{n}.container.per_component", (full - idle) / n / KIB)
            if n == self.s.mgmt_n:
                await self.management_latency(prefix, [f"q{i:04d}" for i in range(n)])
        finally:
            await self.stop_worker(child, prefix)

    async def managed_run(self, n: int) -> None:
        """The managed floor (benchmarks/managed_floor.py) started the way the worker is."""
        prefix = f"crossbar.worker.{self.worker_id(f'managed{n}x')}"
        args = [sys.executable, MANAGED_FLOOR_SCRIPT, "--port", str(self.app_port),
                "--management-port", str(self.management_port),
                "--management-realm", configs.MANAGEMENT_REALM, "--app-realm", configs.APP_REALM,
                "--authid", configs.WORKER_AUTHID, "--prefix", prefix]
        child = procs.spawn(f"managed floor N={n}", args,
                            env={"BENCH_WORKER_TICKET": self.worker_ticket}, cwd=str(self.work),
                            log_path=self.logs / "managed-floor.log")
        try:
            await child.wait_line(lambda line: '"ready"' in line, 60)
            await procs.sleep(self.s.settle)
            results, elapsed, wall_started = await self.start_concurrently(prefix, n)
            joined = joined_after(results, wall_started, "managed floor starts")
            self.add(f"api_start.n{n}.managed", joined[-1])
            self.add(f"api_start.n{n}.managed.returned", elapsed)
        finally:
            await child.stop()

    async def start_concurrently(self, prefix: str, n: int) -> tuple[list[Any], float, float]:
        """``n`` concurrent ``start_component`` calls (class Quiet) to ``prefix``: their
        (ok, result) pairs, the seconds until the last was back, the wall-clock start."""
        assert self.client is not None
        config = configs.component("Quiet", self.app_port)
        wall_started = time.time()
        started = now()
        calls = [self.client.worker_call(prefix, "start_component", f"q{i:04d}", config)
                 for i in range(n)]
        results = await DeferredList(calls, consumeErrors=True).addTimeout(300, reactor)
        return results, now() - started, wall_started

    async def round_trips(self, prefix: str, n: int) -> float:
        """Seconds for ``n`` concurrent ``get_status`` calls: the management API's share of
        an API start (call, invocation, yield, result through the router), without sessions."""
        assert self.client is not None
        started = now()
        calls = [self.client.worker_call(prefix, "get_status") for _ in range(n)]
        results = await DeferredList(calls, consumeErrors=True).addTimeout(120, reactor)
        elapsed = now() - started
        if not all(ok for ok, _ in results):
            raise RuntimeError("a get_status call failed")
        return elapsed

    async def management_latency(self, prefix: str, ids: list[str]) -> None:
        calls = self.s.latency_calls
        plans: list[tuple[str, Callable[[int], Awaitable[Any]]]] = [
            ("get_components", lambda i: self.call(prefix, "get_components")),
            ("get_component", lambda i: self.call(prefix, "get_component", ids[i % len(ids)])),
            ("get_components_full", lambda i: self.call(prefix, "get_components", full=True)),
        ]
        for name, make in plans:
            for i in range(10):  # warm-up
                await make(i)
            latencies = []
            for i in range(calls):
                started = now()
                await make(i)
                latencies.append((now() - started) * 1000)
            self.add(f"mgmt.{name}.p50", report.percentile(latencies, 0.50))
            self.add(f"mgmt.{name}.p99", report.percentile(latencies, 0.99))
        rates = []
        assert self.client is not None
        for batch in range(3):
            started = now()
            concurrent = [
                self.client.worker_call(prefix, "get_component", ids[(batch + i) % len(ids)])
                for i in range(self.s.concurrency)
            ]
            results = await DeferredList(concurrent, consumeErrors=True).addTimeout(60, reactor)
            elapsed = now() - started
            if not all(ok for ok, _ in results):
                raise RuntimeError("a concurrent get_component call failed")
            rates.append(self.s.concurrency / elapsed)
        self.add("mgmt.throughput", sorted(rates)[len(rates) // 2])

    # -- 2, 3: node cold start and Crossbar.io's memory -------------------------------------

    def node_command(self, system: str, folder: Path) -> list[str]:
        if system == "container":
            return [sys.executable, "-m", "container", "run", str(folder / "config.json")]
        return [CROSSBAR, "start", "--cbdir", str(folder)]

    @staticmethod
    def container_worker_of(system: str) -> Callable[[psutil.Process], bool]:
        if system == "container":
            def ours(process: psutil.Process) -> bool:
                line = process.cmdline()
                return "worker" in line and "container1" in line

            return ours
        return procs.cmdline_contains("ContainerController")

    async def node_run(
        self, system: str, folder: Path, stamp_file: Path, expect: int, measure_rss: bool,
        timeout: float = 120,
    ) -> tuple[float, float, float | None]:
        """Launch a node, wait for ``expect`` join stamps; (first, all, worker RSS MiB)."""
        stamp_file.unlink(missing_ok=True)
        started = now()
        child = procs.spawn(f"{system} node", self.node_command(system, folder),
                            cwd=str(folder), log_path=self.logs / f"{folder.name}.{system}.log")
        try:
            def joined() -> list[float]:
                times = [t for event, _, t in read_stamps(stamp_file) if event == "join"]
                return times if len(times) >= expect else []

            times = await wait_until(joined, timeout, f"{expect} joins of {system}", child)
            first, last = min(times) - started, max(times) - started
            rss = None
            if measure_rss:
                await procs.sleep(self.s.settle)
                worker = procs.find_descendant(child.pid,  # type: ignore[arg-type]
                                               self.container_worker_of(system))
                if worker is None:
                    raise RuntimeError(f"{system}: no container worker process found")
                rss = worker.memory_info().rss / MIB
            return first, last, rss
        finally:
            child.descendants()
            await child.stop()

    def write_node(self, name: str, classname: str, count: int,
                   options: dict[str, Any] | None = None,
                   extra: Callable[[int], dict[str, Any]] | None = None) -> tuple[Path, Path]:
        folder = self.work / name
        folder.mkdir(exist_ok=True)
        stamp_file = folder / "stamps"
        port = configs.free_port()
        components = [
            configs.component(
                classname, port,
                {"stamp_file": str(stamp_file), "key": f"c{i:04d}", **(extra(i) if extra else {})},
                component_id=f"c{i:04d}",
            )
            for i in range(count)
        ]
        for component in components:
            component["transport"] = configs.websocket_transport(port)
        config = configs.node_config(port, components, options)
        configs.write_web_folder(folder)
        (folder / "config.json").write_text(json.dumps(config, indent=1))
        return folder, stamp_file

    def systems(self) -> list[str]:
        return ["container", "crossbar"] if self.s.crossbar else ["container"]

    async def cold_start(self) -> None:
        for k in self.s.ks:
            folder, stamp_file = self.write_node(f"cold-k{k}", "Stamp", k)
            if self.s.warmup and k == self.s.ks[0]:
                for system in self.systems():
                    log(f"cold start K={k}: warm-up run of {system} (not counted)")
                    try:
                        await self.node_run(system, folder, stamp_file, k, False)
                    except Exception as error:
                        log(f"warm-up of {system} failed: {error}")
            for run in range(self.s.runs):
                order = self.systems() if run % 2 == 0 else self.systems()[::-1]
                for system in order:
                    log(f"cold start K={k} run {run + 1}/{self.s.runs}: {system}")
                    keys = [f"cold.k{k}.{system}.first", f"cold.k{k}.{system}.all",
                            f"memory.node.k{k}.{system}"]
                    if system == "crossbar" and k == 1:
                        keys.append("memory.idle.crossbar")
                    if system == "crossbar" and k in self.s.memory_ns:
                        keys.append(f"memory.n{k}.crossbar.rss")
                    try:
                        first, last, rss = await self.node_run(system, folder, stamp_file, k,
                                                               True)
                    except Exception as error:
                        self.failed(keys, error)
                        continue
                    self.add(f"cold.k{k}.{system}.first", first)
                    self.add(f"cold.k{k}.{system}.all", last)
                    assert rss is not None
                    self.add(f"memory.node.k{k}.{system}", rss)
                    if system == "crossbar" and k == 1:
                        self.add("memory.idle.crossbar", rss)
                    if system == "crossbar" and k in self.s.memory_ns:
                        self.add(f"memory.n{k}.crossbar.rss", rss)

    async def crossbar_memory(self) -> None:
        """Crossbar.io's container worker with N components, for N not covered by cold start."""
        if not self.s.crossbar:
            return
        for n in self.s.memory_ns:
            if n in self.s.ks:
                continue
            if self.s.quick:
                self.figures[f"memory.n{n}.crossbar.rss"].error = "skipped in --quick"
                continue
            folder, stamp_file = self.write_node(f"memory-n{n}", "Stamp", n)
            for run in range(self.s.runs):
                log(f"Crossbar.io memory N={n} run {run + 1}/{self.s.runs}")
                try:
                    _, _, rss = await self.node_run("crossbar", folder, stamp_file, n, True,
                                                    timeout=180)
                except Exception as error:
                    self.failed([f"memory.n{n}.crossbar.rss"], error)
                    continue
                assert rss is not None
                self.add(f"memory.n{n}.crossbar.rss", rss)

    def derive_crossbar_growth(self) -> None:
        idle = self.figures["memory.idle.crossbar"].median
        for n in self.s.memory_ns:
            total = self.figures[f"memory.n{n}.crossbar.rss"]
            per = self.figures[f"memory.n{n}.crossbar.per_component"]
            if idle is None or not total.samples or n <= 1:
                per.error = total.error or "needs the idle and N figures of Crossbar.io"
                continue
            per.samples = [(rss - idle) * KIB / (n - 1) for rss in total.samples]

    # -- 4: restart ------------------------------------------------------------------------

    def crash_once_extra(self, i: int) -> dict[str, Any]:
        return {"crash_after": 0.5 + 0.4 * i}

    @staticmethod
    def first_restarts(stamps: list[tuple[str, str, float]]) -> dict[str, float]:
        """key -> ms from its crash to the next join of the same key."""
        crashes: dict[str, float] = {}
        latencies: dict[str, float] = {}
        for event, key, t in stamps:
            if event == "crash" and key not in crashes:
                crashes[key] = t
            elif event == "join" and key in crashes and key not in latencies:
                latencies[key] = (t - crashes[key]) * 1000
        return latencies

    async def restart_container(self) -> None:
        keys_first = ["restart.first.container"]
        keys_loop = ["restart.loop.container.cpu", "restart.loop.container.router_cpu",
                     "restart.loop.container.rate", "restart.loop.container.kept"]
        try:
            child, prefix = await self.spawn_worker(self.worker_id("restart"),
                                                    {"restart": "restart-always"})
        except Exception as error:
            self.failed(keys_first + keys_loop, error)
            return
        try:
            log("restart: first restart after a crash (container)")
            try:
                await self.first_restart_container(prefix)
            except Exception as error:
                self.failed(keys_first, error)
            for run in range(self.s.runs):
                log(f"restart: crash loop run {run + 1}/{self.s.runs} (container)")
                try:
                    await self.crash_loop_container(child, prefix, run)
                except Exception as error:
                    self.failed(keys_loop, error)
        finally:
            await self.stop_worker(child, prefix)

    async def first_restart_container(self, prefix: str) -> None:
        stamp_file = self.work / "restart-container.stamps"
        count = self.s.restart_samples
        ids = [f"c{i:04d}" for i in range(count)]
        starts = [
            Deferred.fromCoroutine(self.call(prefix, "start_component", cid, configs.component(
                "CrashOnce", self.app_port,
                {"stamp_file": str(stamp_file), "key": cid, **self.crash_once_extra(i)})))
            for i, cid in enumerate(ids)
        ]
        await DeferredList(starts, fireOnOneErrback=True, consumeErrors=True)
        latencies = await wait_until(
            lambda: (lambda found: found if len(found) >= count else None)(
                self.first_restarts(read_stamps(stamp_file))),
            10 + count, f"{count} first restarts")
        for cid in ids:
            self.add("restart.first.container", latencies[cid])
        for cid in ids:
            await self.call(prefix, "stop_component", cid)

    async def crash_loop_container(self, child: procs.Child, prefix: str, run: int) -> None:
        stamp_file = self.work / f"loop-container-{run}.stamps"
        cid = f"loop{run}"
        assert child.pid is not None and self.router is not None and self.router.pid is not None
        recorders = await self.profilers("crashloop-container", {"process": child.pid}) if (
            run == 0) else []
        await self.call(prefix, "start_component", cid, configs.component(
            "CrashLoop", self.app_port, {"stamp_file": str(stamp_file), "key": cid}))
        cpu, router_cpu, rate = await self.cpu_window(child.pid, self.router.pid, stamp_file)
        await self.stop_profilers(recorders)
        record = await self.call(prefix, "get_component", cid)
        kept = record["state"] not in ("failed", "stopped")
        await self.call(prefix, "stop_component", cid)
        self.add("restart.loop.container.cpu", cpu)
        self.add("restart.loop.container.router_cpu", router_cpu)
        self.add("restart.loop.container.rate", rate)
        self.add("restart.loop.container.kept", 1.0 if kept else 0.0)

    async def cpu_window(self, pid: int, router_pid: int, stamp_file: Path
                         ) -> tuple[float, float, float]:
        """(% of one core of ``pid``, of the router, joins per second) over one window."""
        cpu0, router0, t0 = procs.cpu_seconds(pid), procs.cpu_seconds(router_pid), now()
        await procs.sleep(self.s.loop_window)
        cpu1, router1, t1 = procs.cpu_seconds(pid), procs.cpu_seconds(router_pid), now()
        joins = sum(1 for event, _, t in read_stamps(stamp_file) if event == "join" and
                    t0 <= t <= t1)
        span = t1 - t0
        return (cpu1 - cpu0) / span * 100, (router1 - router0) / span * 100, joins / span

    async def restart_crossbar(self) -> None:
        if not self.s.crossbar:
            return
        count = self.s.restart_samples
        log("restart: first restart after a crash (Crossbar.io)")
        folder, stamp_file = self.write_node("restart-crossbar", "CrashOnce", count,
                                             {"restart": "restart-always"},
                                             self.crash_once_extra)
        try:
            await self.crossbar_first_restart(folder, stamp_file, count)
        except Exception as error:
            self.failed(["restart.first.crossbar"], error)
        log("restart: crash loop (Crossbar.io)")
        folder, stamp_file = self.write_node("loop-crossbar", "CrashLoop", 1,
                                             {"restart": "restart-always"})
        try:
            await self.crossbar_crash_loop(folder, stamp_file)
        except Exception as error:
            self.failed(["restart.loop.crossbar.cpu", "restart.loop.crossbar.router_cpu",
                         "restart.loop.crossbar.rate"], error)

    async def crossbar_first_restart(self, folder: Path, stamp_file: Path, count: int) -> None:
        stamp_file.unlink(missing_ok=True)
        child = procs.spawn("crossbar node", self.node_command("crossbar", folder),
                            cwd=str(folder), log_path=self.logs / "restart-crossbar.log")
        try:
            latencies = await wait_until(
                lambda: (lambda found: found if len(found) >= count else None)(
                    self.first_restarts(read_stamps(stamp_file))),
                90 + count, f"{count} first restarts of Crossbar.io", child)
            for value in latencies.values():
                self.add("restart.first.crossbar", value)
        finally:
            await child.stop()

    async def crossbar_crash_loop(self, folder: Path, stamp_file: Path) -> None:
        stamp_file.unlink(missing_ok=True)
        child = procs.spawn("crossbar node", self.node_command("crossbar", folder),
                            cwd=str(folder), log_path=self.logs / "loop-crossbar.log")
        try:
            await wait_until(lambda: read_stamps(stamp_file), 90, "Crossbar.io's first join",
                             child)
            assert child.pid is not None
            worker = procs.find_descendant(child.pid, procs.cmdline_contains(
                "ContainerController"))
            router = procs.find_descendant(child.pid, procs.cmdline_contains(
                "RouterController"))
            if worker is None or router is None:
                raise RuntimeError("Crossbar.io's container or router worker not found")
            for run in range(self.s.runs):
                cpu, router_cpu, rate = await self.cpu_window(worker.pid, router.pid,
                                                              stamp_file)
                self.add("restart.loop.crossbar.cpu", cpu)
                self.add("restart.loop.crossbar.router_cpu", router_cpu)
                self.add("restart.loop.crossbar.rate", rate)
                log(f"restart: Crossbar.io crash loop window {run + 1}/{self.s.runs}: "
                    f"{cpu:.0f} % CPU, {rate:.0f} restarts/s")
        finally:
            await child.stop()

    # -- the whole run -----------------------------------------------------------------------

    async def run(self) -> None:
        if not self.s.crossbar:
            for key, figure in self.figures.items():
                if "crossbar" in key:
                    figure.error = "skipped (--no-crossbar)"
        sections = [
            (name, section) for key, name, section in (
                ("api", "API start, memory, management API", self.api_start),
                ("restart", "restart (container)", self.restart_container),
            ) if key in self.s.only
        ]
        try:
            await self.start_router()
            for name, section in sections:
                log(f"== {name}")
                await self._guard(name, section)
        finally:
            await self.stop_router()
        later = [
            (name, section) for key, name, section in (
                ("restart", "restart (Crossbar.io)", self.restart_crossbar),
                ("memory", "Crossbar.io memory", self.crossbar_memory),
                ("cold", "node cold start", self.cold_start),
            ) if key in self.s.only
        ]
        for name, section in later:
            log(f"== {name}")
            await self._guard(name, section)
        self.derive_crossbar_growth()

    async def _guard(self, name: str, section: Callable[[], Awaitable[None]]) -> None:
        try:
            await section()
        except Exception as error:
            log(f"section {name} failed: {type(error).__name__}: {error}")
            traceback.print_exception(error, file=sys.stderr)

    def finish(self, started: float) -> None:
        info = report.machine()
        info["loadavg_end"] = list(os.getloadavg())
        info["duration_s"] = round(time.monotonic() - started, 1)
        settings = self.s.as_json()
        settings["scratch"] = str(self.work)
        report.write_json(self.s.out, settings, info, self.figures, self.rows, self.targets)
        report.print_flush(f"wamp-container benchmarks ({self.s.runs} run(s) each; "
                           "median [min..max])")
        report.print_flush(
            f"machine: {info['nproc']} CPU ({info['cpu_model']}), {info['memory_gib']} GiB, "
            f"Python {info['python']}, Twisted {info['twisted']}, autobahn {info['autobahn']}, "
            f"crossbar {info['crossbar']}; load {info['loadavg_start'][0]:.2f} -> "
            f"{info['loadavg_end'][0]:.2f}; {info['duration_s']} s")
        report.print_flush(report.table(self.figures, self.rows, self.targets))
        report.print_flush(f"\nJSON: {self.s.out}")


def main(argv: list[str] | None = None) -> int:
    settings = parse_arguments(sys.argv[1:] if argv is None else argv)
    bench = Bench(settings)
    started = time.monotonic()
    outcome: dict[str, Any] = {"code": 1}
    load_before = report.machine()["loadavg_start"]
    log(f"scratch directory {bench.work}; load average {load_before[0]:.2f}")

    async def body() -> None:
        try:
            await bench.run()
            outcome["code"] = 0
        finally:
            await _stop_children()
            reactor.stop()

    def begin() -> None:
        Deferred.fromCoroutine(body()).addErrback(
            lambda failure: log(f"benchmark failed: {failure.getTraceback()}"))

    reactor.callWhenRunning(begin)
    try:
        reactor.run()
    finally:
        procs.kill_all_sync()
    bench.finish(started)
    if not settings.keep:
        shutil.rmtree(bench.work, ignore_errors=True)
    return int(outcome["code"])


async def _stop_children() -> None:
    for child in list(procs.CHILDREN.values()):
        await child.stop()


if __name__ == "__main__":
    sys.exit(main())
