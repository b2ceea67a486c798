"""The keys that seal session records in the journal, and the sealing itself (docs/durability.md, "Keys").

Records are sealed with Fernet (AES-128-CBC plus HMAC-SHA256, from ``cryptography``): authenticated, so a
record that was tampered with or written under another key fails to open instead of decoding to garbage.
Rotation uses :class:`cryptography.fernet.MultiFernet`: the *current* key seals every new record, the current
key and every *old* key are tried to open one. A record sealed under an old key is rewritten under the
current key the next time its session is saved or re-journalled, after which the old key can be retired
(docs/durability.md, "Key rotation").

Keys come from settings only (``BRIDGE_STATE_KEY`` or ``BRIDGE_STATE_KEY_FILE``, plus
``BRIDGE_STATE_OLD_KEYS``). Error messages name the setting, never the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from bridge.config import Settings
from bridge.errors import StateKeyError

__all__ = ["KeyRing", "SealError", "generate_key", "load_keys"]

_GENERATE_HINT = "generate one with: genesys-bridge keygen"


class SealError(Exception):
    """A sealed payload could not be opened with any configured key (wrong key, or tampered bytes).

    Internal to the store: the journal turns it into a skipped record, or into :class:`StateKeyError` when no
    record at all opens.
    """


def generate_key() -> str:
    """A fresh urlsafe-base64 32-byte key, as ``BRIDGE_STATE_KEY`` expects (tests, ``genesys-bridge`` tooling)."""
    return Fernet.generate_key().decode("ascii")


def _fingerprint(raw: bytes) -> str:
    # A short SHA-256 of a 256-bit random key reveals nothing useful about the key, and lets an operator
    # check which key a replica runs with (logs, docs/durability.md) without ever printing the key.
    return hashlib.sha256(raw).hexdigest()[:12]


def _parse_key(value: str, setting: str) -> tuple[Fernet, str]:
    text = value.strip()
    if not text:
        raise StateKeyError(f"{setting} is empty; {_GENERATE_HINT}")
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
        fernet = Fernet(text.encode("ascii"))
    except (ValueError, binascii.Error, UnicodeEncodeError):
        # ``from None``: the original exception may carry the offending text; the key must never be echoed.
        raise StateKeyError(f"{setting} is not a urlsafe-base64 32-byte key; {_GENERATE_HINT}") from None
    return fernet, _fingerprint(raw)


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The current key (seals) and the old keys (open only). Build with :func:`load_keys` or :meth:`of`.

    ``fingerprints[0]`` is the current key's; the rest follow ``BRIDGE_STATE_OLD_KEYS`` order. The repr
    shows fingerprints only.
    """

    fingerprints: tuple[str, ...]
    _fernet: MultiFernet = field(repr=False, compare=False)

    @classmethod
    def of(cls, current: str | SecretStr, *old: str | SecretStr) -> KeyRing:
        """A ring from key strings (tests and tools). Raises :class:`StateKeyError` for a malformed key."""
        parsed = [
            _parse_key(k.get_secret_value() if isinstance(k, SecretStr) else k, name)
            for k, name in zip(
                (current, *old),
                ("BRIDGE_STATE_KEY", *(f"BRIDGE_STATE_OLD_KEYS item {i + 1}" for i in range(len(old)))),
                strict=True,
            )
        ]
        return cls(fingerprints=tuple(fp for _, fp in parsed), _fernet=MultiFernet([f for f, _ in parsed]))

    @property
    def current_fingerprint(self) -> str:
        """Fingerprint of the key that seals new records."""
        return self.fingerprints[0]

    def seal(self, plaintext: bytes) -> str:
        """Encrypt and authenticate ``plaintext`` under the current key; returns the Fernet token text."""
        return self._fernet.encrypt(plaintext).decode("ascii")

    def open(self, token: str) -> bytes:
        """Decrypt a Fernet token with the current key, then each old key.

        Raises:
            SealError: no key opens it (wrong key, or the bytes were altered).
        """
        try:
            return self._fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise SealError("no configured state key opens this record") from None


def load_keys(settings: Settings) -> KeyRing:
    """Build the key ring from ``BRIDGE_STATE_KEY`` or ``BRIDGE_STATE_KEY_FILE`` and ``BRIDGE_STATE_OLD_KEYS``.

    Call once at start, before any connection opens, so a bad key is a startup error.

    Raises:
        StateKeyError: no key is set, both are set, the key file cannot be read, or any key is malformed.
            The message names the setting and never contains key material.
    """
    if settings.state_key is not None and settings.state_key_file is not None:
        raise StateKeyError("set only one of BRIDGE_STATE_KEY and BRIDGE_STATE_KEY_FILE")
    if settings.state_key is not None:
        current, setting = settings.state_key.get_secret_value(), "BRIDGE_STATE_KEY"
    elif settings.state_key_file is not None:
        path = Path(settings.state_key_file)
        try:
            current = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise StateKeyError(f"BRIDGE_STATE_KEY_FILE {str(path)!r} cannot be read: {type(exc).__name__}") from None
        setting = f"BRIDGE_STATE_KEY_FILE ({str(path)!r})"
    else:
        raise StateKeyError(
            "no state key: set BRIDGE_STATE_KEY or BRIDGE_STATE_KEY_FILE; the session journal encrypts "
            f"session tokens with it; {_GENERATE_HINT}"
        )
    fernet, fp = _parse_key(current, setting)
    fernets, fps = [fernet], [fp]
    for i, old in enumerate(settings.state_old_keys):
        old_fernet, old_fp = _parse_key(old.get_secret_value(), f"BRIDGE_STATE_OLD_KEYS item {i + 1}")
        fernets.append(old_fernet)
        fps.append(old_fp)
    return KeyRing(fingerprints=tuple(fps), _fernet=MultiFernet(fernets))
