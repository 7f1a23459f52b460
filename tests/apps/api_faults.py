"""Components whose failures must be described in a caller's words, not in Python's."""

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError


class JoinRaisesApplicationError(ApplicationSession):
    async def onJoin(self, details):
        raise ApplicationError("com.example.database_unavailable", "the database is down")


def make_session(config):
    """A plain function: not something the container hosts."""
    return ApplicationSession(config)
