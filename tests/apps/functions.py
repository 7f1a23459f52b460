"""A ``function`` type component: plain callbacks instead of a session class."""

events = []


async def on_join(session, details):
    prefix = session.config.extra["prefix"]
    await session.register(lambda: "pong", f"{prefix}.ping")
    events.append(("join", details.realm))


def on_leave(session, details):
    events.append(("leave", details.reason))


def failing_join(session, details):
    raise KeyError("missing setting")
