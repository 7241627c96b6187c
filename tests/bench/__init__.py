"""The benchmark suite: ``python -m tests.bench [--quick] [--out DIR] [--cases a,b] [--rounds N]``.

Every case measures its sides in interleaved rounds (A, B, A, B, ...), each side
in a fresh vhost with fresh worker processes, and judges the median of the
paired ratios against the project's targets. See ``tests/bench/README.md``.
"""
