"""Development tooling, apart from the daemon (issue 19 item 5): a private PostgreSQL cluster
(``embedded``), the demo and its history (``demo``, ``demo_history``), and the schema snapshot
behind ``make schema`` (``snapshot``).

No production module imports this package: the daemon runs without it, and the import-linter
contract ``dev-tooling`` (.importlinter) fails ``make lint`` on such an import. The one door is
the ``demo`` command (cli/demo.py), which imports it inside the command's body only. The tests
and the benchmarks use it freely.
"""
