"""Messages in the mentor's language: per-locale templates, CLDR plurals, numbers and dates.

A message template here is ICU MessageFormat-ish: ``{name}``, ``{name, number}``,
``{name, date}`` and ``{name, plural, one {# day} other {# days}}`` (``=0 {...}`` matches one
value exactly; ``#`` is the number). The plural category, the numbers and the dates come from
Babel (CLDR) for the locale — no plural rule is written here. The parser is the only
hand-written part: ICU's syntax, not its rules.

The text of a rule for a mentor is chosen along the chain mentor locale → organisation locale
→ the rules file's ``default_locale``; in each locale: the rules file's
``[messages.<locale>.<rule>]``, then (in the ``default_locale`` only) the rule's own
``title``/``body`` if the file sets them, then the built-in text of the rule's scenario type.
A rule's own title and body keep today's Python-format syntax and rendering exactly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import zoneinfo
from collections.abc import Mapping, Set
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_decimal

from scenario_engine.templates import BODY_MAX_BYTES, TITLE_MAX_BYTES, clean_text, render, truncate_utf8

# The built-in texts of every built-in scenario type, per locale: (title, body).
BUILTIN: dict[str, dict[str, tuple[str, str]]] = {
    "en": {
        "inactivity": (
            "We miss you",
            "It has been {days_inactive, plural, one {# day} other {# days}} since your last activity. "
            "Your mentees would love to hear from you.",
        ),
        "milestone": (
            "Milestone reached!",
            "You reached {threshold_text} {metric} this {period_label}. Thank you!",
        ),
        "certification_expiry": (
            "Certification expiring soon",
            "Your {certification_type} certification expires in "
            "{days_left, plural, =0 {less than a day} one {# day} other {# days}} ({expires_on, date}).",
        ),
        "anniversary": (
            "Happy anniversary!",
            "{years, plural, one {# year} other {# years}} as a peer mentor, {display_name}. "
            "Thank you for everything you do!",
        ),
    },
    "nb": {
        "inactivity": (
            "Vi savner deg",
            "Det er {days_inactive, plural, one {# dag} other {# dager}} siden sist du registrerte "
            "aktivitet. Mentorene dine vil gjerne høre fra deg.",
        ),
        "milestone": (
            "Milepæl nådd!",
            "Du har nådd {threshold_text} {metric} i {period_label}. Takk!",
        ),
        "certification_expiry": (
            "Sertifisering går snart ut",
            "Sertifiseringen din i {certification_type} går ut om "
            "{days_left, plural, =0 {mindre enn en dag} one {# dag} other {# dager}} ({expires_on, date}).",
        ),
        "anniversary": (
            "Gratulerer med jubileet!",
            "{years, plural, one {# år} other {# år}} som likeperson, {display_name}. Takk for alt du gjør!",
        ),
    },
    "nn": {
        "inactivity": (
            "Vi saknar deg",
            "Det er {days_inactive, plural, one {# dag} other {# dagar}} sidan du sist registrerte "
            "aktivitet. Mentorane dine vil gjerne høyre frå deg.",
        ),
        "milestone": (
            "Milepæl nådd!",
            "Du har nådd {threshold_text} {metric} i {period_label}. Takk!",
        ),
        "certification_expiry": (
            "Sertifiseringa går snart ut",
            "Sertifiseringa di i {certification_type} går ut om "
            "{days_left, plural, =0 {mindre enn ein dag} one {# dag} other {# dagar}} ({expires_on, date}).",
        ),
        "anniversary": (
            "Gratulerer med jubileet!",
            "{years, plural, one {# år} other {# år}} som likeperson, {display_name}. Takk for alt du gjer!",
        ),
    },
}

# Display names of placeholder values per locale; the raw value is the last fallback.
DISPLAY_NAMES: dict[str, dict[str, dict[str, str]]] = {
    "en": {
        "certification_type": {"first_aid": "first aid", "driving": "driving", "cpr": "CPR"},
        "metric": {"sessions": "sessions", "hours": "hours", "contacts": "contacts"},
        "period_label": {"year": "year", "all time": "all time"},
    },
    "nb": {
        "certification_type": {"first_aid": "førstehjelp", "driving": "kjøring", "cpr": "HLR"},
        "metric": {"sessions": "samtaler", "hours": "timer", "contacts": "kontakter"},
        "period_label": {"year": "år", "all time": "alt"},
    },
    "nn": {
        "certification_type": {"first_aid": "førstehjelp", "driving": "køyring", "cpr": "HLR"},
        "metric": {"sessions": "samtalar", "hours": "timar", "contacts": "kontaktar"},
        "period_label": {"year": "år", "all time": "alt"},
    },
}

# The sample numbers check-config renders every template with (docs/PROGRAMMES.md).
SAMPLE_NUMBERS = (0, 1, 2, 5, 21, 101)


class MessageError(ValueError):
    """A template that cannot be parsed or names an unknown placeholder."""


# --- the parser ----------------------------------------------------------------------------

Node = str | tuple[str, str, str, dict[str, list[Any]]]  # text | (arg, name, kind, branches)


@lru_cache(maxsize=4096)
def parse(text: str) -> list[Node]:
    """The template's nodes. Cached: a sweep renders the same few templates for every push (two
    parses per push were a third of a first sweep's Python time); the rules file holds a bounded
    set of texts, and a reload's new ones push the old out. Callers read the nodes, never change them."""
    nodes, end = _parse(text, 0, in_plural=False)
    if end != len(text):
        raise MessageError(f"unbalanced '}}' at offset {end}")
    return nodes


