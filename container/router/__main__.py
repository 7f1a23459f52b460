"""``python -m container.router WORKER.json``: one Crossbar.io router or proxy worker."""

import sys

from container.router.main import main

sys.exit(main())
