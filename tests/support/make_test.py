"""Shared by tests/unit/test_make_test.py and tests/process/test_make_test.py."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "test-tools"


def listed_tools() -> dict[str, str]:
    """Program → Debian package, as scripts/test-tools lists them."""
    text = SCRIPT.read_text()
    block = re.search(r"^TOOLS=\($(.*?)^\)$", text, re.M | re.S)
    assert block, "scripts/test-tools has no TOOLS=( ... ) list"
    tools = {}
    for line in block.group(1).splitlines():
        fields = line.strip().strip('"').split()
        if fields and not fields[0].startswith("#"):
            tools[fields[0]] = fields[1]
    return tools
