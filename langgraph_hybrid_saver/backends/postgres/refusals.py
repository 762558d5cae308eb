"""Connections a PostgreSQL server refused for a reason in the URL (database,
role, password, pg_hba.conf), told apart from an outage."""

from __future__ import annotations

import re
import shlex

from langgraph_hybrid_saver.errors import ConfigError, HybridSaverError, ServerUnreachableError

# What a server that answered says when it will not take the connection: a
# config problem (a database or role it does not have, pg_hba.conf), not an
# outage: ConfigError. Wrong credentials stay ServerUnreachableError, as for
# Redis (the server refused us; exit code 3 in the CLI). libpq reports a
# failed connection without its SQLSTATE (the code in each row below), so
# the server's (English) message decides; a code alone, where an error
# carries one, gets its generic message; a localized message without a code
# reads as unreachable.
_REFUSALS: list[tuple[str, re.Pattern[str], str]] = [
    (
        "3D000",
        re.compile(r'database "(?P<name>[^"]*)" does not exist'),
        "{where}: database {name!r} does not exist: create it (createdb {arg}) or fix durable_url",
    ),
    (
        "28000",
        re.compile(r'role "(?P<name>[^"]*)" does not exist'),
        "{where}: role {name!r} does not exist: create it (createuser {arg}) or fix the user "
        "in durable_url",
    ),
    (
        "28P01",
        re.compile(r'password authentication failed for user "(?P<name>[^"]*)"'),
        "{where} refused the credentials: password authentication failed for user {name!r}: "
        "fix the user/password in durable_url",
    ),
    (  # peer, ident, cert, ...: the method pg_hba.conf chose for this user and host
        "28000",
        re.compile(r'(?P<how>\w+) authentication failed for user "(?P<name>[^"]*)"'),
        "{where}: {how} authentication failed for user {name!r}: connect as a user that "
        "method accepts or fix the server's pg_hba.conf",
    ),
    (
        "28000",
        re.compile(r'no pg_hba\.conf entry for host "[^"]*", user "(?P<name>[^"]*)"'),
        "{where} has no pg_hba.conf entry that lets user {name!r} connect from this host: "
        "allow it in the server's pg_hba.conf or fix durable_url",
    ),
    (
        "42501",
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


def refusal(e: BaseException, where: str) -> tuple[type[HybridSaverError], str] | None:
    """The error class and message for a connection the server refused for
    a reason in the URL (database, user, password, pg_hba.conf), else None.
    Names come from the server's message, which never holds the password."""
    text = str(e)
    where = f"PostgreSQL at {where}"
    message = None
    code = getattr(e, "sqlstate", None) or ""
    for row_code, pattern, template in _REFUSALS:
        if m := pattern.search(text):
            fields = m.groupdict()
            message = template.format(where=where, arg=shlex.quote(fields["name"]), **fields)
            code = row_code
            break
    else:
        if code in _REFUSED_CODES:
            message = _REFUSED_CODES[code].format(where=where)
    if message is None:
        return None
    return (ServerUnreachableError if code == "28P01" else ConfigError), message
