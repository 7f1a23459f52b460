"""Well-behaved test components."""

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.types import RegisterOptions


class Greeter(ApplicationSession):
    """Registers ``<prefix>.greet`` and ``<prefix>.extra``; ``prefix`` comes from ``extra``."""

    async def onJoin(self, details):
        prefix = (self.config.extra or {}).get("prefix", "com.example")
        await self.register(lambda name: f"hello {name}", f"{prefix}.greet")
        await self.register(lambda: self.config.extra, f"{prefix}.extra")
        await self.register(
            lambda: sorted(self.config.shared or {}), f"{prefix}.shared_keys",
            options=RegisterOptions(),
        )


class Caller(ApplicationSession):
    """Calls ``<target>.greet`` once joined and publishes the answer to ``<target>.greeted``."""

    async def onJoin(self, details):
        target = self.config.extra["target"]
        answer = await self.call(f"{target}.greet", "caller")
        self.publish(f"{target}.greeted", answer)


class Quiet(ApplicationSession):
    """Joins and does nothing: the cheapest component."""


class LeavesOnRequest(ApplicationSession):
    """Registers ``<prefix>.leave(reason)``: leaves its realm with that reason when called."""

    async def onJoin(self, details):
        prefix = self.config.extra["prefix"]
        await self.register(self._leave_later, f"{prefix}.leave")
        await self.register(self._drop, f"{prefix}.drop")

    def _leave_later(self, reason="wamp.close.normal"):
        from twisted.internet import reactor

        reactor.callLater(0, self.leave, reason)
        return "leaving"

    def _drop(self):
        from twisted.internet import reactor

        reactor.callLater(0, self._transport.transport.abortConnection)
        return "dropping"


class CallsThenLeaves(ApplicationSession):
    """A client written as autobahn's RPC frontends are: calls in onJoin, leaves, and stops
    the reactor once disconnected (``target`` in ``extra`` names the greeter's prefix)."""

    async def onJoin(self, details):
        answer = await self.call(f"{self.config.extra['target']}.greet", "frontend")
        self.publish(f"{self.config.extra['target']}.answered", answer)
        self.leave()

    def onDisconnect(self):
        from twisted.internet import reactor

        reactor.stop()


class RaisesOnPurpose(ApplicationSession):
    """``<prefix>.reserved`` answers with a WAMP error, as autobahn's rpc/errors example does."""

    async def onJoin(self, details):
        from autobahn.wamp.exception import ApplicationError

        def reserved():
            raise ApplicationError("com.myapp.error.reserved", "this name is reserved")

        await self.register(reserved, f"{self.config.extra['prefix']}.reserved")
