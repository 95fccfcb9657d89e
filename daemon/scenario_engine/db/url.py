"""A PostgreSQL URL as asyncpg reads it: what it would refuse, found before any connection.

Part of the database code (issue 19): the settings model validates ``SCENARIO_DATABASE_URL``
with ``dsn_problems`` so that a bad parameter fails at start naming the key, not at the first
connect; the rules are asyncpg's (``asyncpg.connect_utils``), so they live beside ``connect``.
"""

from __future__ import annotations

import difflib
import os
import re
import urllib.parse
from pathlib import Path

_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_DIRECT_TLS_MODES = ("require", "verify-ca", "verify-full")
_TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
_ENUM_PARAMS: dict[str, tuple[str, ...]] = {
    "sslmode": _SSLMODES,
    "ssl_min_protocol_version": _TLS_VERSIONS,
    "ssl_max_protocol_version": _TLS_VERSIONS,
    "target_session_attrs": ("any", "primary", "standby", "prefer-standby", "read-write", "read-only"),
    "sslnegotiation": ("postgres", "direct"),
    "gsslib": ("gssapi", "sspi"),
}
_FILE_PARAMS = ("sslcert", "sslkey", "sslrootcert", "sslcrl")
# Query parameters asyncpg understands itself (asyncpg.connect_utils); any other one is
# sent to the server as a setting (e.g. application_name, search_path, statement_timeout).
DSN_PARAMS = frozenset(
    {"host", "port", "dbname", "database", "user", "password", "passfile", "sslpassword",
     "krbsrvname", "service", *_ENUM_PARAMS, *_FILE_PARAMS}
)  # fmt: skip
# libpq parameters asyncpg does not implement: as server settings they fail at connect.
LIBPQ_ONLY_PARAMS = frozenset(
    {"connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
     "tcp_user_timeout", "hostaddr", "gssencmode", "gssdelegation", "channel_binding", "require_auth",
     "requiressl", "sslcompression", "sslsni", "sslcertmode", "load_balance_hosts",
     "fallback_application_name", "requirepeer", "replication", "sslkeylogfile", "min_protocol_version",
     "max_protocol_version"}
)  # fmt: skip
_GUC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_IPV6_HOSTSPEC = re.compile(r"(?:\[([^\]]+)\])(?::([0-9]+))?")


def _port_problem(text: str) -> str | None:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        return f"port {text!r} is not a number from 1 to 65535"
    return None


def _hostlist_problems(hostlist: str) -> list[str]:
    out = []
    specs = hostlist.split(",")
    for spec in specs:
        if spec == "":
            out.append("the host list has an empty entry")
            continue
        if spec.startswith("/"):
            continue  # a Unix socket directory
        if spec.startswith("["):
            m = _IPV6_HOSTSPEC.match(spec)
            if m is None or m.end() != len(spec):
                out.append(f"invalid IPv6 address {spec!r}")
                continue
            port = m.group(2)
        else:
            addr, _, port = spec.partition(":")
            if addr == "":
                out.append("a host name is empty")
        if port and (problem := _port_problem(urllib.parse.unquote(port))):
            out.append(problem)
    return out


def dsn_problems(url: str) -> list[str]:
    """What asyncpg would refuse (or the server would, at every connect) in this URL.

    Mirrors asyncpg's own parsing (urllib, ``user:password@host,host:port/db?params``)
    with an allow-list of the parameters it implements; messages never repeat the
    password or any parameter value that may be secret."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return ["contains control characters"]
    try:
        parsed = urllib.parse.urlparse(url)
    except ValueError:
        return ["is not a valid URL"]
    if parsed.scheme not in ("postgresql", "postgres"):
        return ["must be a postgresql:// URL"]
    out: list[str] = []
    hostspec = parsed.netloc.partition("@")[2] if "@" in parsed.netloc else parsed.netloc
    query: dict[str, str] = {}
    if parsed.query:
        try:
            query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query, strict_parsing=True).items()}
        except ValueError:
            return ["the query string is malformed (each parameter must be name=value, joined by &)"]
    if hostspec:
        out += _hostlist_problems(hostspec)
    for name, value in query.items():
        if name == "port":
            out += [p for v in value.split(",") if (p := _port_problem(v))]
        elif name == "host":
            out += _hostlist_problems(value)
        elif name in _ENUM_PARAMS:
            if value not in _ENUM_PARAMS[name]:
                out.append(f"{name} {value!r} is not one of {', '.join(_ENUM_PARAMS[name])}")
        elif name in _FILE_PARAMS:
            if not (name == "sslrootcert" and value == "system") and not os.access(value, os.R_OK):
                out.append(f"{name}: cannot read {value}")
        elif name == "client_encoding":
            if value.lower().replace("-", "") != "utf8":
                out.append("client_encoding must be UTF8 (asyncpg speaks only UTF-8)")
        elif name in DSN_PARAMS:
            continue
        elif name in LIBPQ_ONLY_PARAMS:
            out.append(f"parameter {name!r} is libpq's; asyncpg does not support it")
        else:
            close = difflib.get_close_matches(name, sorted(DSN_PARAMS | LIBPQ_ONLY_PARAMS), n=1, cutoff=0.8)
            if close:
                out.append(f"unknown parameter {name!r}; did you mean {close[0]!r}?")
            elif not _GUC_NAME.match(name):
                out.append(f"parameter {name!r} is neither a connection parameter nor a server setting")
    # asyncpg refuses direct TLS (PostgreSQL 17's sslnegotiation=direct) unless TLS is required;
    # sslmode defaults to PGSSLMODE, then prefer, as asyncpg reads it.
    sslmode = query.get("sslmode") or os.environ.get("PGSSLMODE") or "prefer"
    if query.get("sslnegotiation") == "direct" and sslmode in _SSLMODES and sslmode not in _DIRECT_TLS_MODES:
        out.append(f"sslnegotiation=direct requires sslmode {', '.join(_DIRECT_TLS_MODES)}")
    # Verifying the server needs a root certificate; without sslrootcert asyncpg (like libpq) reads
    # PGSSLROOTCERT, else ~/.postgresql/root.crt, and refuses every connect when it cannot.
    if sslmode in ("verify-ca", "verify-full") and "sslrootcert" not in query:
        default = os.environ.get("PGSSLROOTCERT") or str(Path.home() / ".postgresql" / "root.crt")
        if default != "system" and not os.access(default, os.R_OK):
            out.append(f"sslmode={sslmode} needs a root certificate: cannot read {default} (set sslrootcert)")
    return out
