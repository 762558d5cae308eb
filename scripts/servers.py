"""Private servers for destructive tests: never the shared ones on 6379/5432.

Each server listens on a free port of 127.0.0.1, keeps its files in a temp
folder of its own and is stopped by PID (DESIGN.md, "Destructive tests").

PostgreSQL refuses to run as root. When this process is root, `initdb` and
`postgres` run as the `postgres` system user (`Popen(user=...)`, what
`su postgres -c` does) in a folder chowned to that user; as any other user
they run as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg

PG_SETTINGS = {
    # A throwaway cluster: speed over crash safety of PostgreSQL itself.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "64MB",
    "password_encryption": "scram-sha-256",
    "log_min_messages": "warning",
}

# Roles: postgres (trust, the harness), app (password), tls_only (TLS or nothing).
PG_HBA = """\
local     all  all                    trust
hostnossl all  tls_only  127.0.0.1/32 reject
hostssl   all  tls_only  127.0.0.1/32 trust
host      all  app       127.0.0.1/32 scram-sha-256
host      all  all       127.0.0.1/32 trust
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


def kill_pid(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGKILL) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass(frozen=True)
class TLSFiles:
    """A throwaway CA and the certificates it signed (SAN: 127.0.0.1, localhost)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls(folder: Path) -> TLSFiles:
    """Create a CA, a server and a client certificate with `openssl`."""
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=lhs-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
        )
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            f"{name}.pem",
        )
    return TLSFiles(
        folder / "ca.pem",
        folder / "server.pem",
        folder / "server.key",
        folder / "client.pem",
        folder / "client.key",
    )


class RedisServer:
    """A private redis-server; `restart_empty()` is a crash without persistence."""

    def __init__(
        self,
        folder: Path,
        *,
        password: str | None = None,
        tls: TLSFiles | None = None,
        tls_auth_clients: bool = False,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.folder = folder / f"redis-{self.port}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, password: str | None = None, **query: str) -> str:
        """redis:// URL (rediss:// with TLS, the CA in the query)."""
        auth = f":{quote(password, safe='')}@" if password else ""
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0" + (
                f"?{urlencode(query)}" if query else ""
            )
        query = {"ssl_ca_certs": str(self.tls.ca), "ssl_cert_reqs": "required", **query}
        return f"rediss://{auth}127.0.0.1:{self.port}/0?{urlencode(query)}"

    def start(self) -> None:
        args = [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
        ]
        if self.tls is None:
            args += ["--port", str(self.port)]
        else:
            args += [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.tls.server_cert),
                "--tls-key-file",
                str(self.tls.server_key),
                "--tls-ca-cert-file",
                str(self.tls.ca),
                "--tls-auth-clients",
                "yes" if self.tls_auth_clients else "no",
            ]
        if self.password:
            args += ["--requirepass", self.password]
        log = open(self.folder / "redis.log", "ab")
        self.proc = subprocess.Popen([*args, *self.extra], stdout=log, stderr=log)
        log.close()
        wait_port(self.port, self.proc, "redis-server")

    def kill(self) -> None:
        kill_pid(self.proc)
        self.proc = None

    def restart_empty(self) -> None:
        """SIGKILL and start again on the same port: nothing survives."""
        self.kill()
        self.start()


def _pg_user() -> tuple[str | None, int | None, int | None]:
    """(user, uid, gid) to run PostgreSQL as: ourselves unless we are root."""
    if os.geteuid() != 0:
        return None, None, None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "running as root and there is no 'postgres' user to run initdb as: "
            "create one (useradd postgres) or run as a non-root user"
        ) from None
    return "postgres", pw.pw_uid, pw.pw_gid


class PostgresCluster:
    """A throwaway PostgreSQL cluster (`initdb` + `postgres`) on a free port.

    Roles: `postgres` (trust, over TCP and the socket), `app` (password, scram),
    `tls_only` (accepted over TLS only; needs `ssl`).
    """

    def __init__(self, *, app_password: str = "app-pw", ssl: TLSFiles | None = None) -> None:
        self.port = free_port()
        self.app_password = app_password
        self.ssl = ssl
        self.user, self.uid, self.gid = _pg_user()
        # Under /tmp, not pytest's tmp_path: that one is private to root.
        self.folder = Path(tempfile.mkdtemp(prefix="lhs-pg-"))
        self.data = self.folder / "data"
        self.proc: subprocess.Popen[bytes] | None = None

    def _run_as(self, args: list[str]) -> None:
        subprocess.run(args, check=True, capture_output=True, user=self.user, group=self.gid)

    def init(self) -> PostgresCluster:
        if self.uid is not None:
            os.chown(self.folder, self.uid, self.gid or -1)
        os.chmod(self.folder, 0o700)
        self._run_as(
            [
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ]
        )
        conf = dict(PG_SETTINGS, port=str(self.port), listen_addresses="'127.0.0.1'")
        conf["unix_socket_directories"] = f"'{self.folder}'"
        if self.ssl is not None:
            for src, name in (
                (self.ssl.server_cert, "server.crt"),
                (self.ssl.server_key, "server.key"),
                (self.ssl.ca, "ca.crt"),
            ):
                shutil.copy(src, self.data / name)
                os.chmod(self.data / name, 0o600)
                if self.uid is not None:
                    os.chown(self.data / name, self.uid, self.gid or -1)
            conf |= {
                "ssl": "on",
                "ssl_cert_file": "'server.crt'",
                "ssl_key_file": "'server.key'",
                "ssl_ca_file": "'ca.crt'",
            }
        with open(self.data / "postgresql.conf", "a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in conf.items())
        (self.data / "pg_hba.conf").write_text(PG_HBA)
        self.start()
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE app LOGIN PASSWORD '{self.app_password}'")
            conn.execute("CREATE ROLE tls_only LOGIN SUPERUSER")
            conn.execute("CREATE SCHEMA app AUTHORIZATION app")
        return self

    def start(self) -> None:
        log = open(self.folder / "postgres.log", "ab")
        self.proc = subprocess.Popen(
            ["postgres", "-D", str(self.data)],
            stdout=log,
            stderr=log,
            user=self.user,
            group=self.gid,
        )
        log.close()
        wait_port(self.port, self.proc, "postgres")
        deadline = time.monotonic() + 30
        while True:  # listening is not accepting: wait for recovery to end
            try:
                psycopg.connect(self.url(sslmode="disable"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster): clients are disconnected."""
        kill_pid(self.proc, signal.SIGINT)
        self.proc = None

    def url(
        self,
        db: str = "postgres",
        user: str = "postgres",
        password: str | None = None,
        **query: str,
    ) -> str:
        auth = user + (f":{quote(password, safe='')}" if password else "")
        q = f"?{urlencode(query)}" if query else ""
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{db}{q}"

    def schema_url(self, schema: str, **query: str) -> str:
        """A URL as `postgres` whose search_path is a fresh `schema`."""
        with psycopg.connect(self.url(sslmode="disable"), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        return self.url(sslmode="disable", options=f"-csearch_path={schema}", **query)

    def remove(self) -> None:
        """Stop (SIGKILL if a fast shutdown hangs) and delete the folder."""
        kill_pid(self.proc, signal.SIGINT)
        self.proc = None
        shutil.rmtree(self.folder, ignore_errors=True)
