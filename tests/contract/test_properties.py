"""Ids in AMQP short-string properties: what fits is sent as it is, what does not is left out or keyed."""

from __future__ import annotations

import pytest

from genesys_bridge_client.contract.properties import MAX_PROPERTY_BYTES, correlation_key, fitting_property


@pytest.mark.parametrize("value", ["", "c-1", "x" * 255, "é" * 127 + "x"])
def test_what_fits_is_kept_as_it_is(value: str) -> None:
    assert fitting_property(value) == value
    assert correlation_key(value) == value


@pytest.mark.parametrize("value", ["x" * 256, "é" * 128, "😀" * 64])
def test_what_does_not_fit_is_left_out_and_keyed_by_its_hash(value: str) -> None:
    assert fitting_property(value) is None
    key = correlation_key(value)
    assert key.startswith("sha256:")
    assert len(key.encode()) <= MAX_PROPERTY_BYTES
    assert key == correlation_key(value)  # the same id, the same key: a resend matches the same reply
    assert key != correlation_key(value + "x")


def test_nothing_is_nothing() -> None:
    assert fitting_property(None) is None
