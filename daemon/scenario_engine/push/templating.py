"""The push package's Jinja2 templates (``push/templates/``): the email parts and the digest
body share one environment and one per-locale lookup, so that a locale's wording slots in the
same way for both, without a code change.

Autoescaping is on for ``.html`` templates only: an email's HTML part can never carry markup
from a display name, while plain-text parts and pushes are text, never escaped.
"""

from __future__ import annotations

import jinja2

from scenario_engine.messages import locale_chain

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("scenario_engine.push", "templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


def template_names(folder: str, name: str, locale: str | None) -> list[str]:
    """Where a template is looked up, most specific first: ``folder/nb-NO/name``,
    ``folder/nb/name``, then the default ``folder/name``."""
    return [*(f"{folder}/{tag}/{name}" for tag in locale_chain(locale)), f"{folder}/{name}"]


def localised(folder: str, name: str, locale: str | None) -> jinja2.Template:
    """The most specific template there is for the locale."""
    return TEMPLATES.select_template(template_names(folder, name, locale))
