"""The command line's one output layer: every command's stdout is written here.

A command computes its data (a sweep's result, a report, an explanation, counts of erased rows)
and hands it to a *rendering* of this package, which knows how that data reads as a table for a
person, as CSV and as JSON for a program (issue 19 item 4: before, output was formatted in
``cli.py``, ``outcomes/report.py`` and ``privacy.py``). A new command adds a rendering beside
these and calls ``emit``; it never prints its result itself.

Human renderings pass through ``terminal_safe`` (their values come from the platform's rows:
terminal.py); machine renderings are left exact.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from scenario_engine.terminal import terminal_safe

Format = Literal["table", "csv", "json"]
FORMATS: tuple[Format, ...] = ("table", "csv", "json")


def show(text: str) -> None:
    """A human rendering (a table, an explanation) on stdout. Its values come from the database,
    so nothing in it may drive the terminal; the layout's own newlines stay (terminal.py)."""
    print(terminal_safe(text, keep_newlines=True))


def value(v: object) -> str:
    """One value inside a human rendering: control characters and newlines escaped, so a value
    cannot forge a line of the layout either."""
    return terminal_safe(str(v))


def write_json(document: Any, *, default: Callable[[Any], Any] | None = None) -> None:
    print(json.dumps(document, indent=2, default=default))


def write_csv(fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=list(fieldnames))
    writer.writeheader()
    writer.writerows(rows)


def write_lines(lines: Iterable[str]) -> None:
    """Plain lines of a command's own words (migrate, dispatch), printed as they are."""
    for line in lines:
        print(line)


class Rendering(Protocol):
    """What a command's data looks like in each format it offers."""

    def table(self) -> Sequence[str]:
        """Blocks of text for a person, each shown with ``show``."""
        ...

    def csv(self) -> tuple[Sequence[str], Iterable[Mapping[str, Any]]]:
        """Field names and rows."""
        ...

    def json(self) -> Any:
        """The JSON document (``json_default`` serialises what JSON lacks, if anything)."""
        ...


@dataclass(frozen=True)
class Text:
    """A rendering that is only text for a person (explain without --json, forget)."""

    text: str

    def table(self) -> Sequence[str]:
        return [self.text]

    def csv(self) -> tuple[Sequence[str], Iterable[Mapping[str, Any]]]:
        raise NotImplementedError("this command has no CSV output")

    def json(self) -> Any:
        raise NotImplementedError("this command has no JSON output")


def emit(
    rendering: Rendering, fmt: Format = "table", *, json_default: Callable[[Any], Any] | None = None
) -> None:
    """Write ``rendering`` on stdout in ``fmt``."""
    if fmt == "json":
        write_json(rendering.json(), default=json_default)
    elif fmt == "csv":
        write_csv(*rendering.csv())
    else:
        for block in rendering.table():
            show(block)
