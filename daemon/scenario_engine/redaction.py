"""Secret redaction: URLs with their passwords masked, the secret strings of a configuration,
and text scrubbed of them.

Its own module (issue 19): the command line, the logs (``logs.py``) and the dispatcher scrub
what they print with it, and none of them needs the settings model to do so.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scenario_engine.config.settings import Settings

MASK = "***"
# Query parameters of a database URL whose values say how to connect, not who you are.
SAFE_DSN_PARAMS = frozenset(
    {"sslmode", "target_session_attrs", "sslnegotiation", "ssl_min_protocol_version",
     "ssl_max_protocol_version", "application_name", "host", "port", "dbname", "database"}
)  # fmt: skip


def mask_url(url: str, *, keep_user: bool = True, safe_params: frozenset[str] = frozenset()) -> str:
    """The URL with its password (or, with ``keep_user=False``, all its user info), every
    query value not in ``safe_params`` and its fragment replaced by ***. A URL that does
    not parse is not shown at all."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "(a URL that does not parse; not shown)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        shown_user = (user + (":" + MASK if colon else "")) if keep_user else MASK
        netloc = f"{shown_user}@{hostport}"
    query = parts.query
    if query:
        pairs = []
        for piece in query.split("&"):
            name, eq, _value = piece.partition("=")
            pairs.append(piece if urllib.parse.unquote(name) in safe_params else f"{name}{eq and '='}{MASK}")
        query = "&".join(pairs)
    fragment = MASK if parts.fragment else ""
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query, fragment=fragment))


def _url_secrets(url: str) -> list[str]:
    out = [url]
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return out
    userinfo = parts.netloc.rpartition("@")[0]
    if ":" in userinfo:  # a user name alone is not secret (messages name it)
        password = userinfo.partition(":")[2]
        out += [userinfo, password, urllib.parse.unquote(password)]
    for piece in parts.query.split("&") if parts.query else []:
        value = piece.partition("=")[2]
        out += [value, urllib.parse.unquote_plus(value)]
    if parts.fragment:
        out.append(parts.fragment)
    return out


def collect_secrets(settings: Settings) -> list[str]:
    """Secret strings in these settings, longest first (so a scrub replaces whole ones)."""
    found: list[str] = []
    if settings.database_url is not None:
        found += _url_secrets(settings.database_url.get_secret_value())
    if settings.push_webhook_url:
        found += _url_secrets(settings.push_webhook_url)
    for secret in (
        settings.push_webhook_token,
        settings.push_webhook_hmac_secret,
        settings.status_token,
        settings.email_smtp_password,
    ):
        if secret is not None:
            found.append(secret.get_secret_value())
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret string replaced by ***."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text
