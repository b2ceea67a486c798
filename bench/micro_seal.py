"""What sealing a journal record costs, and what another seal would: ``python -m bench.micro_seal``.

Not part of ``python -m bench``; in-process, no broker, under a minute. It seals the JSON of the two
records ``bench.micro_journal`` builds (a young session's, and a busy one's with its whole history) in
several ways, alternated round by round (``--rounds``, default 7; ``--seals`` per way and round, default
2,000), and prints µs per seal as median [min–max] over the rounds:

- ``KeyRing.seal``: what the daemon does, a Fernet token (AES-128-CBC and HMAC-SHA256, base64url);
- AES-256-GCM, the ciphertext as bytes: what a journal body that carries bytes would cost;
- AES-256-GCM, then base64: the same cipher in a JSON body, which carries text;
- base64 alone (standard and url-safe, Python's ``base64``), on bytes the size of the Fernet input.

None of the alternatives is used by the bridge: this sizes a lever (docs/performance.md).
"""

from __future__ import annotations

import argparse
import base64
import os
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.common import us_per_call, write_result
from bench.micro_journal import record, young_record
from bench.stats import render_table, spread
from bridge.store.crypto import KeyRing, generate_key

__all__ = ["main"]

_NONCE_BYTES = 12


def _ways(plain: bytes, keys: KeyRing) -> dict[str, Callable[[], Any]]:
    gcm = AESGCM(AESGCM.generate_key(bit_length=256))

    def gcm_bytes() -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + gcm.encrypt(nonce, plain, None)

    return {
        "KeyRing.seal (Fernet, the daemon's)": lambda: keys.seal(plain),
        "AES-256-GCM, bytes": gcm_bytes,
        "AES-256-GCM, then base64": lambda: base64.b64encode(gcm_bytes()).decode("ascii"),
        "base64 alone": lambda: base64.b64encode(plain),
        "base64url alone": lambda: base64.urlsafe_b64encode(plain),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seals", type=int, default=2_000, help="seals per way and round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    keys = KeyRing.of(generate_key())
    busy = record()
    plains = {"young": young_record(busy).sealed_json(), "busy": busy.sealed_json()}
    ways = {label: _ways(plain, keys) for label, plain in plains.items()}
    samples: dict[str, dict[str, list[float]]] = {label: {way: [] for way in ways[label]} for label in ways}
    for _ in range(args.rounds):
        for label, by_way in ways.items():
            for way, call in by_way.items():
                samples[label][way].append(us_per_call(call, args.seals))
    figures = {label: {way: spread(values) for way, values in by_way.items()} for label, by_way in samples.items()}
    sizes = {label: len(plain) for label, plain in plains.items()}
    print(f"records of {sizes['young']:,} and {sizes['busy']:,} bytes of JSON; {args.seals:,} seals per way, "
          f"{args.rounds} rounds alternated; µs per seal, median [min–max]")  # fmt: skip
    rows = [[way, *(figures[label][way].fmt(1) for label in figures)] for way in figures["young"]]
    print(render_table(["way", "young", "busy"], rows))
    write_result(
        "micro_seal",
        {
            "seals": args.seals,
            "rounds": args.rounds,
            "record_bytes": sizes,
            "us_per_seal": {
                label: {way: value.as_json() for way, value in by_way.items()} for label, by_way in figures.items()
            },
        },
    )


if __name__ == "__main__":
    main()