def _parse(text: str, i: int, *, in_plural: bool) -> tuple[list[Node], int]:
    nodes: list[Node] = []
    buf: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == "}":
            break
        if ch == "#" and in_plural:
            nodes.append("".join(buf))
            buf = []
            nodes.append(("arg", "#", "#", {}))
            i += 1
            continue
        if ch != "{":
            buf.append(ch)
            i += 1
            continue
        nodes.append("".join(buf))
        buf = []
        node, i = _arg(text, i + 1)
        nodes.append(node)
    nodes.append("".join(buf))
    return [n for n in nodes if n != ""], i


def _arg(text: str, i: int) -> tuple[Node, int]:
    close = _find(text, i, "}")
    comma = _find(text, i, ",")
    if comma == -1 or comma > close:
        name = text[i:close].strip()
        _check_name(name)
        return ("arg", name, "", {}), close + 1
    name = text[i:comma].strip()
    _check_name(name)
    j = comma + 1
    rest_close = _find(text, j, "}")
    rest_comma = _find(text, j, ",")
    if rest_comma == -1 or rest_comma > rest_close:
        kind = text[j:rest_close].strip()
        if kind not in ("number", "date"):
            raise MessageError(f"{{{name}, {kind}}}: the kind must be number, date or plural")
        return ("arg", name, kind, {}), rest_close + 1
    kind = text[j:rest_comma].strip()
    if kind != "plural":
        raise MessageError(f"{{{name}, {kind}, …}}: only plural takes branches")
    j = rest_comma + 1
    branches: dict[str, list[Any]] = {}
    while True:
        while j < len(text) and text[j].isspace():
            j += 1
        if j >= len(text):
            raise MessageError(f"{{{name}, plural, …}} is not closed")
        if text[j] == "}":
            j += 1
            break
        start = j
        while j < len(text) and text[j] not in "{ }":
            j += 1
        key = text[start:j]
        while j < len(text) and text[j].isspace():
            j += 1
        if j >= len(text) or text[j] != "{":
            raise MessageError(f"{{{name}, plural, …}}: branch {key!r} needs {{text}}")
        sub, j = _parse(text, j + 1, in_plural=True)
        if j >= len(text):
            raise MessageError(f"{{{name}, plural, …}}: branch {key!r} is not closed")
        branches[key] = sub
        j += 1
    if "other" not in branches:
        raise MessageError(f"{{{name}, plural, …}} needs an 'other' branch")
    for key in branches:
        if key not in ("zero", "one", "two", "few", "many", "other") and not key.startswith("="):
            raise MessageError(f"{{{name}, plural, …}}: unknown branch {key!r}")
    return ("arg", name, "plural", branches), j


def _find(text: str, i: int, ch: str) -> int:
    found = text.find(ch, i)
    if ch == "}" and found == -1:
        raise MessageError("a '{' is not closed")
    return found


def _check_name(name: str) -> None:
    if not name.isidentifier():
        raise MessageError(f"placeholders must be named, e.g. {{days_inactive}}; got {{{name}}}")


def placeholders(nodes: list[Node]) -> set[str]:
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, tuple):
            if node[1] != "#":
                out.add(node[1])
            for sub in node[3].values():
                out |= placeholders(sub)
    return out


def check_message(text: str, known: Set[str]) -> None:
    """Parse, and reject a placeholder the rule's messages cannot have."""
    unknown = placeholders(parse(text)) - set(known)
    if unknown:
        raise MessageError(
            "unknown placeholder "
            + ", ".join("{" + u + "}" for u in sorted(unknown))
            + "; this rule's placeholders are: "
            + ", ".join("{" + k + "}" for k in sorted(known))
        )


def locale_chain(name: str | None) -> list[str]:
    """A locale tag and its language, most specific first ("nb_NO" → ["nb-NO", "nb"]; none: []):
    where per-locale texts and templates are looked up before the default."""
    if not name:
        return []
    tag = name.replace("_", "-")
    return [tag, tag.split("-", 1)[0]] if "-" in tag else [tag]


