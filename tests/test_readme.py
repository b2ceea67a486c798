"""The README's contract examples are real: each JSON block decodes as a command or an event."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from genesys_bridge_client.contract.codec import Rejection, decode_command, decode_event

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```json\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_contract_examples() -> None:
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_each_example_decodes(block: str) -> None:
    body = block.encode()
    decoded = decode_command(body, max_bytes=1 << 20)
    if isinstance(decoded, Rejection):
        decode_event(body)  # raises if it is neither
