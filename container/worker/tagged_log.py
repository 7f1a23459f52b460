"""The logger of a hosted component: every line starts with ``[component ID]``.

A worker hosts many components; a line that does not say whose it is cannot be acted on.
"""

from __future__ import annotations

from typing import Any

import txaio

# one txaio logger for every component (a txaio logger is a dozen bound partials): the
# component's id is a field of each line, not a logger of its own
_COMPONENT_LOG = txaio.make_logger()


class TaggedLogger:
    """A txaio logger that starts every line with ``[component ID]``."""

    __slots__ = ("_log", "_tag")

    def __init__(self, tag: str) -> None:
        self._log = _COMPONENT_LOG
        self._tag = tag

    def _emit(self, level: str, text: str, **fields: Any) -> None:
        getattr(self._log, level)("[component {component_id}] " + text,
                                  component_id=self._tag, **fields)

    def critical(self, text: str, **fields: Any) -> None:
        self._emit("critical", text, **fields)

    def error(self, text: str, **fields: Any) -> None:
        self._emit("error", text, **fields)

    def warn(self, text: str, **fields: Any) -> None:
        self._emit("warn", text, **fields)

    def info(self, text: str, **fields: Any) -> None:
        self._emit("info", text, **fields)

    def debug(self, text: str, **fields: Any) -> None:
        self._emit("debug", text, **fields)

    def failure(self, text: str, failure: Any = None, **fields: Any) -> None:
        self._log.failure("[component {component_id}] " + text, failure=failure,
                          component_id=self._tag, **fields)
