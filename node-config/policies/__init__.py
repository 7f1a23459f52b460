"""Components for the policies node (``container run node-config/policies.json``).

``Crashy`` runs for a random while and then crashes (it leaves its realm with an error
reason, which the container counts as a failure); ``Ticker`` publishes a tick every second;
``Watcher`` follows the ticks. See policies.json for what the container does about the
crashes: restarts with growing delays, gives up past the restart limit, then shuts the
worker down, while the other worker keeps running.
"""

import random

from autobahn.twisted.wamp import ApplicationSession
from twisted.internet.task import LoopingCall

TICK = "com.example.policies.tick"


class Crashy(ApplicationSession):
    """Crashes ``extra.min_uptime`` to ``extra.max_uptime`` seconds after joining."""

    def onJoin(self, details):
        extra = self.config.extra or {}
        lifetime = random.uniform(extra.get("min_uptime", 1.0), extra.get("max_uptime", 4.0))
        self.log.info("up; will crash in {lifetime:.1f} s", lifetime=lifetime)
        from twisted.internet import reactor

        self._crash = reactor.callLater(lifetime, self._crash_now)

    def _crash_now(self):
        self.log.warn("crashing now (simulated)")
        self.leave("com.example.error.simulated_crash", "a simulated crash")

    def onLeave(self, details):
        crash = getattr(self, "_crash", None)
        if crash is not None and crash.active():
            crash.cancel()
        super().onLeave(details)


class Ticker(ApplicationSession):
    """Publishes ``com.example.policies.tick`` with a counter every second."""

    def onJoin(self, details):
        self._count = 0
        self._loop = LoopingCall(self._tick)
        self._loop.start(1.0)

    def _tick(self):
        self._count += 1
        self.publish(TICK, self._count)

    def onLeave(self, details):
        loop = getattr(self, "_loop", None)
        if loop is not None and loop.running:
            loop.stop()
        super().onLeave(details)


class Watcher(ApplicationSession):
    """Logs every fifth tick, to show that the steady worker keeps working."""

    async def onJoin(self, details):
        await self.subscribe(self._on_tick, TICK)

    def _on_tick(self, count):
        if count % 5 == 0:
            self.log.info("still here: tick {count}", count=count)
