"""genesys-bridge benchmark suite: ``python -m bench`` (or ``make bench``) runs every benchmark.

Each module ``bench/<name>.py`` is also runnable alone (``python -m bench.<name>``); it prints a table and
writes ``bench/results/<name>.json``. Methodology: ``docs/performance.md``.
"""
