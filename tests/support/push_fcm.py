"""Shared by tests/unit/test_push_fcm.py and tests/db/test_push_fcm.py."""

from __future__ import annotations

PROJECT = "mentor-app-test"
