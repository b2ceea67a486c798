"""Shared fixtures. Every test gets its own broker names, so tests cannot see each other."""

from __future__ import annotations

import asyncio
import inspect
import os
import uuid
from collections.abc import AsyncIterator

import hypothesis
import pytest

from bridge.amqp.tools import DeploymentNames

#: The fixture integrators use (genesys_bridge), so the suite tests it the way they will load it.
pytest_plugins = ["bridge.testing"]

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

# Property tests check what code does, never how fast: Hypothesis' per-example deadline and its "too slow"
# health check turn a busy machine (CI shares its cores) into random failures, so both are off suite-wide.
hypothesis.settings.register_profile("suite", deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.load_profile("suite")


#: Exchange and queue names unique to one test (``broker_names``).
BrokerNames = DeploymentNames


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The RabbitMQ every broker test talks to. Requesting it (directly or through another fixture) is what
    marks a test ``broker``: see :func:`pytest_collection_modifyitems`."""
    return AMQP_URL


@pytest.fixture(scope="session")
def genesys_bridge_amqp_url(amqp_url: str) -> str:
    """The integrators' fixture (``genesys_bridge``) takes the suite's broker, and so marks its tests ``broker``."""
    return amqp_url


@pytest.fixture
def broker_names(request: pytest.FixtureRequest) -> BrokerNames:
    """Names no other test uses: ``t.<test name>.<random>``."""
    name = request.node.name.replace("[", ".").replace("]", "")[:60]
    return BrokerNames(prefix=f"t.{name}.{uuid.uuid4().hex[:8]}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> object:
    """Give *sync* tests a loop of our own and close it afterwards.

    looptime's plugin asks the loop policy for the current loop around every test; for a sync test under
    Python 3.11 that silently creates a loop nobody closes, and with ``filterwarnings = error`` its
    ResourceWarning fails whichever test runs next (a known pytest-asyncio bug). Async tests are left alone:
    pytest-asyncio owns their loop.
    """
    # pytest-asyncio swaps an async test's ``obj`` for a sync wrapper before this hook runs, so the
    # coroutine check alone misses async tests; its ``asyncio`` marker (auto mode adds it) does not.
    if inspect.iscoroutinefunction(pyfuncitem.obj) or pyfuncitem.get_closest_marker("asyncio") is not None:
        return (yield)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return (yield)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


#: How long the tasks an async test leaves behind may take to finish before the test fails.
SETTLE_S = 10.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every async test ends with :func:`_tasks_settled` (set up first, so torn down last); every test that
    reaches RabbitMQ through the ``amqp_url`` fixture is marked ``broker``, so ``-m "not broker"`` runs the
    rest on a machine without one."""
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        if "amqp_url" in item.fixturenames:  # the fixture closure: indirect use counts
            item.add_marker(pytest.mark.broker)
        if item.get_closest_marker("asyncio") is not None:
            item.fixturenames.insert(0, "_tasks_settled")


@pytest.fixture
async def _tasks_settled() -> AsyncIterator[None]:
    """After the test and its fixtures: wait for every other task on the loop to finish, or fail.

    pytest-asyncio cancels what is left when it closes the loop, and a task that a library spawns while
    being cancelled never runs (aiormq closes a connection the broker dropped in a task of its own). Its
    coroutine is then collected unawaited much later, and ``filterwarnings = error`` fails whichever
    test is running at that moment. Waiting here keeps every test's loose ends inside that test, and a
    task that never finishes is a leak the test's own code must own.
    """
    yield
    me = asyncio.current_task()
    try:
        async with asyncio.timeout(SETTLE_S):
            while others := [t for t in asyncio.all_tasks() if t is not me and not t.done()]:
                await asyncio.wait(others, return_when=asyncio.FIRST_COMPLETED)
    except TimeoutError:
        left = sorted(t.get_name() + " " + repr(t.get_coro()) for t in asyncio.all_tasks() if t is not me)
        pytest.fail(f"tasks still running {SETTLE_S} s after the test: {left}")
