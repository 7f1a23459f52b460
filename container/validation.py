"""What every configuration check shares: one way to write where in a document a problem is.

A key path reads like the document: ``workers[1].options.restart``; a key that is not a plain
name is quoted (``paths["/"]``); the document itself is ``(root)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

__all__ = ["KeyPath", "format_key_path"]

KeyPath = Sequence[str | int]

_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$-]*$")


def format_key_path(path: KeyPath, root: str = "") -> str:
    """``("workers", 1, "options", "restart")`` -> ``workers[1].options.restart``."""
    text = root
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part, ensure_ascii=False)}]"
    return text or "(root)"