@cache
def locale(name: str) -> Locale:
    """A Babel locale; an unknown one is a MessageError (check-config rejects it)."""
    try:
        return Locale.parse(name)
    except (UnknownLocaleError, ValueError) as exc:
        raise MessageError(f"unknown locale {name!r}: {exc}") from None


# --- rendering -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendering:
    locale: str
    timezone: str | None
    display: Mapping[str, Mapping[str, str]]  # key → raw value → display name


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    try:
        return float(str(value)) if "." in str(value) else int(str(value))
    except ValueError:
        return None


def _value(name: str, value: Any, kind: str, how: Rendering) -> str:
    locale(how.locale)  # an unknown locale fails whatever the value (render_message: as written)
    if kind == "date":
        return _date(str(value), how.timezone, how.locale)
    number = _number(value)
    if kind == "number" or (kind == "" and number is not None and not isinstance(value, str)):
        return _decimal(repr(number), how.locale) if number is not None else str(value)
    text = str(value)
    return how.display.get(name, {}).get(text, text)


# A sweep writes the same few numbers and dates in the same few locales over and over: Babel's
# formatting was a quarter of the rendering time of a first sweep (issue 18). Keyed by the
# number's repr (1 and 1.0, 0.0 and -0.0 are equal keys but may not format alike).
@lru_cache(maxsize=8192)
def _decimal(number: str, loc: str) -> str:
    """``number``: the repr of an int or a float (which tells 1 from 1.0 and -0.0 from 0.0)."""
    value = float(number) if any(c in number for c in ".enainf") else int(number)
    return str(format_decimal(value, locale=locale(loc)))


@lru_cache(maxsize=8192)
def _date(value: str, timezone: str | None, loc: str) -> str:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is not None and timezone:
        with contextlib.suppress(zoneinfo.ZoneInfoNotFoundError, ValueError):
            parsed = parsed.astimezone(zoneinfo.ZoneInfo(timezone))
    return str(format_date(parsed.date(), format="long", locale=locale(loc)))


def _render(nodes: list[Node], context: Mapping[str, Any], how: Rendering, count: Any = None) -> str:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
            continue
        _, name, kind, branches = node
        if name == "#":
            out.append(_value("#", count, "number", how))
            continue
        if name not in context:
            out.append("{" + name + "}")
            continue
        value = context[name]
        if kind != "plural":
            out.append(_value(name, value, kind, how))
            continue
        n = _number(value)
        if n is None:
            out.append(str(value))
            continue
        exact = f"={n}"
        category = locale(how.locale).plural_form(n)
        branch = branches.get(exact) or branches.get(category) or branches["other"]
        out.append(_render(branch, context, how, n))
    return "".join(out)


def render_message(text: str, context: Mapping[str, Any], how: Rendering, *, title: bool) -> str:
    """Fill an ICU-ish template; a failure to parse leaves the text as written (checked at load)."""
    try:
        filled = _render(parse(text), context, how)
    except MessageError:
        filled = text
    cleaned = clean_text(filled, allow_newline=not title)
    return truncate_utf8(cleaned, TITLE_MAX_BYTES if title else BODY_MAX_BYTES)


# --- choosing the text --------------------------------------------------------------------


@dataclass(frozen=True)
class Chosen:
    title: str
    body: str
    locale: str  # the locale whose text was used
    source: str  # "rules file", "rule", "built-in"
    legacy: bool  # the rule's own title/body: today's Python-format rendering


def choose(
    rule_name: str,
    scenario_type: str,
    own_texts: tuple[str, str] | None,
    chain: list[str],
    default_locale: str,
    file_messages: Mapping[str, Mapping[str, Any]],
) -> Chosen | None:
    """The first text along ``chain`` (mentor, organisation, default locale), or None when no
    locale of the chain has one (the caller falls back to the rule's own text)."""
    for loc in dict.fromkeys(c for c in chain if c):
        texts = file_messages.get(loc, {}).get(rule_name)
        if texts is not None:
            return Chosen(texts.title, texts.body, loc, "rules file", legacy=False)
        if loc == default_locale and own_texts is not None:
            return Chosen(own_texts[0], own_texts[1], loc, "rule", legacy=True)
        builtin = BUILTIN.get(loc, {}).get(scenario_type)
        if builtin is not None:
            return Chosen(builtin[0], builtin[1], loc, "built-in", legacy=False)
    return None


def display_names(
    loc: str, from_file: Mapping[str, Mapping[str, Mapping[str, str]]]
) -> dict[str, dict[str, str]]:
    """The built-in display names of ``loc`` with the rules file's on top."""
    out = {k: dict(v) for k, v in DISPLAY_NAMES.get(loc, {}).items()}
    for key, names in from_file.get(loc, {}).items():
        out.setdefault(key, {}).update(names)
    return out


