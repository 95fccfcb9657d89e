"""Shared by tests/unit/test_status_page.py and tests/process/test_status_page.py."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from html.parser import HTMLParser

from scenario_engine.runtime.state import RuntimeState
from scenario_engine.web.status_chart import (
    DecisionChart,
    chart_window,
)
from scenario_engine.web.status_page import render_page
from scenario_engine.web.status_view import (
    StatusPage,
    StoredData,
    build_page,
)

SCENARIOS = ("inactivity", "milestone", "certification_expiry", "anniversary")


# --- a small DOM for what Chromium dumps ---------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text_parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join("".join(self._texts()).split())

    def _texts(self) -> list[str]:
        out = list(self.text_parts)
        for child in self.children:
            out.extend(child._texts())
        return out

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self, tag: str | None = None) -> list[Node]:
        found = [self] if tag is None or self.tag == tag else []
        for child in self.children:
            found.extend(child.iter(tag))
        return found

    def by_id(self, ident: str) -> Node:
        for node in self.iter():
            if node.attrs.get("id") == ident:
                return node
        raise AssertionError(f"no element with id={ident!r} in the page")


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].text_parts.append(data)


def parse_dom(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


# --- the view model, pure: one test per bug the old page had ------------------------------------

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)


def page_for(state: RuntimeState, stored: StoredData | None = None) -> tuple[StatusPage, Node]:
    view = build_page(state, stored or StoredData(DecisionChart(chart_window(NOW.date()))), NOW)
    return view, parse_dom(render_page(view))
