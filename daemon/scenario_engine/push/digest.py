"""The digest message: several pushes for one mentor delivered as one (docs/CHANNELS.md).

The title names how many ("1 update" / "3 updates: …") in the mentor's language, with the
locale's CLDR plural categories through messages.py (Babel) — no plural rule is written here;
a language without its own title falls back along its tag, then to English. The body lists the
titles from a template (``push/templates/digest/body.txt``, per locale like the email
templates). Title and body keep the push size caps of templates.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from scenario_engine.messages import Rendering, locale_chain, render_message
from scenario_engine.push.templating import localised
from scenario_engine.templates import BODY_MAX_BYTES, truncate_utf8

# The digest's title per language, in the messages' ICU-like syntax (messages.py).
TITLES = {
    "en": "{count, plural, one {# update} other {# updates}}: {titles}",
    "nb": "{count, plural, one {# oppdatering} other {# oppdateringer}}: {titles}",
    "nn": "{count, plural, one {# oppdatering} other {# oppdateringar}}: {titles}",
}


def _title_locale(locale: str | None) -> str:
    return next((tag for tag in locale_chain(locale) if tag in TITLES), "en")


def digest_message(titles: Sequence[str], locale: str | None = None) -> tuple[str, str]:
    """The title and body of one digest naming each underlying push by its title."""
    tag = _title_locale(locale)
    title = render_message(
        TITLES[tag], {"count": len(titles), "titles": ", ".join(titles)}, Rendering(tag, None, {}), title=True
    )
    body = localised("digest", "body.txt", locale).render(titles=list(titles)).strip()
    return title, truncate_utf8(body, BODY_MAX_BYTES)
