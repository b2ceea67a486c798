"""The keys that seal session records in the journal, and the sealing itself (docs/durability.md, "Keys").

Records are sealed with Fernet (AES-128-CBC plus HMAC-SHA256, from ``cryptography``): authenticated, so a
record that was tampered with or written under another key fails to open instead of decoding to garbage.
Rotation uses :class:`cryptography.fernet.MultiFernet`: the *current* key seals every new record, the current
key and every *old* key are tried to open one. A record sealed under an old key is rewritten under the
current key the next time its session is saved or re-journalled, after which the old key can be retired
(docs/durability.md, "Key rotation").

Records of the binary journal format (``BRIDGE_JOURNAL_FORMAT=2``, docs/durability.md "Journal format") are
sealed with AES-256-GCM instead, as bytes, which spares the base64 text a Fernet token is: most of a large
record's sealing cost (docs/performance.md). Its key is derived from the configured key with HKDF-SHA256 and a
random 16-byte salt drawn by each process (again in a forked child, and after 2^32 seals), and its nonce counts
the seals under that derived key: a nonce repeats under one key only if two processes draw the same salt
(about 2^-64 for 2^32 processes). The salt travels with the record, and a reader derives the same key from
each configured key in turn.

Keys come from settings only (``BRIDGE_STATE_KEY`` or ``BRIDGE_STATE_KEY_FILE``, plus
``BRIDGE_STATE_OLD_KEYS``). Error messages name the setting, never the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from bridge.config import Settings
from bridge.errors import StateKeyError

__all__ = ["KeyRing", "SealError", "generate_key", "load_keys"]

_GENERATE_HINT = "generate one with: genesys-bridge keygen"

#: Bytes of the salt a binary seal's key is derived with, and of its nonce; the GCM tag that ends it.
SALT_BYTES: Final = 16
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
#: What a binary seal adds to its plaintext: salt, nonce and tag.
BINARY_OVERHEAD: Final = SALT_BYTES + NONCE_BYTES + TAG_BYTES
#: Records sealed under one derived key before a process draws a new salt. Counter nonces never repeat, so
#: this is no nonce bound; it keeps the data under one GCM key far below its confidentiality bound.
RECORDS_PER_DERIVED_KEY: Final = 2**32
_HKDF_INFO: Final = b"genesys-bridge journal record seal v2"
#: Derived keys a reader keeps, per salt (one salt per writing process): a replay meets few.
_OPENERS_KEPT: Final = 1024


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


@dataclass(frozen=True, slots=True)
class _Key:
    fernet: Fernet = field(repr=False)
    raw: bytes = field(repr=False)
    fingerprint: str


def _parse_key(value: str, setting: str) -> _Key:
    text = value.strip()
    if not text:
        raise StateKeyError(f"{setting} is empty; {_GENERATE_HINT}")
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
        fernet = Fernet(text.encode("ascii"))
    except (ValueError, binascii.Error, UnicodeEncodeError):
        # ``from None``: the original exception may carry the offending text; the key must never be echoed.
        raise StateKeyError(f"{setting} is not a urlsafe-base64 32-byte key; {_GENERATE_HINT}") from None
    return _Key(fernet, raw, _fingerprint(raw))


def _derive(raw: bytes, salt: bytes) -> AESGCM:
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_HKDF_INFO).derive(raw))


class _BinarySealer:
    """The current key's derived AES-GCM key for this process, and the counter that gives each seal its nonce.

    One event loop uses it (no lock). A forked child draws a salt of its own before its first seal: it would
    otherwise count the same nonces under the same key as its parent.
    """

    __slots__ = ("_aead", "_limit", "_pid", "_raw", "_salt", "_sealed")

    def __init__(self, raw: bytes, *, limit: int) -> None:
        self._raw = raw
        self._limit = limit
        self._rekey()

    def _rekey(self) -> None:
        self._pid = os.getpid()
        self._salt = os.urandom(SALT_BYTES)
        self._aead = _derive(self._raw, self._salt)
        self._sealed = 0

    def seal(self, plaintext: bytes, clear: bytes) -> bytes:
        if self._sealed >= self._limit or self._pid != os.getpid():
            self._rekey()
        nonce = self._sealed.to_bytes(NONCE_BYTES, "big")
        self._sealed += 1
        return b"".join((self._salt, nonce, self._aead.encrypt(nonce, plaintext, clear)))


class _BinaryOpeners:
    """The derived keys of every configured key, per salt met, oldest salt forgotten first."""

    __slots__ = ("_by_salt", "_raw")

    def __init__(self, raw: tuple[bytes, ...]) -> None:
        self._raw = raw
        self._by_salt: dict[bytes, tuple[AESGCM, ...]] = {}

    def open(self, sealed: bytes, clear: bytes) -> bytes:
        salt, nonce = sealed[:SALT_BYTES], sealed[SALT_BYTES : SALT_BYTES + NONCE_BYTES]
        ciphertext = sealed[SALT_BYTES + NONCE_BYTES :]
        if len(ciphertext) < TAG_BYTES:
            raise SealError("this record is too short to be sealed")
        keys = self._by_salt.get(salt)
        if keys is None:
            if len(self._by_salt) >= _OPENERS_KEPT:
                del self._by_salt[next(iter(self._by_salt))]
            keys = self._by_salt[salt] = tuple(_derive(raw, salt) for raw in self._raw)
        for aead in keys:
            try:
                return aead.decrypt(nonce, ciphertext, clear)
            except InvalidTag:
                continue
        raise SealError("no configured state key opens this record")


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The current key (seals) and the old keys (open only). Build with :func:`load_keys` or :meth:`of`.

    ``fingerprints[0]`` is the current key's; the rest follow ``BRIDGE_STATE_OLD_KEYS`` order. The repr
    shows fingerprints only.
    """

    fingerprints: tuple[str, ...]
    _fernet: MultiFernet = field(repr=False, compare=False)
    _sealer: _BinarySealer = field(repr=False, compare=False)
    _openers: _BinaryOpeners = field(repr=False, compare=False)

    @classmethod
    def of(
        cls,
        current: str | SecretStr,
        *old: str | SecretStr,
        records_per_derived_key: int = RECORDS_PER_DERIVED_KEY,
    ) -> KeyRing:
        """A ring from key strings (tests and tools). Raises :class:`StateKeyError` for a malformed key."""
        return cls._of(
            [
                _parse_key(k.get_secret_value() if isinstance(k, SecretStr) else k, name)
                for k, name in zip(
                    (current, *old),
                    ("BRIDGE_STATE_KEY", *(f"BRIDGE_STATE_OLD_KEYS item {i + 1}" for i in range(len(old)))),
                    strict=True,
                )
            ],
            records_per_derived_key=records_per_derived_key,
        )

    @classmethod
    def _of(cls, keys: list[_Key], *, records_per_derived_key: int = RECORDS_PER_DERIVED_KEY) -> KeyRing:
        return cls(
            fingerprints=tuple(key.fingerprint for key in keys),
            _fernet=MultiFernet([key.fernet for key in keys]),
            _sealer=_BinarySealer(keys[0].raw, limit=records_per_derived_key),
            _openers=_BinaryOpeners(tuple(key.raw for key in keys)),
        )

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

    def seal_binary(self, plaintext: bytes, clear: bytes) -> bytes:
        """Encrypt ``plaintext`` and authenticate it together with ``clear`` (which the caller stores in clear
        beside it) under this process's key derived from the current key: salt, nonce, ciphertext and tag,
        :data:`BINARY_OVERHEAD` bytes longer than ``plaintext``."""
        return self._sealer.seal(plaintext, clear)

    def open_binary(self, sealed: bytes, clear: bytes) -> bytes:
        """Open what :meth:`seal_binary` made, under the current key or an old one.

        Raises:
            SealError: no key opens it (wrong key, or ``sealed`` or ``clear`` was altered).
        """
        return self._openers.open(sealed, clear)


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
    keys = [_parse_key(current, setting)]
    for i, old in enumerate(settings.state_old_keys):
        keys.append(_parse_key(old.get_secret_value(), f"BRIDGE_STATE_OLD_KEYS item {i + 1}"))
    return KeyRing._of(keys)
