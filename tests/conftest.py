"""Shared fixtures. Every test gets its own broker names, so tests cannot see each other."""

from __future__ import annotations

import asyncio
import inspect
import os
import uuid
from dataclasses import dataclass

import pytest

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@dataclass(frozen=True)
class BrokerNames:
    """Exchange and queue names unique to one test."""

    prefix: str

    @property
    def command_exchange(self) -> str:
        return f"{self.prefix}.commands"

    @property
    def intake_queue(self) -> str:
        return f"{self.prefix}.intake"

    @property
    def event_exchange(self) -> str:
        return f"{self.prefix}.events"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}.dlq"

    @property
    def journal_stream(self) -> str:
        return f"{self.prefix}.journal"


@pytest.fixture
def amqp_url() -> str:
    return AMQP_URL


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
    ResourceWarning fails whichever test runs next (pytest-asyncio issue #724). Async tests are left alone:
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
