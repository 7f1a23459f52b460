"""Small file and process facts that the node, the worker and ``ctl`` all rely on.

Written once here so that the node's ``ctl.json``, the worker's checkpoint and the
``<worker>.options.json`` files share one definition of an atomic write, and the node and
``ctl`` share one answer to "is that process still there".
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

PRIVATE_MODE = stat.S_IRUSR | stat.S_IWUSR


def temporary_prefix(path: str | os.PathLike[str]) -> str:
    """The name prefix of the temporary files a writer of ``path`` makes beside it."""
    return f".{os.path.basename(os.fspath(path))}.tmp-"


def write_atomically(path: str | os.PathLike[str], data: bytes, *, private: bool = False,
                     durable: bool = False) -> None:
    """Replace ``path`` by ``data`` through a temporary file and a rename, so a reader never
    sees half a file; the temporary file is removed whatever fails.

    ``private`` makes the file readable by this user only (it may hold secrets);
    ``durable`` syncs it to disk before the rename (a checkpoint must survive a power cut,
    a file rewritten at every start need not pay for that).
    """
    target = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=temporary_prefix(target))
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        if private:
            os.chmod(temporary, PRIVATE_MODE)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_private_json(path: Path, data: Any) -> None:
    """JSON readable only by this user, written atomically."""
    text = json.dumps(data, indent=2) + "\n"
    write_atomically(path, text.encode("utf-8"), private=True)


def process_exists(pid: int) -> bool:
    """Whether a process with this pid exists (one we may not signal counts as existing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_container_process(pid: int) -> bool:
    """Whether ``pid`` is alive and (where /proc tells) a ``container`` program, so that a
    recycled pid of some other program is not taken for a node that still runs."""
    if not process_exists(pid):
        return False
    try:
        return b"container" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
