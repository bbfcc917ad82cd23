"""Real servers for tests and benchmarks: ``redis-server``, PostgreSQL and MariaDB on 127.0.0.1.

Each server listens on a free loopback port with a throw-away data directory;
stop what you start (``server.stop()``). A missing binary raises
:class:`ServerMissingError` naming the Debian package to install.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

__all__ = [
    "MariaDBServer",
    "PostgresServer",
    "RedisServer",
    "ServerMissingError",
    "free_port",
    "wait_for",
]

T = TypeVar("T")


class ServerMissingError(RuntimeError):
    """The server binary is not installed on this machine."""


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``check()`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int, request: bytes, expect: bytes) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(request)
            return sock.recv(64).startswith(expect)
    except OSError:
        return False


def _resp(*words: str) -> bytes:
    """One Redis command in the protocol's array form (safe for any bytes in ``words``)."""
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        raw = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


class RedisServer:
    """One ``redis-server`` process; ``restart()`` keeps its port and data dir.

    ``aof=True`` turns on the append-only file with ``appendfsync always``
    (every acknowledged write is on disk), as a durable deployment would.
    ``password`` starts it with ``--requirepass``; :attr:`url` and
    :meth:`client` then carry it.
    """

    def __init__(
        self,
        directory: Path,
        *,
        aof: bool = False,
        start: bool = True,
        password: str | None = None,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerMissingError(
                "redis-server is not installed (Debian: apt-get install -y redis-server)"
            )
        self.binary = binary
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.aof = aof
        self.password = password
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    @property
    def url(self) -> str:
        auth = "" if self.password is None else f":{quote(self.password, safe='')}@"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        """A synchronous ``redis.Redis`` client (needs redis-py)."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.directory), "--save", ""]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        log = open(self.directory / "redis.log", "ab")  # closed with the process
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        proc = self.proc

        def pong() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"redis-server exited: see {self.directory / 'redis.log'}")
            if self.password is not None:
                return _answers(self.port, _resp("AUTH", self.password), b"+OK")
            return _answers(self.port, b"PING\r\n", b"+PONG")

        wait_for(pong, 20, "redis-server to answer PING")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None

    def restart(self, pause: float = 0.0) -> None:
        self.stop()
        time.sleep(pause)
        self.start()


def postgres_bindir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` live (PATH, then Debian's versioned folders)."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    raise ServerMissingError(
        "PostgreSQL server binaries (initdb, pg_ctl) are not installed "
        "(Debian: apt-get install -y postgresql)"
    )


class PostgresServer:
    """A throw-away PostgreSQL cluster on 127.0.0.1; ``restart()`` keeps port and data.

    Runs as the ``postgres`` user when started as root (PostgreSQL refuses
    root). ``fsync=False`` trades crash safety for speed in tests that do
    not test durability. The superuser is ``user``; with ``password``,
    TCP connections must authenticate with it (``scram-sha-256``) and
    :attr:`url` carries it, else every connection is trusted.
    """

    def __init__(
        self,
        *,
        fsync: bool = True,
        start: bool = True,
        user: str = "postgres",
        password: str | None = None,
    ) -> None:
        self.bindir = postgres_bindir()
        self.directory = Path(tempfile.mkdtemp(prefix="pyworkflow-pg-"))
        self.directory.chmod(0o711)
        self.data = self.directory / "data"
        self.fsync = fsync
        self.user = user
        self.password = password
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        self._initdb()
        self.running = False
        if start:
            self.start()

    @property
    def url(self) -> str:
        auth = quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + quote(self.password, safe="")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({out.returncode}): {out.stderr or out.stdout}")
        return out

    def _initdb(self) -> None:
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        args = ["initdb", "-D", str(self.data), "-U", self.user, "-E", "UTF8"]
        if self.password is None:
            self._run(*args, "--auth=trust")
            return
        pwfile = self.directory / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        try:
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
            self._run(*args, *auth)
        finally:
            pwfile.unlink()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        options += " -c max_connections=200"
        if not self.fsync:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        log = str(self.directory / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients, ``immediate``: like a crash)."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
            self.running = False

    def restart(self, pause: float = 0.0, mode: str = "fast") -> None:
        self.stop(mode)
        time.sleep(pause)
        self.start()

    def destroy(self) -> None:
        """Stop the server and delete its data directory."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


class MariaDBServer:
    """A throw-away MariaDB server (``mariadbd``) on 127.0.0.1; ``restart()`` keeps port and data.

    Runs as root with ``--user=root`` and no option files (``--no-defaults``).
    ``root`` connects without a password (it may create databases); with
    ``password``, a second account ``user`` with that password and every
    privilege is created, and :attr:`url` carries it. ``durable=False`` writes
    the InnoDB log at commit without flushing it (speed, for tests that do not
    test durability).
    """

    def __init__(
        self,
        *,
        durable: bool = True,
        start: bool = True,
        user: str = "root",
        password: str | None = None,
        database: str = "pyworkflow",
    ) -> None:
        binary = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin")
        install = shutil.which("mariadb-install-db")
        if binary is None or install is None:
            raise ServerMissingError(
                "MariaDB server binaries (mariadbd, mariadb-install-db) are not installed "
                "(Debian: apt-get install -y mariadb-server)"
            )
        self.binary = binary
        self.directory = Path(tempfile.mkdtemp(prefix="pyworkflow-mariadb-"))
        self.data = self.directory / "data"
        self.durable = durable
        self.user = user
        self.password = password
        self.database = database
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        cmd = [install, "--no-defaults", f"--datadir={self.data}", "--user=root"]
        cmd += ["--auth-root-authentication-method=normal", "--skip-test-db"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed ({out.returncode}): {out.stderr}")
        init = [f"CREATE DATABASE IF NOT EXISTS `{database}`;"]
        if password is not None:
            escaped = password.replace("\\", "\\\\").replace("'", "\\'")
            init += [
                f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{escaped}';",
                f"GRANT ALL PRIVILEGES ON *.* TO '{user}'@'%';",
            ]
        self.init_file = self.directory / "init.sql"
        self.init_file.write_text("\n".join(init) + "\n")
        if start:
            self.start()

    @property
    def url(self) -> str:
        """``mysql://user[:password]@127.0.0.1:port/database``."""
        auth = quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + quote(self.password, safe="")
        return f"mysql://{auth}@127.0.0.1:{self.port}/{self.database}"

    def start(self) -> None:
        args = [self.binary, "--no-defaults", f"--datadir={self.data}", "--user=root"]
        args += [f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-name-resolve"]
        args += [f"--socket={self.directory / 'mariadb.sock'}"]
        args += [f"--pid-file={self.directory / 'mariadb.pid'}"]
        args += [f"--log-error={self.directory / 'mariadb.log'}", "--skip-log-bin"]
        args += [f"--init-file={self.init_file}", "--max-connections=400"]
        args += ["--innodb-buffer-pool-size=128M", "--innodb-log-file-size=64M"]
        if not self.durable:
            args += ["--innodb-flush-log-at-trx-commit=2", "--innodb-doublewrite=0"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = self.proc

        def greets() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"mariadbd exited: see {self.directory / 'mariadb.log'}")
            # the server speaks first: a handshake packet of protocol version 10
            return _greeting(self.port)

        try:
            wait_for(greets, 60, "mariadbd to accept connections")
        except BaseException:
            self.kill()  # no server left running behind a failed start
            raise

    def stop(self) -> None:
        """Shut the server down cleanly (SIGTERM; clients are disconnected)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
        self.proc = None

    def kill(self) -> None:
        """Stop the server like a crash (SIGKILL): InnoDB recovers at the next start."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=60)
        self.proc = None

    def restart(self, pause: float = 0.0) -> None:
        self.stop()
        time.sleep(pause)
        self.start()

    def destroy(self) -> None:
        """Stop the server and delete its data directory."""
        try:
            self.kill()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def _greeting(port: int) -> bool:
    """Whether the server on ``port`` sends a MySQL handshake (protocol 10) on connect."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            head = sock.recv(5)
            return len(head) == 5 and head[4] == 10
    except OSError:
        return False
