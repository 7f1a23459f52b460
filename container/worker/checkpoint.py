"""The worker's checkpoint file (``--state-file``): encoding, atomic writing, careful reading.

The file is JSON, checked against ``schema/checkpoint.schema.json``::

    {"version": 1, "worker": "<worker id>", "components": {"<id>": <configuration>, ...}}

A configuration holds whatever the management API accepted, and CBOR and msgpack carry more
than JSON does, so values JSON cannot hold are tagged: ``{"$bytes": BASE64}`` is a byte
string, ``{"$map": [[KEY, VALUE], ...]}`` a map whose keys are not all strings or that has a
key starting with ``$`` (so a configuration's own ``$bytes`` key never reads back as a
tag), and ``{"$cbor": BASE64}`` any other value CBOR carries (a datetime, a tag, ...).

Reading never opens anything but a regular file (``lstat`` first, then ``O_NONBLOCK`` and
``O_NOFOLLOW``), and a file that cannot be read, is not valid, or belongs to another worker
is renamed aside to ``<name>.corrupt-<UTC time>`` (never overwritten) and reported.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import cbor2
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from container.errors import CheckpointError
from container.files import temporary_prefix
from container.validation import schema_registry

CHECKPOINT_VERSION = 1
CHECKPOINT_SCHEMA_ID = "https://wamp-container.invalid/schema/checkpoint.schema.json"
_TAGS = ("$bytes", "$map", "$cbor")


# -- encoding -----------------------------------------------------------------------------


def encode_value(value: Any) -> Any:
    """``value`` as plain JSON values, with the tags described in the module docstring."""
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [encode_value(item) for item in value]
    if isinstance(value, dict):
        if all(isinstance(key, str) and not key.startswith("$") for key in value):
            return {key: encode_value(item) for key, item in value.items()}
        return {"$map": [[encode_value(key), encode_value(item)] for key, item in value.items()]}
    try:
        return {"$cbor": base64.b64encode(cbor2.dumps(value)).decode("ascii")}
    except (cbor2.CBOREncodeError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"cannot store a value of type {type(value).__name__}: {error}") from None


def decode_value(value: Any) -> Any:
    """The inverse of :func:`encode_value` (raising ``CheckpointError`` on a bad tag)."""
    if isinstance(value, list):
        return [decode_value(item) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and next(iter(value)) in _TAGS:
        tag, payload = next(iter(value.items()))
        try:
            if tag == "$bytes":
                return base64.b64decode(payload, validate=True)
            if tag == "$cbor":
                return cbor2.loads(base64.b64decode(payload, validate=True))
            return {_hashable(decode_value(key)): decode_value(item) for key, item in payload}
        except (TypeError, ValueError, cbor2.CBORDecodeError) as error:
            raise CheckpointError(f"a {tag} value cannot be decoded: {error}") from None
    return {key: decode_value(item) for key, item in value.items()}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(item) for item in key) if isinstance(key, list) else key


def encode_checkpoint(worker_id: str, components: dict[str, Any]) -> bytes:
    state = {"version": CHECKPOINT_VERSION, "worker": worker_id,
             "components": {cid: encode_value(config) for cid, config in components.items()}}
    return json.dumps(state).encode("utf-8")


# -- writing ------------------------------------------------------------------------------


def remove_stale_temporaries(path: str) -> list[str]:
    """Remove the temporary files a killed writer of ``path`` left behind."""
    folder = os.path.dirname(os.path.abspath(path))
    prefix = temporary_prefix(path)
    removed = []
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            if name.startswith(prefix):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))
                    removed.append(name)
    return removed


def check_writable(path: str) -> None:
    """Raise ``CheckpointError`` unless a checkpoint can be written next to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=temporary_prefix(path))
    except OSError as error:
        raise CheckpointError(
            f"the state directory {folder} is not writable: {error.strerror or error}"
        ) from None
    os.close(handle)
    os.unlink(probe)


# -- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """What reading the checkpoint gave: the components to resume, or the problem found
    (``problem``) and where the file was set aside (``aside``, None if it could not be)."""

    components: dict[str, Any]
    problem: str | None = None
    aside: str | None = None


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator({"$ref": CHECKPOINT_SCHEMA_ID}, registry=schema_registry())


def _kind(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISLNK, "a symbolic link"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _read_regular_file(path: str) -> bytes | None:
    """The file's bytes; None if there is none; ``CheckpointError`` if it is not a regular
    file or cannot be read. Never blocks on a FIFO, never follows a symbolic link."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as error:
        raise CheckpointError(f"cannot be inspected: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"is {_kind(mode)}, not a regular file")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
    try:
        handle = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise CheckpointError(f"cannot be opened: {error.strerror or error}") from None
    with os.fdopen(handle, "rb") as file:
        mode = os.fstat(file.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise CheckpointError(f"is {_kind(mode)}, not a regular file")
        try:
            return file.read()
        except OSError as error:
            raise CheckpointError(f"cannot be read: {error.strerror or error}") from None


def parse_checkpoint(data: bytes, worker_id: str) -> dict[str, Any]:
    """The components of a checkpoint file's contents (``CheckpointError`` if invalid)."""
    try:
        state = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"is not valid JSON: {error}") from None
    errors = sorted(_validator().iter_errors(state), key=lambda e: len(e.absolute_path))
    if errors:
        where = "/".join(str(part) for part in errors[0].absolute_path)
        raise CheckpointError(
            f"is not a valid checkpoint: {where + ': ' if where else ''}{errors[0].message}")
    if state["worker"] != worker_id:
        raise CheckpointError(
            f"belongs to worker '{state['worker']}', not to this worker '{worker_id}'")
    return {cid: decode_value(config) for cid, config in state["components"].items()}


def set_aside(path: str, now: float | None = None) -> str:
    """Rename ``path`` to a free ``<path>.corrupt-<UTC time>[-N]``; returns the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    base = f"{path}.corrupt-{stamp}"
    candidate, number = base, 0
    while os.path.lexists(candidate):
        number += 1
        candidate = f"{base}-{number}"
    os.rename(path, candidate)
    return candidate


def read_checkpoint(path: str, worker_id: str) -> Loaded:
    """The components to resume from ``path``. A file that cannot be used is set aside."""
    try:
        data = _read_regular_file(path)
        if data is None:
            return Loaded({})
        return Loaded(parse_checkpoint(data, worker_id))
    except CheckpointError as error:
        problem = str(error)
    try:
        aside = set_aside(path)
    except OSError as error:
        return Loaded({}, f"{problem}; it cannot be set aside: {error.strerror or error}")
    return Loaded({}, problem, aside)
