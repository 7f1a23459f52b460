"""Components of the feature corpus, run inside the router (a router worker's ``components``).

Each one records what it was asked in memory and answers ``<its uri>.calls`` with the record,
so a test can prove that Crossbar.io consulted it.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError

#: The tickets the dynamic authenticator knows, and the role each one gets.
TICKETS = {"carol": ("carol-ticket", "user"), "dave": ("dave-ticket", "guest")}


class Backend(ApplicationSession):
    """The application: procedures for the REST caller, the rlink and the authorizer tests."""

    async def onJoin(self, details: Any) -> None:
        await self.register(lambda a, b: a + b, "com.example.add2")
        await self.register(lambda text: text, "com.example.open.echo")
        await self.register(lambda text: text, "com.example.closed.echo")
        await self.register(lambda: "data", "com.example.data.get")


class Authenticator(ApplicationSession):
    """A dynamic WAMP-Ticket authenticator: ``com.example.authenticate(realm, authid, details)``."""

    async def onJoin(self, details: Any) -> None:
        self.calls: list[dict[str, Any]] = []
        await self.register(self.authenticate, "com.example.authenticate")
        await self.register(lambda: self.calls, "com.example.authenticate.calls")

    def authenticate(self, realm: str, authid: str, details: dict[str, Any]) -> dict[str, Any]:
        self.calls.append({"realm": realm, "authid": authid,
                           "authmethod": details.get("authmethod")})
        ticket, role = TICKETS.get(authid, (None, None))
        if ticket is None or details.get("ticket") != ticket:
            raise ApplicationError("com.example.invalid_ticket", f"no valid ticket for {authid}")
        return {"role": role, "extra": {"checked_by": "com.example.authenticate"}}


class Authorizer(ApplicationSession):
    """A dynamic authorizer: ``com.example.authorize(session, uri, action, options)`` allows
    anything under ``com.example.open.`` and nothing else."""

    async def onJoin(self, details: Any) -> None:
        self.calls: list[dict[str, Any]] = []
        await self.register(self.authorize, "com.example.authorize")
        await self.register(lambda: self.calls, "com.example.authorize.calls")

    def authorize(self, session: dict[str, Any], uri: str, action: str,
                  options: dict[str, Any]) -> dict[str, Any]:
        self.calls.append({"authid": session.get("authid"), "uri": uri, "action": action})
        return {"allow": uri.startswith("com.example.open."), "cache": False}


class Keeper(ApplicationSession):
    """A container component that must keep running: ``com.example.keeper.ping``."""

    async def onJoin(self, details: Any) -> None:
        await self.register(lambda: "pong", "com.example.keeper.ping")
