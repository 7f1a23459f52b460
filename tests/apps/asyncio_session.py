"""An asyncio session (examples/asyncio): the Twisted worker cannot import it."""

from autobahn.asyncio.wamp import ApplicationSession


class Hello(ApplicationSession):
    pass
