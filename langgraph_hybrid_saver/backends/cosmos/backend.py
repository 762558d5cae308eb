"""`CosmosBackend`: the DurableBackend on Azure Cosmos DB for NoSQL: its URL,
client options, opening and setup; reads in read.py, writes in apply.py."""

from __future__ import annotations

import inspect
import math
import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError
from azure.cosmos import PartitionKey, exceptions
from azure.cosmos.aio import CosmosClient

from langgraph_hybrid_saver.backends import redact
from langgraph_hybrid_saver.backends.cosmos.apply import CosmosWrites
from langgraph_hybrid_saver.backends.cosmos.documents import (
    DEFAULT_CONTAINER,
    INDEXING_POLICY,
    PARTITION_KEY_PATH,
)
from langgraph_hybrid_saver.backends.cosmos.metering import metered
from langgraph_hybrid_saver.backends.cosmos.read import CosmosReads
from langgraph_hybrid_saver.errors import ConfigError, DurableStoreError, ServerUnreachableError

# --- client settings ------------------------------------------------------------

THROTTLE_RETRIES = 9  # 429 retries per request (the SDK default, made explicit)
THROTTLE_MAX_WAIT_S = 30  # cumulative wait across them
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
TIMEOUT_OPTIONS = ("connection_timeout", "read_timeout")  # seconds, as the SDK's kwargs
URL_OPTIONS = ("database", "container", "verify", *TIMEOUT_OPTIONS)


