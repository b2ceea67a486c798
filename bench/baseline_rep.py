"""One repetition of the baseline pipeline, run between the bridge's repetitions (interleaving).

The machine is shared and noisy, so the throughput benchmark alternates baseline and bridge repetitions
(B, R, B, R, B, R) and compares each pair. This wraps ``bench/baseline_pipeline.py`` (imported, not
copied): ``python -m bench.baseline_rep --commands M`` runs it once in its own process and prints its
figures as one JSON line (the last line of stdout). ``measure()`` does that from a benchmark script.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from bench.common import AMQP_URL

__all__ = ["main", "measure"]


async def measure(
    commands: int,
    sessions: int = 1000,
    prefetch: int = 256,
    timeout_s: float = 90.0,
    *,
    durable: bool = False,
    loop: str = "asyncio",
) -> dict[str, Any]:
    """Run one baseline repetition in a child process; returns its repetition dict (``commands_per_s`` …).

    ``durable``: with the broker work of the bridge's guarantees (``--durable``); ``loop``: the event loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.baseline_rep",
        f"--commands={commands}",
        f"--sessions={sessions}",
        f"--prefetch={prefetch}",
        f"--loop={loop}",
        *(["--durable"] if durable else []),
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"baseline repetition failed with exit code {proc.returncode}")
    rep: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return rep


def main() -> None:
    """Run ``bench.baseline_pipeline`` once (one repetition) and print its repetition as JSON."""
    from bench.baseline_pipeline import Options, run_on_loop

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=4000)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--prefetch", type=int, default=256)
    parser.add_argument("--durable", action="store_true")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    opts = Options(
        amqp_url=AMQP_URL,
        sessions=args.sessions,
        commands=args.commands,
        reps=1,
        prefetch=args.prefetch,
        max_seconds=60.0,
        durable=args.durable,
        loop=args.loop,
    )
    payload = run_on_loop(opts)
    if not payload["repetitions"]:
        sys.exit("baseline repetition did not finish")
    print(json.dumps(payload["repetitions"][0]), flush=True)


if __name__ == "__main__":
    main()
