"""``python -m container.router WORKER.json``: one Crossbar.io router or proxy worker
(the node's child; the same as ``container router``)."""

import sys

from container.cli import main

sys.exit(main(["router", *sys.argv[1:]]))
