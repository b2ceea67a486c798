"""The published contract: checked-in files match the models, and the AsyncAPI document is valid AsyncAPI 3.0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel

from bridge import __version__
from bridge.contract.export import (
    ASYNCAPI_FILE,
    command_models,
    event_models,
    render_contract,
    schema_file_name,
    write_contract,
)
from genesys_bridge_client.contract import COMMAND_TYPES, EVENT_TYPES
from genesys_bridge_client.contract.codec import Rejection, decode_command, decode_event

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_DIR = ROOT / "docs" / "contract"
ASYNCAPI_SCHEMA = ROOT / "tests" / "data" / "asyncapi-3.0.0.schema.json"
REGENERATE = "regenerate with `make schema` (or `genesys-bridge schema --out docs/contract`) and commit the result"

ALL_MODELS = (*command_models(), *event_models())


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return render_contract()


@pytest.fixture(scope="module")
def asyncapi(rendered: dict[str, str]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(rendered[ASYNCAPI_FILE])
    return document


# --- (a) the checked-in files are what the models generate ----------------------------------------------


def test_checked_in_contract_is_up_to_date(rendered: dict[str, str]) -> None:
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in CONTRACT_DIR.glob("*.json")}
    missing = sorted(set(rendered) - set(on_disk))
    stale = sorted(set(on_disk) - set(rendered))
    changed = sorted(name for name in set(rendered) & set(on_disk) if rendered[name] != on_disk[name])
    assert not missing, f"docs/contract lacks {missing}: {REGENERATE}"
    assert not stale, f"docs/contract has files the models no longer produce, delete them: {stale}"
    assert not changed, f"docs/contract is out of date for {changed}: {REGENERATE}"


def test_rendering_is_deterministic(rendered: dict[str, str]) -> None:
    assert render_contract() == rendered


def test_write_contract_writes_what_render_gives(tmp_path: Path, rendered: dict[str, str]) -> None:
    paths = write_contract(tmp_path / "out")
    assert {p.name for p in paths} == set(rendered)
    assert all(p.read_text(encoding="utf-8") == rendered[p.name] for p in paths)
    before = {p: p.stat().st_mtime_ns for p in paths}
    write_contract(tmp_path / "out")  # unchanged content is not rewritten
    assert {p: p.stat().st_mtime_ns for p in paths} == before


# --- (b) the AsyncAPI document is valid against the official schema ---------------------------------------


def test_asyncapi_is_valid_against_the_official_schema(asyncapi: dict[str, Any]) -> None:
    schema = json.loads(ASYNCAPI_SCHEMA.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)  # the draft the schema declares (draft-07)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(asyncapi), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors[:10])


def test_the_official_schema_catches_a_broken_document(asyncapi: dict[str, Any]) -> None:
    """A negative control, so the test above cannot pass by validating nothing."""
    schema = json.loads(ASYNCAPI_SCHEMA.read_text(encoding="utf-8"))
    broken = json.loads(json.dumps(asyncapi))
    broken["channels"]["events"]["bindings"]["amqp"]["exchange"]["type"] = "fanoutish"
    assert not jsonschema.validators.validator_for(schema)(schema).is_valid(broken)


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def test_every_reference_resolves(asyncapi: dict[str, Any]) -> None:
    refs = _refs(asyncapi)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = asyncapi
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]


def test_asyncapi_describes_the_bridge(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["info"]["title"] == "genesys-bridge"
    assert asyncapi["info"]["version"] == __version__
    assert asyncapi["servers"]["rabbitmq"]["protocol"] == "amqp"
    commands, events = asyncapi["channels"]["commands"], asyncapi["channels"]["events"]
    assert commands["bindings"]["amqp"]["exchange"]["name"] == "genesys.commands"
    assert events["bindings"]["amqp"]["exchange"]["name"] == "genesys.events"
    assert commands["parameters"]["commandType"]["enum"] == list(COMMAND_TYPES)
    assert events["parameters"]["eventType"]["enum"] == list(EVENT_TYPES)
    assert asyncapi["operations"]["receiveCommands"]["action"] == "receive"
    assert asyncapi["operations"]["sendEvents"]["action"] == "send"
    assert asyncapi["operations"]["sendEvents"]["bindings"]["amqp"]["deliveryMode"] == 2
    operation_messages = {ref["$ref"].rsplit("/", 1)[1] for ref in asyncapi["operations"]["sendEvents"]["messages"]}
    assert operation_messages == {m.__name__ for m in event_models()}


# --- (c) every model has its schema file, and the schemas agree with the codec ---------------------------


def test_unions_match_the_type_vocabularies() -> None:
    assert tuple(m.model_fields["type"].default for m in command_models()) == COMMAND_TYPES
    assert tuple(m.model_fields["type"].default for m in event_models()) == EVENT_TYPES


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_every_model_has_a_schema_file(model: type[BaseModel], rendered: dict[str, str]) -> None:
    schema = json.loads(rendered[schema_file_name(model)])
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["title"] == model.__name__
    assert "type" in schema["required"]  # the discriminator is required on the wire
    assert schema["examples"], "give every model an example: it feeds the AsyncAPI document"


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_examples_validate_with_both_the_schema_and_the_codec(model: type[BaseModel], rendered: dict[str, str]) -> None:
    schema = json.loads(rendered[schema_file_name(model)])
    validator = jsonschema.Draft202012Validator(schema)
    for example in schema["examples"]:
        validator.validate(example)
        raw = json.dumps(example).encode()
        decoded = decode_event(raw) if model in event_models() else decode_command(raw, max_bytes=1 << 20)
        assert not isinstance(decoded, Rejection), decoded
        assert isinstance(decoded, model)


@pytest.mark.parametrize("name", ["commands.schema.json", "events.schema.json"])
def test_union_schemas_are_valid(name: str, rendered: dict[str, str]) -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(rendered[name]))


def test_union_schema_refuses_a_command_without_type(rendered: dict[str, str]) -> None:
    validator = jsonschema.Draft202012Validator(json.loads(rendered["commands.schema.json"]))
    assert validator.is_valid({"type": "typing.send", "command_id": "c", "session_id": "s"})
    assert not validator.is_valid({"command_id": "c", "session_id": "s"})
