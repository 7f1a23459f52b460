"""autobahn's newer API: an ``autobahn.twisted.component.Component`` object with decorators,
as in examples/twisted/wamp/component/ (its transports and realm are the container's)."""

from autobahn.twisted.component import Component
from autobahn.twisted.util import sleep
from autobahn.wamp.types import RegisterOptions

from container.context import ready

PREFIX = "com.test.component_object"
events = []

component = Component(
    transports="ws://127.0.0.1:8080/ws",  # ignored: the container connects
    realm="ignored-realm",  # ignored: the configuration's realm is joined
    extra={"source": "component"},
)


@component.register(f"{PREFIX}.add2", options=RegisterOptions(details_arg="details"))
def add2(a, b, details=None):
    return a + b


@component.subscribe(f"{PREFIX}.hello")
def hello(message):
    events.append(("hello", message))


@component.on_connect
def connected(session, transport):
    events.append(("connect", session.config.realm))


@component.on_join
async def joined(session, details):
    events.append(("join", details.realm, session.config.extra))
    await session.register(lambda: session.config.extra, f"{PREFIX}.extra")
    ready(session)  # the API exists: start_component may return (a no-op outside a container)
    while True:  # lives here, like the examples' publishers
        session.publish(f"{PREFIX}.heartbeat")
        await sleep(0.05)


@component.on_ready
def is_ready(session):
    events.append(("ready",))


@component.on_leave
def left(session, details):
    events.append(("leave", details.reason))


@component.on_disconnect
def disconnected(session, was_clean):
    events.append(("disconnect", was_clean))


async def _main(reactor, session):
    """``main``: registers, waits to be told to finish, returns (then the session leaves)."""
    from twisted.internet.defer import Deferred

    finished = Deferred()
    await session.register(lambda: finished.callback(None) or "finishing",
                           f"{PREFIX}.main.finish")
    events.append(("main", session.config.realm))
    await finished


with_main = Component(main=_main, transports="ws://127.0.0.1:8080/ws")

failing = Component(transports="ws://127.0.0.1:8080/ws")


@failing.on_join
def refuses(session, details):
    raise RuntimeError("no database")
