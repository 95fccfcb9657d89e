"""The FCM provider against a local stand-in for Google: a real OAuth2 token endpoint that
verifies the service account's signed JWT assertion, and an FCM v1 endpoint that records
requests and answers as scripted. Real HTTP, real google-auth, real Postgres."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenario_engine.push.fcm import FcmProvider
from tests.support.push_fcm import PROJECT


def test_missing_credentials_file_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        FcmProvider(PROJECT, tmp_path / "nope.json", None)  # type: ignore[arg-type]
