"""The pure parts of bridge.amqp: error mapping, the reconnect backoff, link health, rejection outcomes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import aiormq.exceptions
import pytest

from bridge.amqp.connection import BrokerLinks, ReconnectBackoff, broker_error
from bridge.amqp.messages import without_auth_secrets
from bridge.contract.outcomes import command_type_label, rejection_outcome
from bridge.errors import BrokerError, BrokerUnavailable, ContractError, is_retryable
from bridge.observability.metrics import Metrics
from genesys_bridge_client.contract.codec import Rejection
from genesys_bridge_client.contract.events import FieldError
from tests.amqp.conftest import sample


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (aiormq.exceptions.ConnectionClosed(320, "CONNECTION_FORCED"), True),
        (aiormq.exceptions.ChannelNotFoundEntity("NOT_FOUND"), True),
        (aiormq.exceptions.ChannelInvalidStateError("closed"), True),
        (ConnectionRefusedError(111, "refused"), True),
        (TimeoutError(), True),
        (aiormq.exceptions.ProbableAuthenticationError("ACCESS_REFUSED"), False),
        (aiormq.exceptions.ChannelPreconditionFailed("PRECONDITION_FAILED"), False),
        (aiormq.exceptions.ChannelAccessRefused("ACCESS_REFUSED"), False),
        # aiormq's reason for every waiting call when a connection ends with none (a FIN, no AMQP close)
        (Exception(), True),
        # aiormq's reason for every waiting call when its heartbeat gave the connection up as stuck; this
        # task was not cancelled
        (asyncio.CancelledError(), True),
    ],
)
async def test_broker_errors_are_mapped_once(exc: BaseException, retryable: bool) -> None:
    mapped = broker_error(exc)
    assert isinstance(mapped, BrokerUnavailable if retryable else BrokerError)
    assert is_retryable(mapped) is retryable


async def test_bugs_and_our_own_errors_keep_their_type() -> None:
    bug = KeyError("x")
    ours = ContractError("bad")
    assert broker_error(bug) is bug
    assert broker_error(ours) is ours


async def test_a_cancellation_of_the_task_itself_is_not_a_broker_error() -> None:
    """Only a CancelledError that reaches a task nobody cancelled is the broker's (see above)."""
    mapped: list[BaseException] = []
    started = asyncio.Event()

    async def stopping() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError as exc:
            mapped.append(broker_error(exc))
            raise

    task = asyncio.create_task(stopping())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [type(m) for m in mapped] == [asyncio.CancelledError]


async def test_the_reconnect_backoff_doubles_with_a_jitter_up_to_its_cap() -> None:
    backoff = ReconnectBackoff(initial_s=0.5, max_s=30.0)
    assert 0.5 <= backoff.wait_s(1) <= 1.0
    assert 2.0 <= backoff.wait_s(3) <= 2.5
    assert backoff.wait_s(7) == 30.0
    assert backoff.wait_s(5000) == 30.0  # a day-long outage does not overflow


async def test_broker_connected_needs_every_link() -> None:
    metrics = Metrics(process_metrics=False)
    links = BrokerLinks(metrics)
    links.register("publisher")
    links.register("intake")
    links.set("publisher", True)
    assert sample(metrics, "genesys_bridge_broker_connected") == 0
    links.set("intake", True)
    assert sample(metrics, "genesys_bridge_broker_connected") == 1
    links.set("publisher", False)
    assert sample(metrics, "genesys_bridge_broker_connected") == 0


async def test_rejection_outcome_carries_what_could_be_read() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    error = FieldError(loc="$.text", message="Field required")
    rejection = Rejection(
        reason="schema_invalid",
        detail="$.text: Field required",
        errors=(error,),
        command_id="c-1",
        session_id="s-1",
        command_type="message.send",
        correlation_id="k-1",
    )
    event = rejection_outcome(rejection, occurred_at=at)
    assert (event.status, event.reason, event.seq, event.occurred_at) == ("rejected", "schema_invalid", 0, at)
    assert (event.command_id, event.causation_id, event.correlation_id) == ("c-1", "c-1", "k-1")
    assert (event.session_id, event.command_type, event.errors) == ("s-1", "message.send", [error])
    assert len(event.event_id) == 32


async def test_rejection_outcome_of_an_unreadable_body() -> None:
    event = rejection_outcome(Rejection(reason="brand_new_reason", detail="?"), occurred_at=datetime.now(UTC))
    assert (event.reason, event.session_id, event.command_id) == ("internal_error", "", None)


@pytest.mark.parametrize(
    ("given", "label"), [("message.send", "message.send"), ("rm -rf", "unknown"), (None, "unknown")]
)
async def test_command_type_labels_stay_a_closed_vocabulary(given: str | None, label: str) -> None:
    assert command_type_label(given) == label


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'{"type": "message.send"}', b'{"auth": "a string"}', b'{"auth": {"redirect_uri": "x"}}'],
)
def test_bodies_without_auth_secrets_are_kept_byte_for_byte(body: bytes) -> None:
    assert without_auth_secrets(body) == (body, False)


def test_an_id_token_is_redacted() -> None:
    body, redacted = without_auth_secrets(b'{"auth": {"id_token": "eyJ.secret", "nonce": "n-1"}}')
    assert redacted
    assert json.loads(body) == {"auth": {"id_token": "[redacted]", "nonce": "n-1"}}
