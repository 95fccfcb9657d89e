"""Choose the configured push provider."""

from __future__ import annotations

from typing import Any

import asyncpg

from scenario_engine.config.settings import Settings, env_name
from scenario_engine.errors import ConfigError
from scenario_engine.push.base import PushProvider
from scenario_engine.push.checks import fcm_extra_problem
from scenario_engine.push.log import LogProvider
from scenario_engine.push.webhook import WebhookProvider


def require_provider(settings: Settings) -> None:
    """Raise ConfigError (exit 2 from the command line) when the configured provider cannot be
    loaded: the fcm provider needs the ``fcm`` extra. ``load_config`` reports the same problem;
    this covers Settings built without it."""
    if settings.push_provider == "fcm" and (problem := fcm_extra_problem()) is not None:
        raise ConfigError([(env_name("push_provider"), problem)])


def make_providers(settings: Settings, pool: asyncpg.Pool[Any]) -> dict[str, PushProvider]:
    """One provider per configured channel: 'push' always, 'email' when an SMTP host is set."""
    providers = {"push": make_provider(settings, pool)}
    if settings.email_smtp_host:
        from scenario_engine.push.smtp import SmtpProvider

        providers["email"] = SmtpProvider(
            settings.email_smtp_host,
            settings.email_smtp_port,
            security=settings.email_smtp_security,
            username=settings.email_smtp_username,
            password=(
                settings.email_smtp_password.get_secret_value() if settings.email_smtp_password else None
            ),
            sender=settings.email_from,
            unsubscribe_url=settings.email_unsubscribe_url,
            timeout=settings.email_timeout_seconds,
        )
    return providers


def make_provider(settings: Settings, pool: asyncpg.Pool[Any]) -> PushProvider:
    if settings.push_provider == "webhook":
        assert settings.push_webhook_url is not None  # enforced by Settings
        return WebhookProvider(
            settings.push_webhook_url,
            token=settings.push_webhook_token.get_secret_value() if settings.push_webhook_token else None,
            hmac_secret=(
                settings.push_webhook_hmac_secret.get_secret_value()
                if settings.push_webhook_hmac_secret
                else None
            ),
            timeout=settings.push_timeout_seconds,
        )
    if settings.push_provider == "fcm":
        require_provider(settings)
        from scenario_engine.push.fcm import FcmProvider

        assert settings.push_fcm_project_id is not None and settings.push_fcm_credentials_file is not None
        return FcmProvider(
            settings.push_fcm_project_id,
            settings.push_fcm_credentials_file,
            pool,
            base_url=settings.push_fcm_base_url,
            timeout=settings.push_timeout_seconds,
        )
    return LogProvider()
