"""The digest message: several pushes for one mentor delivered as one (docs/CHANNELS.md).

Its wording lives in templates (``push/templates/digest/{title,body}.txt``, plural-aware:
"1 update" / "3 updates: …"), looked up per locale like the email templates, so localised
wording slots in as a template, not as code. Title and body keep the push size caps of
templates.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import jinja2

from scenario_engine.templates import BODY_MAX_BYTES, ELLIPSIS, TITLE_MAX_BYTES, utf8_len

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("scenario_engine.push", "templates"),
    autoescape=False,  # plain text: a push title and body, never markup
    undefined=jinja2.StrictUndefined,
)


def _names(locale: str | None, part: str) -> list[str]:
    names = []
    if locale:
        tag = locale.replace("_", "-")
        names.append(f"digest/{tag}/{part}.txt")
        if "-" in tag:
            names.append(f"digest/{tag.split('-', 1)[0]}/{part}.txt")
    names.append(f"digest/{part}.txt")
    return names


def _cap(text: str, max_bytes: int) -> str:
    if utf8_len(text) <= max_bytes:
        return text
    budget = max_bytes - utf8_len(ELLIPSIS)
    out = text.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    return out + ELLIPSIS


def digest_message(titles: Sequence[str], locale: str | None = None) -> tuple[str, str]:
    """The title and body of one digest naming each underlying push by its title."""
    values = {"count": len(titles), "titles": list(titles)}
    title = TEMPLATES.select_template(_names(locale, "title")).render(values).strip()
    body = TEMPLATES.select_template(_names(locale, "body")).render(values).strip()
    return _cap(title, TITLE_MAX_BYTES), _cap(body, BODY_MAX_BYTES)
