"""What the benchmarks share: a tuned private cluster (``cluster``), the generated population
(``population``), the real daemon process (``daemon``), what a sweep wrote and where its
database time went (``written``, ``statements``), timers and result files (``report``).

``bench.harness.engine`` is the only module of ``bench/`` besides ``bench.baseline`` that
reaches into the engine's internals (rule classes, the Engine, named queries, per-scenario
query arguments): when those move, the imports are fixed there.
"""
