#!/usr/bin/env bash
# Stop the Cosmos DB stand-in that start.sh started (by the PID it wrote).
set -euo pipefail
cd "$(dirname "$0")"
[ -f standin.pid ] || exit 0
pid="$(cat standin.pid)"
if kill -0 "$pid" 2>/dev/null; then
  kill "$pid"
  for _ in $(seq 1 20); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
fi
rm -f standin.pid
