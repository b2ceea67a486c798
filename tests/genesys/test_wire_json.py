"""Genesys' JSON decoded: unpaired surrogates written as escapes become U+FFFD (protocol reference §3.2)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


@pytest.mark.parametrize("prefix", [b"", b"\xef\xbb\xbf"])
def test_a_surrogate_encoded_as_if_it_were_a_character_is_replaced(prefix: bytes) -> None:
    # Not UTF-8, but json.loads lets it through (its decoder passes surrogates).
    assert wire_json.loads(prefix + b'{"text":"cut \xed\xa0\xbd"}') == {"text": f"cut {REPLACEMENT}"}


def test_raw_surrogates_in_utf_16_are_replaced() -> None:
    data = '{"text":"cut \ud83d"}'.encode("utf-16", "surrogatepass")
    assert wire_json.loads(data) == {"text": f"cut {REPLACEMENT}"}


def test_a_surrogate_in_text_itself_is_replaced() -> None:
    assert wire_json.loads('{"text":"cut \ud83d"}') == {"text": f"cut {REPLACEMENT}"}


def test_characters_that_share_a_lead_byte_with_surrogates_are_kept() -> None:
    assert wire_json.loads('{"text":"한국어 \\ud83d"}'.encode()) == {"text": f"한국어 {REPLACEMENT}"}
    assert wire_json.loads('{"text":"한국어"}'.encode()) == {"text": "한국어"}


def test_numbers_survive_the_repair() -> None:
    value = wire_json.loads('[1e400, -0.0, NaN, 12345678901234567890, 0.1, "\\ud800"]')
    assert value[0] == float("inf")
    assert str(value[1]) == "-0.0"
    assert value[2] != value[2]
    assert value[3:] == [12345678901234567890, 0.1, REPLACEMENT]


@settings(max_examples=300)
@given(st.lists(st.integers(min_value=0, max_value=0xFFFF), max_size=12), st.booleans())
def test_any_utf_16_code_units_decode_to_text_the_bridge_can_write(units: list[int], as_bytes: bool) -> None:
    literal = "".join(f"\\u{unit:04x}" for unit in units)
    data = f'{{"{literal}":["{literal}"]}}'
    value = wire_json.loads(data.encode() if as_bytes else data)
    to_json(value)
    expected = json.loads(data)
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(expected, ensure_ascii=False)):
        assert value == expected  # nothing to repair: as json.loads decodes it


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
