"""Hosted sessions of one class share one txaio logger; a session's own logger is kept."""

from __future__ import annotations

import txaio
from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.types import ComponentConfig

from container.worker.session import share_class_logger, supervised_class


class Plain(ApplicationSession):
    pass


class OwnLogger(ApplicationSession):
    def __init__(self, config: ComponentConfig) -> None:
        super().__init__(config)
        self.log = txaio.make_logger()
        self.log._logger.namespace = f"own.{config.extra['name']}"


class Chatty(ApplicationSession):
    def __init__(self, config: ComponentConfig) -> None:
        super().__init__(config)
        self.log.set_log_level("debug")


def _built(session_class: type, name: str = "x") -> ApplicationSession:
    session = supervised_class(session_class)(ComponentConfig(realm="r", extra={"name": name}))
    share_class_logger(session)
    return session


def test_sessions_of_one_class_share_a_logger_named_after_the_class() -> None:
    first, second = _built(Plain), _built(Plain)
    assert first.log is second.log
    assert first.log._logger.namespace == f"{__name__}.Plain"


def test_a_logger_of_its_own_name_or_level_is_kept() -> None:
    a, b = _built(OwnLogger, "a"), _built(OwnLogger, "b")
    assert a.log is not b.log
    assert a.log._logger.namespace == "own.a"
    assert _built(Chatty).log is not _built(Chatty).log
