"""Message templates: what a rule's title and body may contain, and how they are filled.

The same checks run twice on purpose. At load (``check_template``) a template is rejected
with a message naming the problem, so an operator learns of it from ``check-config``. At
render (``render``) nothing raises and nothing grows without bound, because the values come
from the platform's rows (a 1 MB display name, a NUL character) and a template may predate
a check: every format spec is re-checked, every value and the result are capped, and
control characters are removed.

Caps: FCM and APNs both refuse a notification payload above 4096 bytes. A title of at
most 256 bytes and a body of at most 2048 bytes (UTF-8) leave well over a kilobyte of that
for the data fields and the framing; a longer text is cut at a character boundary and ends
with an ellipsis.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Mapping, Set
from typing import Any

TITLE_MAX_BYTES = 256
BODY_MAX_BYTES = 2048
# Width and precision in a format spec ({x:>20}, {x:.2f}): more is never a layout choice.
MAX_FORMAT_WIDTH = 100
ELLIPSIS = "…"

_FORMATTER = string.Formatter()
# Python's format-spec mini-language:
# [[fill]align][sign]["z"]["#"]["0"][width][grouping]["." precision][type]
_SPEC = re.compile(
    r"(?:(?P<fill>.)?(?P<align>[<>=^]))?(?P<sign>[+\- ])?z?#?0?(?P<width>\d+)?[,_]?"
    r"(?:\.(?P<precision>\d+))?[bcdeEfFgGnosxX%]?\Z",
    re.DOTALL,
)


class TemplateError(ValueError):
    """A template that a rule must not carry; the message says what is wrong."""


def spec_problem(spec: str) -> str | None:
    """Why a format spec is refused, or None when it is fine."""
    if not spec:
        return None
    if "{" in spec or "}" in spec:
        return f"nested placeholders in a format spec are not supported: {spec!r}"
    m = _SPEC.match(spec)
    if m is None:
        return f"not a valid format spec: {spec!r}"
    for part in ("width", "precision"):
        value = m.group(part)
        if value is not None and int(value) > MAX_FORMAT_WIDTH:
            return f"format {part} {int(value)} is more than {MAX_FORMAT_WIDTH}: {spec!r}"
    return None


def control_characters(text: str, *, allow_newline: bool) -> list[str]:
    """The control characters (Unicode category Cc) in ``text``, as U+XXXX."""
    found = {ch for ch in text if unicodedata.category(ch) == "Cc" and not (allow_newline and ch == "\n")}
    return [f"U+{ord(ch):04X}" for ch in sorted(found)]


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def check_template(
    template: str, known: Set[str], *, max_bytes: int, allow_newline: bool, rule: str | None = None
) -> None:
    """Reject what would fail, or be useless, at render time; the message names the problem."""
    where = f" in rule {rule!r}" if rule else ""
    bad = control_characters(template, allow_newline=allow_newline)
    if bad:
        raise TemplateError(f"control characters are not allowed{where}: {', '.join(bad)}")
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise TemplateError(f"bad message template{where}: {exc}") from None
    literal_bytes = 0
    for literal, field, spec, conversion in parts:
        literal_bytes += utf8_len(literal)
        if field is None:
            continue
        if field == "" or not field.isidentifier():
            raise TemplateError("placeholders must be named, e.g. {days_inactive}")
        if field not in known:
            raise TemplateError(
                f"unknown placeholder {{{field}}}{where}; this rule's placeholders are: "
                + ", ".join("{" + k + "}" for k in sorted(known))
            )
        if conversion not in (None, "r", "s", "a"):
            raise TemplateError(f"unknown conversion !{conversion} in {{{field}}}{where}")
        problem = spec_problem(spec or "")
        if problem is not None:
            raise TemplateError(f"{{{field}}}{where}: {problem}")
    if literal_bytes > max_bytes:
        raise TemplateError(
            f"the fixed text is {literal_bytes} bytes{where}, more than the {max_bytes}-byte limit "
            "of a delivered message"
        )


def truncate_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8, ending in an ellipsis when cut."""
    if len(text) <= max_bytes // 4 or utf8_len(text) <= max_bytes:
        return text
    room = max_bytes - utf8_len(ELLIPSIS)
    cut = text.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
    return cut.rstrip() + ELLIPSIS


def clean_text(text: str, *, allow_newline: bool) -> str:
    """Remove control characters (Postgres text cannot hold NUL; a title is one line)."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if unicodedata.category(ch) != "Cc" or (ch == "\n" and allow_newline):
            out.append(ch)
        elif ch in "\t\r\n":
            out.append(" ")
    return "".join(out)


class _Missing:
    """Stands in for an unknown placeholder and prints itself back, whatever its format spec."""

    def __init__(self, key: str):
        self.key = key

    def __format__(self, spec: str) -> str:
        return "{" + self.key + (":" + spec if spec else "") + "}"


def _format_one(value: Any, conversion: str | None, spec: str, limit: int) -> str:
    if isinstance(value, _Missing):
        return format(value, spec)
    if conversion == "r":
        value = repr(value)
    elif conversion == "a":
        value = ascii(value)
    elif conversion == "s" or isinstance(value, str):
        value = str(value)
    if isinstance(value, str) and len(value) > limit:
        value = value[: limit + 1]  # the result is capped at ``limit`` anyway
    if spec_problem(spec) is not None:
        spec = ""  # a spec that could not pass check_template is ignored, never obeyed
    try:
        return format(value, spec)
    except (ValueError, TypeError):
        return str(value)[: limit + 1]


def render(
    template: str,
    context: Mapping[str, Any],
    *,
    max_bytes: int = BODY_MAX_BYTES,
    allow_newline: bool = True,
) -> str:
    """Fill a rule's message template. An unknown placeholder stays visible and the known
    ones are still filled; a value that does not fit its format spec falls back to str();
    the result holds no control characters and at most ``max_bytes`` of UTF-8."""
    out: list[str] = []
    length = 0
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError:
        parts = [(template, None, None, None)]
    for literal, field, spec, conversion in parts:
        out.append(literal)
        length += len(literal)
        if field is not None:
            value = context[field] if field in context else _Missing(field)
            piece = _format_one(value, conversion, spec or "", max_bytes)
            out.append(piece)
            length += len(piece)
        if length > max_bytes:  # more characters than bytes allowed: the rest would be cut
            break
    text = clean_text("".join(out), allow_newline=allow_newline)
    return truncate_utf8(text, max_bytes)


def render_title(template: str, context: Mapping[str, Any]) -> str:
    return render(template, context, max_bytes=TITLE_MAX_BYTES, allow_newline=False)


def render_body(template: str, context: Mapping[str, Any]) -> str:
    return render(template, context, max_bytes=BODY_MAX_BYTES, allow_newline=True)
