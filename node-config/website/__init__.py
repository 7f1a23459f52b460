"""The website node's component: a clock behind a web page and an HTTP bridge.

``Clock`` registers ``com.example.clock.now`` and publishes ``com.example.clock.tick`` every
second. The node's web transport serves the static page in ``static/`` at ``/``, WAMP over
WebSocket at ``/ws`` (where this component connects), Crossbar.io's HTTP caller bridge at
``/call`` and the node info page at ``/info``::

    container run node-config/website.json
    curl http://127.0.0.1:8090/
    curl -H 'Content-Type: application/json' -d '{"procedure": "com.example.clock.now"}' \\
        http://127.0.0.1:8090/call
"""

from datetime import UTC, datetime

from autobahn.twisted.wamp import ApplicationSession
from twisted.internet.task import LoopingCall

NOW = "com.example.clock.now"
TICK = "com.example.clock.tick"


class Clock(ApplicationSession):
    """Serves ``now()`` (an ISO 8601 time) and publishes it every second."""

    async def onJoin(self, details):
        await self.register(self.now, NOW)
        self.log.info("clock ready: {uri} registered", uri=NOW)
        self._loop = LoopingCall(lambda: self.publish(TICK, self.now()))
        self._loop.start(1.0)

    def now(self):
        return datetime.now(UTC).isoformat(timespec="seconds")

    def onLeave(self, details):
        loop = getattr(self, "_loop", None)
        if loop is not None and loop.running:
            loop.stop()
        super().onLeave(details)
