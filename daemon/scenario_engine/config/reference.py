"""The settings as people read them: what check-config prints (secrets masked) and the table of
settings in README.md (between ``<!-- settings:begin -->`` and ``<!-- settings:end -->``,
generated from the model; tests/unit/test_docs.py keeps the README in step)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import SecretStr

from scenario_engine.config.settings import Settings, env_name
from scenario_engine.redaction import SAFE_DSN_PARAMS, mask_url
from scenario_engine.scenarios.rules import Rules


def effective_config(settings: Settings, rules: Rules) -> dict[str, Any]:
    """What check-config prints: every setting (secrets masked) and the rules."""
    shown = settings.model_dump(mode="json")
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        shown["database_url"] = mask_url(url, safe_params=SAFE_DSN_PARAMS)
    for field in ("push_webhook_url", "push_fcm_base_url"):
        if getattr(settings, field) is not None:
            shown[field] = mask_url(getattr(settings, field), keep_user=False)
    return {"settings": {env_name(k): v for k, v in shown.items()}, "rules": rules.model_dump(mode="json")}


def settings_reference_markdown() -> str:
    """The configuration table in README.md, generated from the Settings model (a test
    keeps the README in step with it)."""
    rows = ["| variable | default | allowed | meaning |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = info.default
        if isinstance(default, SecretStr) or default is None:
            shown = "—"
        elif isinstance(default, dt.time):
            shown = default.strftime("%H:%M")
        else:
            shown = f"`{default}`"
        rows.append(f"| `{env_name(name)}` | {shown} | {_allowed(info)} | {info.description or ''} |")
    return "\n".join(rows)


def _allowed(info: Any) -> str:
    """The range (or choices) of a setting, from its pydantic constraints."""
    low = high = None
    for m in info.metadata:
        for attr, is_low in (("ge", True), ("gt", True), ("le", False), ("lt", False)):
            value = getattr(m, attr, None)
            if value is not None:
                number = f"{value:g}" if isinstance(value, float) else str(value)
                text = ("> " if attr == "gt" else "") + number
                low, high = (text, high) if is_low else (low, text)
    if low is not None or high is not None:
        return f"{low or '…'} – {high or '…'}"
    args = [a for a in getattr(info.annotation, "__args__", ()) if isinstance(a, str)]
    return " ".join(f"`{a}`" for a in args) if args else ""
