"""``python -m bridge.simulator``."""

from __future__ import annotations

import sys

from bridge.simulator.cli import main

if __name__ == "__main__":
    sys.exit(main())
