"""A component that ends its whole worker process on request, as a crashing extension would:
``com.example.exiter.exit(code)`` calls ``os._exit(code)`` (no cleanup, no announcement)."""

import os

from autobahn.twisted.wamp import ApplicationSession


class Exiter(ApplicationSession):
    async def onJoin(self, details):
        await self.register(self.exit_now, "com.example.exiter.exit")

    def exit_now(self, code):
        os._exit(int(code))
