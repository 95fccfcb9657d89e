"""Checks of the push providers' settings that need more than pydantic: a URL as aiohttp will
use it, the fcm extra installed, a service-account key that google-auth can load.

Beside the providers (issue 19) so that a new channel's checks land next to its code; the
configuration's one validation path (``config.load.runtime_problems``) calls them.
"""

from __future__ import annotations

import importlib
import json
import urllib.parse
from pathlib import Path


def http_url_problem(url: str) -> str | None:
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        return "contains spaces or control characters"
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        return "is not a valid URL (check the host and the port)"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "has no host"
    return None


# What the fcm provider imports that the base install lacks: pyproject's `fcm` extra.
FCM_EXTRA_MODULES = ("google.auth", "google.oauth2.service_account", "requests")


def fcm_extra_problem() -> str | None:
    """Why the fcm provider cannot be loaded here, or None: a plain ``pip install
    scenario-engine`` lacks the ``fcm`` extra."""
    for name in FCM_EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            return (
                f"fcm needs the fcm extra, which is not installed (no module {exc.name or name!r}): "
                "pip install 'scenario-engine[fcm]'"
            )
    return None


def fcm_credentials_problem(path: Path) -> str | None:
    """Read and parse the service-account key as FcmProvider will; never echo its content."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    try:
        info = json.loads(data)
    except ValueError:
        return f"{path} is not a JSON service-account key"
    if not isinstance(info, dict) or info.get("type") != "service_account":
        return f'{path} is not a service-account key (its "type" must be "service_account")'
    missing = [k for k in ("client_email", "private_key", "token_uri") if not isinstance(info.get(k), str)]
    if missing:
        return f"{path} lacks {', '.join(missing)}"
    from google.oauth2 import service_account

    try:
        service_account.Credentials.from_service_account_info(info)  # type: ignore[no-untyped-call]
    except Exception:  # google-auth raises ValueError or a cryptography error: no detail leaks
        return f"{path}: the private_key cannot be loaded (a PEM-encoded RSA key is expected)"
    return None
