"""``python -m bridge`` is the ``genesys-bridge`` command."""

from bridge.cli import main

raise SystemExit(main())
