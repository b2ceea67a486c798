"""Publish the contract: JSON Schema files and one AsyncAPI 3.0 document, generated from the models.

Nothing here is written by hand: every schema comes from pydantic's ``model_json_schema`` (through
:class:`ContractSchemaGenerator`), and the AsyncAPI document only arranges those schemas into
channels, operations and messages. Output is deterministic (stable order, fixed formatting, no
timestamps, no environment lookups), so a test compares the checked-in ``docs/contract/`` with a
fresh :func:`render_contract`.

Files written:

* ``<type>.schema.json``: one JSON Schema (draft 2020-12) per command and per event type;
* ``commands.schema.json`` / ``events.schema.json``: the discriminated unions;
* ``asyncapi.json``: the AsyncAPI 3.0.0 document describing the bridge as an application that
  receives commands and sends events.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema

from bridge import __version__
from bridge.config import Settings
from genesys_bridge_client.contract.commands import Command
from genesys_bridge_client.contract.events import Event

__all__ = [
    "ASYNCAPI_FILE",
    "ContractSchemaGenerator",
    "asyncapi_document",
    "command_models",
    "event_models",
    "render_contract",
    "schema_file_name",
    "write_contract",
]

ASYNCAPI_FILE: Final = "asyncapi.json"
JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
_AMQP_BINDING_VERSION: Final = "0.3.0"
#: Discriminator fields: they have defaults in the models (so code can omit them) but are always on the
#: wire, and the codec refuses a command without ``type``. The schemas must say they are required.
_TAG_FIELDS: Final = ("type", "kind")


class ContractSchemaGenerator(GenerateJsonSchema):
    """pydantic's generator, with discriminator fields (``type``, ``kind``) marked required."""

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        json_schema = super().model_schema(schema)
        properties = json_schema.get("properties", {})
        tags = [name for name in _TAG_FIELDS if "const" in properties.get(name, {})]
        if tags:
            required = json_schema.setdefault("required", [])
            required.extend(tag for tag in tags if tag not in required)
        return json_schema


def _members(union: Any) -> tuple[type[BaseModel], ...]:
    # Command and Event are Annotated[A | B | ..., Field(discriminator=...)]: unwrap both layers.
    (inner, *_) = typing.get_args(union)
    return tuple(typing.get_args(inner))


def command_models() -> tuple[type[BaseModel], ...]:
    """The models of the :data:`Command` union, in declaration order."""
    return _members(Command)


def event_models() -> tuple[type[BaseModel], ...]:
    """The models of the :data:`Event` union, in declaration order."""
    return _members(Event)


def _type_of(model: type[BaseModel]) -> str:
    default = model.model_fields["type"].default
    assert isinstance(default, str), model
    return default


def schema_file_name(model: type[BaseModel]) -> str:
    """``session.start.schema.json`` for :class:`SessionStart`, and so on."""
    return f"{_type_of(model)}.schema.json"


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _with_dialect(schema: dict[str, Any]) -> dict[str, Any]:
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def render_contract() -> dict[str, str]:
    """Every contract file, by file name, as the text :func:`write_contract` would write."""
    files: dict[str, str] = {}
    for model in (*command_models(), *event_models()):
        schema = model.model_json_schema(mode="validation", schema_generator=ContractSchemaGenerator)
        files[schema_file_name(model)] = _dump(_with_dialect(schema))
    unions: tuple[tuple[str, str, TypeAdapter[Any]], ...] = (
        ("commands", "Command", TypeAdapter(Command)),
        ("events", "Event", TypeAdapter(Event)),
    )
    for name, title, adapter in unions:
        schema = adapter.json_schema(mode="validation", schema_generator=ContractSchemaGenerator)
        files[f"{name}.schema.json"] = _dump(_with_dialect({"title": title, **schema}))
    files[ASYNCAPI_FILE] = _dump(asyncapi_document())
    return dict(sorted(files.items()))


