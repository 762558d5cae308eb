#!/usr/bin/env bash
# The declared floors hold: .venv-lowest gets the package with the lowest
# version of each dependency (.ci/lowest-constraints.txt, pip install -c) and
# runs the tests that exercise them: the conformance suite on every durable
# store (langgraph-checkpoint, redis/hiredis, psycopg, aiosqlite, azure-cosmos),
# the pipelined Redis connection and the local cache's invalidation connection
# (redis-py internals, hiredis), DeltaChannel
# graphs (langgraph), the PostgreSQL COPY/pipeline apply, the PostgreSQL
# connect errors, EncryptedSerializer, the CLI (click, rich) and OpenTelemetry
# with the worker's Prometheus endpoint (the [otel] extra).
# Needs the servers .ci/run starts (Redis, PostgreSQL, the Cosmos stand-in).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-lowest
CONSTRAINTS=.ci/lowest-constraints.txt

rm -rf "$VENV"
python3 -m venv "$VENV"
printf '*\n' >"$VENV/.gitignore"  # out of git and of `ruff check .`
. "$VENV/bin/activate"
python -m pip install -q -U pip

# The test extra's requirements, less the package itself (installed below
# with [all]), langgraph-checkpoint-postgres, which the test extra asks newer
# (the official aprune, for tests/test_differential.py, not run here), and the
# tools and servers the subset does not use (langgraph-cli: the Agent Server,
# whose newest release may need more than the floors).
python - >"$VENV/test-requirements.txt" <<'EOF'
import re
import tomllib

with open("pyproject.toml", "rb") as f:
    test = tomllib.load(f)["project"]["optional-dependencies"]["test"]
for req in test:
    name = re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower()
    if name not in ("langgraph-hybrid-saver", "langgraph-checkpoint-postgres", "mypy", "ruff",
                    "build", "twine", "langgraph-cli"):
        print(req)
EOF
python -m pip install -q -c "$CONSTRAINTS" -e ".[all,otel]" -r "$VENV/test-requirements.txt"

# A constraint only narrows what is asked for: check each pin was installed.
python - "$CONSTRAINTS" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version

bad = []
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, _, want = line.partition("==")
    try:
        got = version(name)
    except PackageNotFoundError:
        got = "not installed"
    if got != want:
        bad.append(f"{name}: {got}, not the floor {want}")
    else:
        print(f"  {name}=={got}")
if bad:
    sys.exit("lowest versions not installed:\n  " + "\n  ".join(bad))
EOF

python -m pytest -p no:cacheprovider -q \
  tests/test_conformance.py \
  tests/test_lanes.py \
  tests/test_local_cache.py \
  tests/test_lifecycle.py \
  tests/test_pg_apply.py \
  tests/test_pg_errors.py \
  tests/test_telemetry.py \
  tests/test_security.py::test_encrypted_serializer_passes_through \
  tests/test_security.py::test_encrypted_serializer_hides_string_channel_values \
  tests/test_cli.py::test_errors_are_one_line_with_exit_codes \
  tests/test_cli.py::test_inspect_shows_who_changed_what_and_where_it_lives
