"""A component whose reactor.stop() is made from a plain timer: no component context, no
session on the stack, only this module's code.

Only workers may import this module: the guard traces the call by this module's name, which
it never does for modules loaded before the first worker started (a test that imported it
at its top would make the call stop the test's reactor).
"""

from autobahn.twisted.wamp import ApplicationSession
from twisted.internet import reactor


def _stop_now():
    reactor.stop()


class StopsFromATimer(ApplicationSession):
    async def onJoin(self, details):
        prefix = self.config.extra["prefix"]
        await self.register(lambda: "pong", f"{prefix}.ping")
        await self.register(self.quit, f"{prefix}.quit")

    def quit(self):
        # a Twisted timer runs its function outside the component's context
        reactor.callLater(0, _stop_now)
        return "stopping"
