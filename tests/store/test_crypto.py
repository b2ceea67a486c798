"""Keys: loading from settings, malformed and missing keys, rotation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from bridge.config import Settings
from bridge.errors import StateKeyError
from bridge.store.crypto import KeyRing, SealError, generate_key, load_keys


def settings(**kw: object) -> Settings:
    return Settings(**kw)  # type: ignore[arg-type]


def test_key_from_env_setting_seals_and_opens() -> None:
    ring = load_keys(settings(state_key=SecretStr(generate_key())))
    assert ring.open(ring.seal(b"secret")) == b"secret"
    assert len(ring.fingerprints) == 1


def test_key_from_file_is_stripped(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "state.key"
    path.write_text(f"  {key}\n")
    ring = load_keys(settings(state_key_file=str(path)))
    assert ring.fingerprints == KeyRing.of(key).fingerprints


def test_missing_key_is_a_clear_error() -> None:
    with pytest.raises(StateKeyError, match="BRIDGE_STATE_KEY or BRIDGE_STATE_KEY_FILE"):
        load_keys(settings())


def test_both_key_and_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StateKeyError, match="only one"):
        load_keys(settings(state_key=SecretStr(generate_key()), state_key_file=str(tmp_path / "k")))


def test_unreadable_key_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(StateKeyError, match=r"BRIDGE_STATE_KEY_FILE .* cannot be read"):
        load_keys(settings(state_key_file=str(tmp_path / "absent.key")))


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-key",
        "c2hvcnQ=",  # valid base64, 5 bytes
        generate_key()[:-4],  # truncated
        "é" * 44,  # not ASCII
        "   ",
    ],
)
def test_malformed_key_names_the_setting_and_never_echoes_the_key(bad: str) -> None:
    with pytest.raises(StateKeyError) as info:
        load_keys(settings(state_key=SecretStr(bad)))
    assert "BRIDGE_STATE_KEY" in str(info.value)
    if bad.strip():
        assert bad not in str(info.value)
    # the original error (which may hold the text) is neither chained nor shown as context
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_malformed_old_key_names_its_position() -> None:
    with pytest.raises(StateKeyError, match="BRIDGE_STATE_OLD_KEYS item 2"):
        load_keys(settings(state_key=SecretStr(generate_key()), state_old_keys=[generate_key(), "nope"]))


def test_old_keys_parse_from_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    old1, old2 = generate_key(), generate_key()
    monkeypatch.setenv("BRIDGE_STATE_KEY", generate_key())
    monkeypatch.setenv("BRIDGE_STATE_OLD_KEYS", f"{old1}, {old2}")
    ring = load_keys(Settings.load())
    assert ring.fingerprints[1:] == KeyRing.of(old1, old2).fingerprints


def test_rotation_reads_old_records_and_seals_with_the_current_key() -> None:
    old, new = generate_key(), generate_key()
    sealed_by_old = KeyRing.of(old).seal(b"before rotation")
    rotated = KeyRing.of(new, old)
    assert rotated.open(sealed_by_old) == b"before rotation"
    resealed = rotated.seal(b"after rotation")
    assert KeyRing.of(new).open(resealed) == b"after rotation"
    with pytest.raises(SealError):
        KeyRing.of(old).open(resealed)


def test_wrong_key_cannot_open() -> None:
    with pytest.raises(SealError):
        KeyRing.of(generate_key()).open(KeyRing.of(generate_key()).seal(b"x"))


def test_tampered_token_cannot_open() -> None:
    ring = KeyRing.of(generate_key())
    token = ring.seal(b"x")
    with pytest.raises(SealError):
        ring.open(token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:])


def test_repr_shows_fingerprints_only() -> None:
    key = generate_key()
    ring = KeyRing.of(key)
    assert key not in repr(ring)
    assert ring.current_fingerprint in repr(ring)