def write_contract(out_dir: Path) -> list[Path]:
    """Write every contract file into ``out_dir`` (created if missing); returns the paths written.

    Files are rewritten only when their content changed, so timestamps stay put for build tools.
    Stale files of an older contract are not deleted: the caller owns the directory.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, text in render_contract().items():
        path = out_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


# --- AsyncAPI ------------------------------------------------------------------------------------------


def _asyncapi_schema(value: Any) -> Any:
    """Adapt pydantic's JSON Schema to the AsyncAPI Schema Object (a JSON Schema draft-07 superset).

    The one difference that matters here: AsyncAPI's ``discriminator`` is the property name (a string),
    where pydantic emits the OpenAPI-style ``{"propertyName": ..., "mapping": ...}``.
    """
    if isinstance(value, list):
        return [_asyncapi_schema(item) for item in value]
    if not isinstance(value, dict):
        return value
    adapted = {key: _asyncapi_schema(item) for key, item in value.items()}
    discriminator = adapted.get("discriminator")
    if isinstance(discriminator, dict) and "propertyName" in discriminator:
        adapted["discriminator"] = discriminator["propertyName"]
    return adapted


def _first_line(model: type[BaseModel]) -> str:
    return (model.__doc__ or "").strip().splitlines()[0]


#: How the bridge publishes every event (both event channels).
_EVENT_PUBLISH_BINDINGS: Final = {
    "amqp": {"deliveryMode": 2, "mandatory": True, "timestamp": True, "bindingVersion": _AMQP_BINDING_VERSION}
}

#: The properties and headers of every event message, as both event channels describe them.
_EVENT_PROPERTIES = (
    "AMQP properties: `message_id` = `event_id`, `correlation_id` = the command's own AMQP `correlation_id` "
    "for its outcome, else the command's body `correlation_id` (or else its `command_id`; left out when longer "
    "than the property's 255 bytes of UTF-8), `type` = the event "
    "type, `timestamp` = `occurred_at`, `content_type` application/json, `app_id` genesys-bridge, persistent "
    "delivery; headers `traceparent`/`tracestate` = the W3C trace context of the causing (or the session's "
    "newest) command. Published with publisher confirms: at least once, so deduplicate by `event_id` (and "
    "messages by `genesys_message_id`)."
)


def _message(model: type[BaseModel], schema: dict[str, Any], *, correlation: str) -> dict[str, Any]:
    message_type = _type_of(model)
    examples = schema.get("examples", [])
    return {
        "name": message_type,
        "title": model.__name__,
        "summary": _first_line(model),
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
        "correlationId": {"$ref": f"#/components/correlationIds/{correlation}"},
        "bindings": {"amqp": {"messageType": message_type, "bindingVersion": _AMQP_BINDING_VERSION}},
        "examples": [
            {"name": f"{message_type}#{i}", "payload": example} for i, example in enumerate(examples, start=1)
        ],
    }


def _message_refs(channel: str, models: Iterable[type[BaseModel]]) -> list[dict[str, str]]:
    return [{"$ref": f"#/channels/{channel}/messages/{m.__name__}"} for m in models]


def _exchange(name: str) -> dict[str, Any]:
    return {
        "amqp": {
            "is": "routingKey",
            "exchange": {"name": name, "type": "topic", "durable": True, "autoDelete": False, "vhost": "/"},
            "bindingVersion": _AMQP_BINDING_VERSION,
        }
    }


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document, as a dict, from the bridge's point of view."""
    commands, events = command_models(), event_models()
    (_, definitions) = models_json_schema(
        [(model, "validation") for model in (*commands, *events)],
        ref_template="#/components/schemas/{model}",
        schema_generator=ContractSchemaGenerator,
    )
    schemas: dict[str, Any] = _asyncapi_schema(definitions["$defs"])
    defaults = Settings.model_fields  # the defaults only: the document must not depend on the environment
    command_exchange = defaults["command_exchange"].default
    event_exchange = defaults["event_exchange"].default
    intake_queue = defaults["intake_queue"].default
    dead_letter_queue = defaults["dead_letter_queue"].default
    outcome = next(m for m in events if _type_of(m) == "command.outcome")

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "genesys-bridge",
            "version": __version__,
            "description": (
                "Hold Genesys Cloud web-messaging conversations from backend services over RabbitMQ. "
                "Services publish commands; the bridge keeps one Guest API WebSocket per session and "
                "publishes events. Message contract v1; every body is UTF-8 JSON with a `type` field. "
                "See docs/contract.md for the contract by example."
            ),
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "127.0.0.1:5672",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "Example broker (RabbitMQ). Set BRIDGE_AMQP_URL to point the bridge elsewhere.",
            }
        },
        "channels": {
            "commands": {
                "address": "{commandType}",
                "title": "Commands",
                "description": (
                    f"The command exchange (BRIDGE_COMMAND_EXCHANGE, default `{command_exchange}`), a durable "
                    f"topic exchange bound with `#` to the bridge's intake quorum queue (default `{intake_queue}`). "
                    "Publish each command with the routing key equal to its `type`, `content_type` "
                    "application/json and persistent delivery. Set `reply_to` to a queue name to receive the "
                    "command's settled `command.outcome` there too, and the AMQP `correlation_id` property to "
                    "have it copied onto the outcome's. W3C `traceparent`/`tracestate` headers are copied onto "
                    "every event the command causes and onto the session's later events. The exchange is "
                    "declared by the bridge (or ahead of time by `genesys-bridge declare`): publishing before it "
                    "exists fails with NOT_FOUND. Commands that cannot be decoded or break a limit "
                    f"are answered with a rejected outcome and dead-lettered to `{dead_letter_queue}` with "
                    "headers `x-bridge-reject-reason` and `x-bridge-reject-detail`."
                ),
                "parameters": {
                    "commandType": {
                        "description": "The command's `type`.",
                        "enum": [_type_of(m) for m in commands],
                        "location": "$message.payload#/type",
                    }
                },
                "messages": {m.__name__: {"$ref": f"#/components/messages/{m.__name__}"} for m in commands},
                "bindings": _exchange(command_exchange),
            },
            "events": {
                "address": "{eventType}.{deploymentId}",
                "title": "Events",
                "description": (
                    f"The event exchange (BRIDGE_EVENT_EXCHANGE, default `{event_exchange}`), a durable topic "
                    "exchange. Routing key `<event type>.<deployment id>` for sessions started without a "
                    "`route` (those with one use the `ownedEvents` channel); bind e.g. `message.received.#`, "
                    "`#.<deployment id>` or `#`. " + _EVENT_PROPERTIES
                ),
                "parameters": {
                    "eventType": {
                        "description": "The event's `type`.",
                        "enum": [_type_of(m) for m in events],
                        "location": "$message.payload#/type",
                    },
                    "deploymentId": {
                        "description": (
                            "The session's Genesys deployment id; `unknown` for outcomes of commands that name "
                            "no known session."
                        ),
                        "examples": ["0f4f1d2a-5b1e-4e0e-9f3a-2f5d8c1a7b10", "unknown"],
                    },
                },
                "messages": {m.__name__: {"$ref": f"#/components/messages/{m.__name__}"} for m in events},
                "bindings": _exchange(event_exchange),
            },
            "ownedEvents": {
                "address": "{eventType}.{deploymentId}.{route}",
                "title": "Events of owned sessions",
                "description": (
                    f"The same event exchange (default `{event_exchange}`) for sessions whose `session.start` "
                    "named a `route`: the owner token is the last part of every routing key of that session, "
                    "its outcomes included, so a service binds only its own conversations (`#.<route>`). "
                    + _EVENT_PROPERTIES
                ),
                "parameters": {
                    "eventType": {
                        "description": "The event's `type`.",
                        "enum": [_type_of(m) for m in events],
                        "location": "$message.payload#/type",
                    },
                    "deploymentId": {"description": "The session's Genesys deployment id."},
                    "route": {"description": "The `route` of the session's `session.start`.", "examples": ["billing"]},
                },
                "messages": {m.__name__: {"$ref": f"#/components/messages/{m.__name__}"} for m in events},
                "bindings": _exchange(event_exchange),
            },
            "commandReplies": {
                "address": None,
                "title": "Command replies",
                "description": (
                    "The queue named by a command's AMQP `reply_to` property. The bridge publishes the command's "
                    "settled `command.outcome` through the default exchange with that queue name as routing key, "
                    "in addition to the event exchange, with the command's AMQP `correlation_id` property. "
                    "Non-final `will_retry` notices go there only when the command sets `reply_notices`, so the "
                    "first reply is the answer. The address is dynamic, so it is null here."
                ),
                "messages": {outcome.__name__: {"$ref": f"#/components/messages/{outcome.__name__}"}},
            },
        },
        "operations": {
            "receiveCommands": {
                "action": "receive",
                "channel": {"$ref": "#/channels/commands"},
                "title": "Receive commands",
                "summary": "The bridge consumes commands; each gets exactly one command.outcome.",
                "description": (
                    "A command is acknowledged only once its outcome is settled and confirmed by the broker. "
                    "`command_id` is the idempotency key: a repeat gets the original outcome again. Commands "
                    "for one session are handled strictly in arrival order."
                ),
                "messages": _message_refs("commands", commands),
                "bindings": {"amqp": {"ack": True, "bindingVersion": _AMQP_BINDING_VERSION}},
                "reply": {
                    "address": {
                        "description": "The AMQP `reply_to` property of the command, when set.",
                        "location": "$message.header#/reply_to",
                    },
                    "channel": {"$ref": "#/channels/commandReplies"},
                    "messages": _message_refs("commandReplies", [outcome]),
                },
            },
            "sendEvents": {
                "action": "send",
                "channel": {"$ref": "#/channels/events"},
                "title": "Send events",
                "summary": "The bridge publishes session, message, typing and outcome events.",
                "messages": _message_refs("events", events),
                "bindings": _EVENT_PUBLISH_BINDINGS,
            },
            "sendOwnedEvents": {
                "action": "send",
                "channel": {"$ref": "#/channels/ownedEvents"},
                "title": "Send events of owned sessions",
                "summary": "As sendEvents, for sessions started with a `route`.",
                "messages": _message_refs("ownedEvents", events),
                "bindings": _EVENT_PUBLISH_BINDINGS,
            },
        },
        "components": {
            "schemas": schemas,
            "messages": {
                **{m.__name__: _message(m, schemas[m.__name__], correlation="command") for m in commands},
                **{m.__name__: _message(m, schemas[m.__name__], correlation="event") for m in events},
            },
            "correlationIds": {
                "command": {
                    "description": "The command's idempotency key; its outcome and events carry it as causation_id.",
                    "location": "$message.payload#/command_id",
                },
                "event": {
                    "description": "The command_id of the command this event answers, when there is one.",
                    "location": "$message.payload#/causation_id",
                },
            },
        },
    }
