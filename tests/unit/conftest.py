"""tests/unit: the pure core and codecs, no server.

A test here that asks for a server fixture (directly or through another
fixture) fails at once instead of reaching for a server.
"""

from __future__ import annotations

import pytest

# Every fixture of tests/conftest.py that reaches a server (the others that
# do, such as `saver` or `external`, depend on one of these).
SERVER_FIXTURES = frozenset(
    {
        "redis_url",
        "pg_admin_url",
        "pg_url",
        "cosmos_endpoint",
        "durable_url",
        "private_redis",
        "redis_cluster",
        "throwaway_pg",
    }
)


@pytest.fixture(autouse=True)
def _no_servers(request: pytest.FixtureRequest) -> None:
    wanted = SERVER_FIXTURES & set(request.fixturenames)
    if wanted:
        pytest.fail(f"{request.node.nodeid} is a unit test but asks for {sorted(wanted)}")