def fill(chosen: Chosen, context: Mapping[str, Any], how: Rendering) -> tuple[str, str]:
    if chosen.legacy:
        return render(chosen.title, context, max_bytes=TITLE_MAX_BYTES, allow_newline=False), render(
            chosen.body, context
        )
    return render_message(chosen.title, context, how, title=True), render_message(
        chosen.body, context, how, title=False
    )


@lru_cache(maxsize=4096)
def _referenced(title: str, body: str) -> tuple[tuple[str, ...], bool]:
    """The placeholders two texts read (sorted) and whether one is a date (which the mentor's
    time zone shapes). A text that cannot be parsed reads none (it is used as written)."""
    names: set[str] = set()
    dated = False
    for text in (title, body):
        try:
            nodes = parse(text)
        except MessageError:
            continue
        names |= placeholders(nodes)
        dated = dated or _dated(nodes)
    return tuple(sorted(names)), dated


def _dated(nodes: list[Node]) -> bool:
    return any(
        isinstance(n, tuple) and (n[2] == "date" or any(_dated(sub) for sub in n[3].values())) for n in nodes
    )


def fill_key(chosen: Chosen, context: Mapping[str, Any], how: Rendering) -> tuple[Any, ...] | None:
    """What ``fill`` of a (non-legacy) text depends on besides the text and the display names:
    the values (and their types: 1, 1.0 and True format apart) of the placeholders it reads, and
    the time zone if it shows a date. None: not to be memoised (a legacy text, a value that
    cannot be a key). A sweep fills the same few texts with the same few values thousands of
    times (issue 18: rendering was a fifth of a first sweep's Python)."""
    if chosen.legacy:
        return None
    names, dated = _referenced(chosen.title, chosen.body)
    values: list[Any] = [how.locale, how.timezone if dated else None]
    for name in names:
        value = context.get(name, _MISSING)
        kind = type(value)
        if kind not in _KEYED:
            return None
        values += (name, kind, repr(value) if kind is float else value)  # -0.0 == 0.0
    return tuple(values)


_MISSING = object()
# Types whose equal values render alike (a float by its repr): the values a key may hold.
_KEYED = frozenset({str, int, float, bool, type(None), object})


# --- check-config -------------------------------------------------------------------------

_TEXT_SAMPLES = {
    "certification_type": "first_aid",
    "metric": "sessions",
    "period": "2026",
    "period_label": "year",
    "since": "last_activity",
    "display_name": "Kari",
    "rule": "a_rule",
}


def sample_context(keys: Set[str], n: int) -> dict[str, Any]:
    """A message context for check-config: every placeholder filled, numbers set to ``n``."""
    out: dict[str, Any] = {}
    for key in keys:
        if key.endswith("_on"):
            out[key] = "2026-03-01"
        elif key.endswith("_at"):
            out[key] = "2026-03-01T12:00:00+00:00"
        elif key in _TEXT_SAMPLES:
            out[key] = _TEXT_SAMPLES[key]
        elif key == "threshold_text":
            out[key] = str(n)
        else:
            out[key] = n
    return out


def check_programme_texts(rules: Any) -> tuple[list[tuple[str, str]], list[str]]:
    """Render every template of every locale in use against the sample numbers: problems
    (a render failure, a placeholder left unfilled) and warnings (a locale without its own
    text for a rule, which falls back along the chain)."""
    problems: list[tuple[str, str]] = []
    warnings: list[str] = []
    locales = dict.fromkeys([rules.default_locale])
    for org in rules.organization_ids():
        locales[rules.organization(org).default_locale] = None
    locales.update(dict.fromkeys(rules.messages))
    for name in rules.rule_names():
        rule = next(r for r in rules.variants(name).distinct() or [rules.variants(name).default] if r)
        for loc in locales:
            chosen, names = rules.message(rule, None, loc)
            where = f"messages.{loc}.{name}"
            if chosen.locale != loc:
                warnings.append(f"{where}: no {loc} text for rule {name!r}; falls back to {chosen.locale}")
            how = Rendering(chosen.locale, "Europe/Oslo", names)
            for n in SAMPLE_NUMBERS:
                ctx = sample_context(rule.CONTEXT_KEYS, n)
                try:
                    title, body = fill(chosen, ctx, how)
                except Exception as exc:  # a render failure is what this check is for
                    problems.append((where, f"does not render with {n}: {exc}"))
                    break
                left = [k for k in rule.CONTEXT_KEYS if "{" + k in title + body]
                if left or not title.strip() or not body.strip():
                    why = f"placeholder {{{left[0]}}} left unfilled" if left else "renders empty"
                    problems.append((where, f"{why} (sample {n})"))
                    break
    return problems, warnings
