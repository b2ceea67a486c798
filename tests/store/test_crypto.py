"""Keys: loading from settings, malformed and missing keys, rotation; the Fernet seal and the binary one."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from bridge.config import Settings
from bridge.errors import StateKeyError
from bridge.store.crypto import (
    BINARY_OVERHEAD,
    NONCE_BYTES,
    SALT_BYTES,
    KeyRing,
    SealError,
    generate_key,
    load_keys,
)


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


# --- the binary seal (journal format 2) ------------------------------------------------------------------


def test_a_binary_seal_opens_with_its_clear_part_and_adds_a_fixed_overhead() -> None:
    ring = KeyRing.of(generate_key())
    sealed = ring.seal_binary(b"the record", b"clear part")
    assert len(sealed) == len(b"the record") + BINARY_OVERHEAD
    assert b"the record" not in sealed
    assert ring.open_binary(sealed, b"clear part") == b"the record"


def test_another_process_with_the_same_key_opens_a_binary_seal() -> None:
    """It derives the same key from the salt the seal carries."""
    key = generate_key()
    assert KeyRing.of(key).open_binary(KeyRing.of(key).seal_binary(b"x", b"c"), b"c") == b"x"


def test_binary_rotation_reads_old_seals_and_seals_with_the_current_key() -> None:
    old, new = generate_key(), generate_key()
    sealed_by_old = KeyRing.of(old).seal_binary(b"before rotation", b"c")
    rotated = KeyRing.of(new, old)
    assert rotated.open_binary(sealed_by_old, b"c") == b"before rotation"
    resealed = rotated.seal_binary(b"after rotation", b"c")
    assert KeyRing.of(new).open_binary(resealed, b"c") == b"after rotation"
    with pytest.raises(SealError):
        KeyRing.of(old).open_binary(resealed, b"c")


@pytest.mark.parametrize("damage", ["ciphertext", "tag", "salt", "nonce", "clear", "short"])
def test_a_binary_seal_that_was_altered_or_opened_with_another_clear_part_does_not_open(damage: str) -> None:
    ring = KeyRing.of(generate_key())
    sealed = bytearray(ring.seal_binary(b"the record", b"clear part"))
    clear = b"clear part"
    match damage:
        case "ciphertext":
            sealed[SALT_BYTES + NONCE_BYTES] ^= 1
        case "tag":
            sealed[-1] ^= 1
        case "salt":
            sealed[0] ^= 1
        case "nonce":
            sealed[SALT_BYTES] ^= 1
        case "clear":
            clear = b"clear parT"
        case "short":
            sealed = sealed[: BINARY_OVERHEAD - 1]
    with pytest.raises(SealError):
        ring.open_binary(bytes(sealed), clear)
    with pytest.raises(SealError):
        KeyRing.of(generate_key()).open_binary(ring.seal_binary(b"x", b""), b"")  # the wrong key


def test_binary_seals_never_repeat_a_nonce_and_draw_a_new_salt_after_their_share() -> None:
    ring = KeyRing.of(generate_key(), records_per_derived_key=3)
    seals = [ring.seal_binary(b"same", b"") for _ in range(7)]
    salts = [seal[:SALT_BYTES] for seal in seals]
    nonces = [seal[SALT_BYTES : SALT_BYTES + NONCE_BYTES] for seal in seals]
    assert len(set(zip(salts, nonces, strict=True))) == 7
    assert [len(set(salts[i : i + 3])) for i in (0, 3)] == [1, 1]  # three seals under each derived key
    assert len(set(salts)) == 3
    assert all(ring.open_binary(seal, b"") == b"same" for seal in seals)
    assert KeyRing.of(generate_key()).seal_binary(b"", b"")[:SALT_BYTES] != salts[0]  # a salt per process


def test_a_forked_child_seals_under_a_salt_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child process inherits the parent's salt and count: it must not count the same nonces under the same
    key. (The process id is what changes across a fork.)"""
    ring = KeyRing.of(generate_key())
    parent = ring.seal_binary(b"x", b"")
    monkeypatch.setattr("os.getpid", lambda: -1)
    child = ring.seal_binary(b"x", b"")
    assert child[:SALT_BYTES] != parent[:SALT_BYTES]
    assert ring.open_binary(child, b"") == ring.open_binary(parent, b"") == b"x"
