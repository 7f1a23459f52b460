"""The hello node's two components, talking to each other over the router (realm1).

``Greeter`` registers ``com.example.hello.greet`` and publishes a tick every second;
``Listener`` subscribes to the ticks and, for each one, calls ``greet`` and logs the answer.
Run them with ``container run node-config/hello.json``.
"""

from autobahn.twisted.wamp import ApplicationSession
from twisted.internet.task import LoopingCall

GREET = "com.example.hello.greet"
TICK = "com.example.hello.tick"


class Greeter(ApplicationSession):
    """Serves ``greet(name)`` and publishes ``tick(n)`` every ``extra.interval`` seconds."""

    async def onJoin(self, details):
        self._greeted = 0
        self._ticks = 0
        await self.register(self.greet, GREET)
        self.log.info("greeter ready: {uri} registered", uri=GREET)
        # onJoin must return for the component to count as started: tick in the background
        self._loop = LoopingCall(self._tick)
        self._loop.start((self.config.extra or {}).get("interval", 1.0))

    def greet(self, name):
        self._greeted += 1
        return f"hello {name}, you are caller number {self._greeted}"

    def _tick(self):
        self._ticks += 1
        self.publish(TICK, self._ticks)

    def onLeave(self, details):
        loop = getattr(self, "_loop", None)
        if loop is not None and loop.running:
            loop.stop()
        super().onLeave(details)


class Listener(ApplicationSession):
    """Subscribes to the greeter's ticks; on each one calls ``greet`` and logs the answer."""

    async def onJoin(self, details):
        await self.subscribe(self.on_tick, TICK)
        self.log.info("listener ready: subscribed to {uri}", uri=TICK)

    async def on_tick(self, counter):
        answer = await self.call(GREET, f"listener (tick {counter})")
        self.log.info("tick {counter}: greeter says {answer!r}", counter=counter, answer=answer)
