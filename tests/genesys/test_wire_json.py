"""Genesys' JSON decoded: unpaired surrogates written as escapes become U+FFFD (protocol reference §3.2)."""

from __future__ import annotations

import json

import pytest
from pydantic_core import to_json

from bridge.genesys import wire_json

REPLACEMENT = "\ufffd"


def test_text_cut_inside_an_emoji_ends_with_the_replacement_character() -> None:
    # "Thanks 😀" cut after the emoji's first UTF-16 unit, as a system counting UTF-16 units cuts it.
    value = wire_json.loads('{"text":"Thanks \\ud83d","id":"ab\\udc00cd"}')
    assert value == {"text": f"Thanks {REPLACEMENT}", "id": f"ab{REPLACEMENT}cd"}
    to_json(value)  # the bridge can write it again (pydantic refuses a surrogate)


def test_keys_lists_and_nested_values_are_repaired_and_numbers_kept() -> None:
    value = wire_json.loads(b'{"\\uDFFF":[1.5,"\\ud800\\ud800",{"k":"\\udbff!"}],"n":12345678901234567890}')
    assert value == {REPLACEMENT: [1.5, REPLACEMENT * 2, {"k": f"{REPLACEMENT}!"}], "n": 12345678901234567890}


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le", "utf-32"])
def test_bytes_in_every_encoding_json_allows_are_repaired(encoding: str) -> None:
    data = '{"text":"cut \\ud83d"}'.encode(encoding)
    assert wire_json.loads(data) == {"text": f"cut {REPLACEMENT}"}


def test_a_pair_written_as_two_escapes_is_kept() -> None:
    assert wire_json.loads('["\\ud83d\\ude00", "\\ud83d\\ude00\\ud83d"]') == ["😀", f"😀{REPLACEMENT}"]


def test_an_escaped_backslash_before_u_d_is_text_not_an_escape() -> None:
    assert wire_json.loads('{"path":"C:\\\\ud800"}') == {"path": "C:\\ud800"}


@pytest.mark.parametrize("data", ['{"text":"plain ü 😀"}', b'{"text":"plain \xc3\xbc"}', "[]", "null"])
def test_json_without_surrogates_decodes_as_json_loads_does(data: str | bytes) -> None:
    assert wire_json.loads(data) == json.loads(data)


@pytest.mark.parametrize("data", ["{", "", '{"a":"\\ud83d"'])
def test_what_is_not_json_raises_value_error(data: str) -> None:
    with pytest.raises(ValueError):
        wire_json.loads(data)
