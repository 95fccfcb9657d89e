"""The ``scenario-engine`` command line, one module per command (issue 19 item 4).

* ``app`` — the parser assembled from the commands, and the entry point (pyproject's
  ``scenario-engine = scenario_engine.cli:main``; ``python -m scenario_engine``);
* one module per command (``run``, ``demo``, ``migrate``, ``check_config``, ``sweep``,
  ``dispatch``, ``explain``, ``report``, ``forget``), each with ``register(subparsers)``
  declaring its arguments next to its body;
* ``output/`` — the one output layer: every command's data rendered as a table, CSV or JSON;
* ``failures`` — the table from an error to its exit code and one line;
* ``common`` — what the commands share (options, validation, the async frame).

Adding a command: a module with ``register`` and a body that hands its data to ``output.emit``,
listed in ``app.COMMANDS``.
"""

from __future__ import annotations

from scenario_engine.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
