"""The human status page (``GET /`` on the status port): Jinja2 templates over a typed view model.

``status_view.build_page`` decides what the page says (``StatusPage``); ``status_chart``
computes the chart's geometry; the templates in ``templates/`` (package data, shipped in
the wheel) only lay it out. Autoescaping is on for every template: no value reaches the
page unescaped. No JavaScript, no external assets: the page works offline, behind any
proxy, under the strict CSP of ``status.PAGE_CSP``.
"""

from __future__ import annotations

import datetime as dt
from functools import cache

import jinja2

from scenario_engine.web.status_chart import number, scenario_label
from scenario_engine.web.status_view import StatusPage, format_time, human_duration, relative

TEMPLATE = "status.html.j2"


def _px(value: float) -> str:
    """An SVG coordinate: two decimals at most, no trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("scenario_engine.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt field fails the render (and the tests)
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        number=number,
        duration=human_duration,
        scenario=scenario_label,
        px=_px,
        utc=format_time,
        ago=relative,  # {{ when | ago(page.now) }}
        iso=lambda when: when.isoformat(),
        clock=lambda when: when.astimezone(dt.UTC).strftime("%H:%M:%S"),
        day=lambda when: when.astimezone(dt.UTC).strftime("%d %b %Y"),
        weekday=lambda day: day.strftime("%a %d %b %Y"),
    )
    return env


def render_page(page: StatusPage) -> str:
    """The whole page as one HTML document."""
    return environment().get_template(TEMPLATE).render(page=page)
