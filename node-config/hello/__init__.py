"""The hello node's two components, talking to each other over the router (realm1).

``Greeter`` registers ``com.example.hello.greet`` and publishes a tick every second;
``Listener`` subscribes to the ticks and, for each one, calls ``greet`` and logs the answer.
Run them with ``container run node-config/hello.json``.
"""

from autobahn.twisted.util import sleep
from autobahn.twisted.wamp import ApplicationSession

GREET = "com.example.hello.greet"
TICK = "com.example.hello.tick"


class Greeter(ApplicationSession):
    """Serves ``greet(name)`` and publishes ``tick(n)`` every ``extra.interval`` seconds."""

    async def onJoin(self, details):
        self.greeted = 0
        await self.register(self.greet, GREET)
        self.log.info("greeter ready: {uri} registered", uri=GREET)
        interval = (self.config.extra or {}).get("interval", 1.0)
        self._ticking = True
        self.config.extra = self.config.extra or {}
        # keep ticking in the background: onJoin must return for the component to be ready
        from twisted.internet.defer import ensureDeferred

        ensureDeferred(self._tick(interval))

    def greet(self, name):
        self.greeted += 1
        return f"hello {name}, you are caller number {self.greeted}"

    async def _tick(self, interval):
        counter = 0
        while self._ticking and self.is_attached():
            counter += 1
            self.publish(TICK, counter)
            await sleep(interval)

    def onLeave(self, details):
        self._ticking = False
        super().onLeave(details)


class Listener(ApplicationSession):
    """Subscribes to the greeter's ticks; on each one calls ``greet`` and logs the answer."""

    async def onJoin(self, details):
        await self.subscribe(self.on_tick, TICK)
        self.log.info("listener ready: subscribed to {uri}", uri=TICK)

    async def on_tick(self, counter):
        answer = await self.call(GREET, f"listener (tick {counter})")
        self.log.info("tick {counter}: greeter says {answer!r}", counter=counter, answer=answer)