class CosmosBackend(CosmosWrites, CosmosReads):
    """Durable store on Azure Cosmos DB for NoSQL (async `azure-cosmos` SDK).

    Build it with `from_url` (or `open_backend`), or pass a ready, opened
    client: `CosmosBackend(client, database="db")`, or a container whose
    partition key path is `/thread_id`: `CosmosBackend(container)`.

    Args:
        target: A `CosmosClient` (database and container are created by
            `setup`) or a `ContainerProxy` (used as it is).
        database: Database name; required with a client.
        container: Container name, with a client.
        owns_client: Open and close the client in `open`/`close` (set by
            `from_url`).
        where: host:port for messages.

    Attributes:
        stats: Request units (RU) consumed: `request_charge` and `requests`
            in total, `throttled` (429 responses, each retried by the SDK),
            and `operations` per backend method (`apply`, `get`, `list`, ...),
            each with `calls`, `requests` and `request_charge`.
    """

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        credential: str | AsyncTokenCredential | None = None,
        **client_options: Any,
    ) -> CosmosBackend:
        """A backend for `cosmos+https://HOST:PORT/?database=NAME[&container=NAME]`.

        Args:
            url: The account endpoint with `cosmos+` before `https`. Options:
                `database` (required), `container` (default `checkpoints`),
                `verify` (`true`/`false`: check the server's TLS certificate;
                default false for 127.0.0.1/localhost, where the emulator and
                the test stand-in use self-signed certificates, true elsewhere),
                `connection_timeout` and `read_timeout` (seconds: the SDK's
                options of those names; default the SDK's, 5 and 65).
            credential: The account key, or an async Entra ID credential
                (`azure.identity.aio.DefaultAzureCredential()`); default: the
                key in the `COSMOS_KEY` environment variable.
            **client_options: Passed on to `azure.cosmos.aio.CosmosClient`.
        """
        parts = urlsplit(url)
        where = redact(url)
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if unknown := sorted(set(options) - set(URL_OPTIONS)):
            raise ConfigError(
                f"durable_url {where!r} has unknown option(s) {', '.join(unknown)}: "
                f"use {', '.join(URL_OPTIONS)}"
            )
        database = options.get("database")
        if not database:
            raise ConfigError(
                f"durable_url {where!r} names no database: add ?database=NAME "
                "(created by setup if missing)"
            )
        host = parts.hostname or ""
        local = host in LOCAL_HOSTS
        verify = options.get("verify", "false" if local else "true").lower()
        if verify not in ("true", "false", "1", "0"):
            raise ConfigError(f"durable_url option verify={verify!r}: use true or false")
        for name in TIMEOUT_OPTIONS:
            if (text := options.get(name)) is not None:
                try:
                    seconds = float(text)
                except ValueError:
                    seconds = math.nan
                if not 0 < seconds < math.inf:
                    raise ConfigError(
                        f"durable_url option {name}={text!r}: use a positive number of seconds"
                    )
                client_options.setdefault(name, seconds)
        key = credential if credential is not None else os.environ.get("COSMOS_KEY")
        if not key:
            raise ConfigError(
                f"no credential for Cosmos DB at {where}: set the COSMOS_KEY environment "
                "variable or pass credential= (a key or an azure.identity.aio credential)"
            )
        if not isinstance(key, str) and not inspect.iscoroutinefunction(
            getattr(key, "get_token", None)
        ):
            raise ConfigError(
                f"credential {type(key).__name__} is synchronous: pass an async one, "
                "e.g. azure.identity.aio.DefaultAzureCredential()"
            )
        netloc = f"[{host}]" if ":" in host else host
        endpoint = f"https://{netloc}" + (f":{parts.port}" if parts.port else "")
        client_options.setdefault("connection_verify", verify in ("true", "1"))
        if local:  # the emulator and stand-in advertise no reachable regional endpoints
            client_options.setdefault("enable_endpoint_discovery", False)
        client = CosmosClient(
            endpoint,
            credential=key,
            retry_throttle_total=THROTTLE_RETRIES,
            retry_throttle_backoff_max=THROTTLE_MAX_WAIT_S,
            **client_options,
        )
        return cls(
            client,
            database=database,
            container=options.get("container") or DEFAULT_CONTAINER,
            owns_client=True,
            where=where,
        )

    @metered
    async def open(self) -> None:
        if not self.owns_client or self.client is None:
            return
        try:
            await self.client.__aenter__()  # reads the account: the first round trip
        except exceptions.CosmosHttpResponseError as e:
            await self.client.close()
            if e.status_code in (401, 403):
                raise ConfigError(
                    f"Cosmos DB at {self.where} refused the credentials ({e.status_code}): "
                    "fix COSMOS_KEY or credential="
                ) from e
            raise DurableStoreError(f"Cosmos DB at {self.where}: {e.message}") from e
        except (AzureError, OSError) as e:
            await self.client.close()
            raise ServerUnreachableError(
                f"Cosmos DB at {self.where} is unreachable ({type(e).__name__}): "
                "start it or fix durable_url"
            ) from e

    @metered
    async def setup(self) -> None:
        """Create the database and container if missing (idempotent), or check
        that a given container is partitioned by `/thread_id`."""
        try:
            if self.client is not None:
                db = await self.client.create_database_if_not_exists(
                    self.database_name or "", raw_response_hook=self._charge
                )
                self.container = await db.create_container_if_not_exists(
                    self.container_name,
                    partition_key=PartitionKey(path=PARTITION_KEY_PATH),
                    indexing_policy=INDEXING_POLICY,
                    raw_response_hook=self._charge,
                )
            props = await self.container.read(raw_response_hook=self._charge)
        except exceptions.CosmosHttpResponseError as e:
            raise DurableStoreError(f"Cosmos DB at {self.where}: setup failed: {e.message}") from e
        paths = (props.get("partitionKey") or {}).get("paths")
        if paths != [PARTITION_KEY_PATH]:
            raise ConfigError(
                f"Cosmos container {props.get('id')!r} is partitioned by {paths}, not "
                f"[{PARTITION_KEY_PATH!r}]: use a new container"
            )

    async def close(self) -> None:
        if self.owns_client and self.client is not None:
            await self.client.close()

    async def server_version(self) -> None:
        """None: Cosmos DB is a service and reports no server version."""
        return None
