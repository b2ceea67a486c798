"""End-to-end tests: the simulator, the bridge and a plain AMQP client on the real broker.

See ``tests/e2e/README.md``. The fixtures live in :mod:`tests.e2e.stack` (the composed stack),
:mod:`tests.e2e.harness` (the integrator's side) and :mod:`tests.daemon` (the bridge as a process).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.simulator import PROFILES
from tests.e2e.stack import simulator_profile


@pytest.fixture(autouse=True, params=sorted(PROFILES))
def sim_profile(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every end-to-end test runs against real Genesys' defaults and against the "everything-on" profile.

    A test that needs a feature real deployments have off says so in its ``quiet_simulator(...)``.
    """
    with simulator_profile(request.param):
        yield request.param
