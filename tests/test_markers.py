"""The ``broker`` marker is honest: the broker's URL reaches tests only through the ``amqp_url`` fixture.

``tests/conftest.py`` marks ``broker`` every test whose fixtures include ``amqp_url``. A test that read the
URL another way (the ``AMQP_URL`` constant, ``TEST_AMQP_URL`` from the environment) would talk to RabbitMQ
unmarked, and ``pytest -m "not broker"`` would fail on a machine without one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
CONFTEST = TESTS / "conftest.py"
OTHER_WAYS = re.compile(r"\bAMQP_URL\b|TEST_AMQP_URL")


def test_only_the_root_conftest_knows_the_broker_url() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{n}: {line.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        if path not in (CONFTEST, Path(__file__).resolve())
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if OTHER_WAYS.search(line)
    ]
    assert not offenders, "take the URL from the amqp_url fixture instead:\n" + "\n".join(offenders)


def test_a_test_using_the_broker_is_marked(request: pytest.FixtureRequest, amqp_url: str) -> None:
    assert amqp_url.startswith("amqp")
    assert request.node.get_closest_marker("broker") is not None


def test_a_test_without_the_broker_is_not_marked(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("broker") is None
