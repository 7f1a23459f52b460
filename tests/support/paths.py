"""Where things are, for tests that run the project's programs or load its test apps."""

from __future__ import annotations

from pathlib import Path

#: The repository's root: the working directory of every ``container`` child process.
ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
#: The test components (``hello.Quiet``, ``faulty.CrashesAfterJoin``, ...).
APPS = str(TESTS / "apps")
#: The example node configurations and their components.
EXAMPLES = ROOT / "node-config"
