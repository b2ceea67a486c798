"""End-to-end tests: the simulator, the bridge and a plain AMQP client on the real broker.

See ``tests/e2e/README.md``. The fixtures live in :mod:`tests.e2e.stack` (the composed stack),
:mod:`tests.e2e.harness` (the integrator's side) and :mod:`tests.e2e.daemon` (the bridge as a process).
"""

from __future__ import annotations
