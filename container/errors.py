"""The container's exception hierarchy; every class carries the WAMP error URI it maps to.

The management API turns a :class:`ContainerError` into an ``ApplicationError`` with
``uri`` as its error and ``str(error)`` as its message, plus the keyword arguments in
``details`` (never a traceback). The URIs are listed in ``docs/management-api.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from container.positions import Problem


class ExitCode(IntEnum):
    """What every program here exits with: ``container run``, ``check``, ``ctl``, a worker."""

    OK = 0
    FAILED = 1  # the program ran and something it was asked to do failed
    USAGE = 2  # the command line or a file it names is wrong; nothing was done
    REFUSED = 3  # a worker: the management realm refused it, or another worker has its id


class ContainerError(Exception):
    """Base of every error the container reports to a caller."""

    uri: ClassVar[str] = "crossbar.error.runtime_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details: dict[str, Any] = details


class InvalidConfiguration(ContainerError):
    """A configuration value is missing, of the wrong type or not allowed."""

    uri = "crossbar.error.invalid_configuration"


class NodePlanError(InvalidConfiguration):
    """The node configuration is valid but this node cannot serve it as written (or another
    node already runs it)."""


class NodeConfigError(InvalidConfiguration):
    """The node configuration is not valid; ``problems`` lists everything wrong, in file order."""

    def __init__(self, file: str, problems: Sequence[Problem]) -> None:
        lines = "\n".join(str(problem) for problem in problems)
        count = f"{len(problems)} problem{'' if len(problems) == 1 else 's'}"
        super().__init__(
            f"invalid node configuration {file} ({count}):\n{lines}",
            file=file,
            problems=[str(problem) for problem in problems],
        )
        self.file = file
        self.problems: list[Problem] = list(problems)


class ConfigFileUnreadable(InvalidConfiguration):
    """The file could not be read at all (missing, a directory, no permission).

    Separate from :class:`NodeConfigError` because nothing inside the file can be blamed:
    ``container check`` exits 2 for it, 1 for an invalid configuration.
    """


class InvalidArgument(ContainerError):
    """A call's arguments do not fit the procedure: one is missing, unknown, given twice, or
    of the wrong type (a flag that is not a boolean). ``argument`` names it, when one is meant."""

    uri = "wamp.error.invalid_argument"


class ClassImportFailed(ContainerError):
    """The component's class or callback could not be imported (or reloaded)."""

    uri = "crossbar.error.class_import_failed"


class AlreadyRunning(ContainerError):
    """A component with this id already exists in the container."""

    uri = "crossbar.error.already_running"


class NoSuchComponent(ContainerError):
    """No component with this id is known to the container."""

    uri = "crossbar.error.no_such_object"


class CannotConnect(ContainerError):
    """The component's transport to its router could not be established."""

    uri = "crossbar.error.cannot_connect"


class ComponentStartFailed(ContainerError):
    """The component connected but failed before it was ready.

    Its constructor raised, ``onJoin`` raised, the router refused the join, the component
    left before it was ready, or it did not become ready within the start timeout.
    """

    uri = "crossbar.error.cannot_start"


class StartCancelled(ContainerError):
    """A stop (or shutdown) arrived while the component was still starting."""

    uri = "crossbar.error.cancelled"


class ShuttingDown(ContainerError):
    """The worker is shutting down and accepts no new components."""

    uri = "crossbar.error.shutting_down"


# -- errors that never reach a caller over WAMP -------------------------------------------


class IllegalTransition(RuntimeError):
    """A programming error: a component's state machine has no such edge."""


class CheckpointError(Exception):
    """A worker's checkpoint file cannot be written, or read back."""


class NotJoined(Exception):
    """The node is not on the management realm right now (its router is down)."""


class CtlError(Exception):
    """What ``container ctl`` reports as one ``error: ...`` line, and the code it exits with."""

    def __init__(self, message: str, exit_code: int = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code
