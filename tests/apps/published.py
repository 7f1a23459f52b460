"""Components written the way autobahn's published Twisted examples are, unchanged in shape.

Each takes its URIs from ``extra["prefix"]`` (the examples hard-code theirs) so that tests do
not collide; nothing else is adapted to the container.
"""

from autobahn.twisted.util import sleep
from autobahn.twisted.wamp import ApplicationSession, Session
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks


class Publisher(ApplicationSession):
    """examples/twisted/wamp/pubsub/basic/backend.py: publishes for ever inside onJoin."""

    @inlineCallbacks
    def onJoin(self, details):
        prefix = self.config.extra["prefix"]
        counter = 0
        while True:
            self.publish(f"{prefix}.topic1", counter)
            counter += 1
            yield sleep(self.config.extra.get("interval", 0.02))


class TimeService(ApplicationSession):
    """examples/twisted/wamp/rpc/timeservice/backend.py, with a heartbeat loop after the
    registration (the shape of many examples): it says it is ready once registered."""

    async def onJoin(self, details):
        from container.context import ready

        prefix = self.config.extra["prefix"]
        await self.register(lambda: "2026-01-01T00:00:00Z", f"{prefix}.now")
        ready(self)
        while True:
            self.publish(f"{prefix}.heartbeat")
            await sleep(0.05)


class LoopThenCrash(ApplicationSession):
    """Runs inside onJoin, then raises: a crash of a running component."""

    async def onJoin(self, details):
        prefix = self.config.extra["prefix"]
        crash = Deferred()
        await self.register(
            lambda: reactor.callLater(0, crash.errback, RuntimeError("sensor unplugged")) and "ok",
            f"{prefix}.crash")
        await crash


class SlowRegistrar(ApplicationSession):
    """Registers its procedure, then takes very long to finish onJoin."""

    async def onJoin(self, details):
        prefix = self.config.extra["prefix"]
        await self.register(lambda: details.session, f"{prefix}.whoami")
        self.publish(f"{prefix}.registered", details.session)
        await Deferred()  # never fires


class Frontend(ApplicationSession):
    """examples/twisted/wamp/pubsub/basic/frontend.py: leaves after some events, and its
    onDisconnect stops the reactor, as a stand-alone script's does."""

    async def onJoin(self, details):
        self.received = 0
        await self.subscribe(self.on_event, f"{self.config.extra['prefix']}.topic1")

    def on_event(self, i):
        self.received += 1
        if self.received > self.config.extra["max_events"]:
            self.leave()

    def onDisconnect(self):
        reactor.stop()


class StopsTheReactor(ApplicationSession):
    """Registers ``<prefix>.quit``: calls reactor.stop() right in the handler; and
    ``<prefix>.quit_later``: ``reactor.callLater(0, reactor.stop)``."""

    async def onJoin(self, details):
        prefix = self.config.extra["prefix"]
        await self.register(self.quit, f"{prefix}.quit")
        await self.register(self.quit_later, f"{prefix}.quit_later")
        await self.register(lambda: "pong", f"{prefix}.ping")

    def quit(self):
        reactor.stop()
        return "stopping"

    def quit_later(self):
        reactor.callLater(0, reactor.stop)
        return "stopping"

    def onDisconnect(self):
        reactor.stop()


class Exits(ApplicationSession):
    """Registers ``<prefix>.exit``: raises SystemExit in the handler, as a script would."""

    async def onJoin(self, details):
        await self.register(self.exit, f"{self.config.extra['prefix']}.exit")

    def exit(self):
        raise SystemExit(0)


class ExitsInOnJoin(ApplicationSession):
    """Works inside onJoin, then ``sys.exit()``, as a script's main loop would end."""

    async def onJoin(self, details):
        import sys

        done = Deferred()
        await self.register(lambda: done.callback(None) or "exiting",
                            f"{self.config.extra['prefix']}.finish")
        await done
        sys.exit()


class Greeter(Session):
    """The newer ``autobahn.twisted.wamp.Session`` API (snake_case hooks)."""

    async def on_join(self, details):
        prefix = self.config.extra["prefix"]
        await self.register(lambda name: f"hello {name}", f"{prefix}.greet")

    def on_leave(self, details):
        self.disconnect()


class Ticker(Session):
    """A ``Session`` that lives inside ``on_join``."""

    async def on_join(self, details):
        prefix = self.config.extra["prefix"]
        await self.register(lambda: "tick", f"{prefix}.tick")
        while True:
            self.publish(f"{prefix}.ticks")
            await sleep(0.05)
