"""Connections a PostgreSQL server refused for a reason in the URL (database,
role, password, pg_hba.conf), told apart from an outage.

A server that answered and will not take the connection is a configuration
problem the user fixes in the URL or on the server, never an outage that a
retry could end: `ConfigError` (CLI exit code 2), as for refused
credentials on Redis and Cosmos DB. An outage stays `ServerUnreachableError`.
"""

from __future__ import annotations

import re
import shlex

# What a server that answered says when it will not take the connection: a
# database or role it does not have, a wrong password, pg_hba.conf. libpq
# reports a failed connection without its SQLSTATE, so the server's
# (English) message decides; a SQLSTATE alone, where an error carries one,
# gets its generic message (_REFUSED_CODES); a localized message without a
# code reads as unreachable.
_REFUSALS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r'database "(?P<name>[^"]*)" does not exist'),
        "{where}: database {name!r} does not exist: create it (createdb {arg}) or fix durable_url",
    ),
    (
        re.compile(r'role "(?P<name>[^"]*)" does not exist'),
        "{where}: role {name!r} does not exist: create it (createuser {arg}) or fix the user "
        "in durable_url",
    ),
    (
        re.compile(r'password authentication failed for user "(?P<name>[^"]*)"'),
        "{where} refused the credentials: password authentication failed for user {name!r}: "
        "fix the user/password in durable_url",
    ),
    (  # peer, ident, cert, ...: the method pg_hba.conf chose for this user and host
        re.compile(r'(?P<how>\w+) authentication failed for user "(?P<name>[^"]*)"'),
        "{where}: {how} authentication failed for user {name!r}: connect as a user that "
        "method accepts or fix the server's pg_hba.conf",
    ),
    (
        re.compile(r'no pg_hba\.conf entry for host "[^"]*", user "(?P<name>[^"]*)"'),
        "{where} has no pg_hba.conf entry that lets user {name!r} connect from this host: "
        "allow it in the server's pg_hba.conf or fix durable_url",
    ),
    (
        re.compile(r'permission denied for database "(?P<name>[^"]*)"'),
        "{where}: the user may not connect to database {name!r} (no CONNECT privilege): "
        "grant it (GRANT CONNECT ON DATABASE) or fix durable_url",
    ),
]
_REFUSED_CODES = {
    "3D000": "{where}: the database in durable_url does not exist: create it or fix durable_url",
    "28000": "{where} refused the user in durable_url: fix it (or the server's pg_hba.conf)",
    "28P01": "{where} refused the credentials (password authentication failed): fix the "
    "user/password in durable_url",
    "42501": "{where}: the user in durable_url may not connect to its database: grant it "
    "CONNECT or fix durable_url",
}


def refusal(e: BaseException, where: str) -> str | None:
    """The `ConfigError` message for a connection the server refused for a
    reason in the URL (database, user, password, pg_hba.conf), else None.
    Names come from the server's message, which never holds the password."""
    text = str(e)
    where = f"PostgreSQL at {where}"
    for pattern, template in _REFUSALS:
        if m := pattern.search(text):
            fields = m.groupdict()
            return template.format(where=where, arg=shlex.quote(fields["name"]), **fields)
    code = getattr(e, "sqlstate", None) or ""
    return _REFUSED_CODES[code].format(where=where) if code in _REFUSED_CODES else None
