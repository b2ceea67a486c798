"""docs/contract.md cannot rot: every ```json block in it is a valid command or event."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from genesys_bridge_client.contract import COMMAND_TYPES, EVENT_TYPES
from genesys_bridge_client.contract.codec import Rejection, decode_command, decode_event
from genesys_bridge_client.contract.events import END_REASONS, OUTCOME_REASONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "contract.md"
TEXT = DOC.read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```json\n(.*?)^```$", TEXT, flags=re.MULTILINE | re.DOTALL)


def _line_of(block: str) -> int:
    return TEXT[: TEXT.index(block)].count("\n") + 1


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line{_line_of(b)}" for b in BLOCKS])
def test_every_json_example_decodes(block: str) -> None:
    data = json.loads(block)
    assert isinstance(data, dict)
    if data.get("type") in COMMAND_TYPES:
        result = decode_command(block.encode(), max_bytes=1 << 20)
        assert not isinstance(result, Rejection), f"docs/contract.md line {_line_of(block)}: {result}"
    else:
        decode_event(block.encode())


def test_every_command_and_event_type_has_an_example() -> None:
    shown = {json.loads(block)["type"] for block in BLOCKS}
    assert set(COMMAND_TYPES) | set(EVENT_TYPES) <= shown


@pytest.mark.parametrize("code", [*OUTCOME_REASONS, *END_REASONS])
def test_every_reason_code_is_documented(code: str) -> None:
    assert f"| `{code}` |" in TEXT, f"docs/contract.md does not explain reason `{code}`"
