"""`scenario-engine demo` end to end: private Postgres, seed, daemon, feed, clean stop."""

from __future__ import annotations

import socket
from pathlib import Path

from scenario_engine.dev.embedded import port_path, remembered_port


def test_a_kept_cluster_keeps_its_port_unless_someone_else_has_taken_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    assert remembered_port(data_dir) is None  # never started
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        port_path(data_dir).write_text(f"{port}\n")
        sock.listen()
        assert remembered_port(data_dir) is None  # taken: a new port
    assert remembered_port(data_dir) == port
    port_path(data_dir).write_text("not a port")
    assert remembered_port(data_dir) is None
