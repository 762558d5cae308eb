#!/usr/bin/env bash
# Start the local Cosmos DB stand-in (HTTPS, self-signed, in memory) in the
# background for tests: installs the pinned npm packages, writes the PID to
# standin.pid, and returns once the server answers. No stdin needed.
#   COSMOS_PORT   port on 127.0.0.1 (default 8081)
# Stop it with stop.sh. If something already answers on the port (a stand-in
# started earlier), it is reused and no PID file is written.
set -euo pipefail
cd "$(dirname "$0")"
port="${COSMOS_PORT:-8081}"
url="https://127.0.0.1:${port}/"

answers() { curl -sk --max-time 2 -o /dev/null "$url"; }

# node_modules is not committed; install exactly what package-lock.json pins
# (also when a running stand-in is reused: tests start stand-ins of their own).
if [ ! -d node_modules/@vercel/cosmosdb-server ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error </dev/null
fi

if answers; then
  echo "cosmos stand-in: something already answers on $url; reusing it"
  exit 0
fi

nohup node cosmos-standin.js "$port" >standin.log 2>&1 </dev/null &
echo $! >standin.pid

for _ in $(seq 1 60); do
  if answers; then
    echo "cosmos stand-in up on $url (pid $(cat standin.pid))"
    exit 0
  fi
  if ! kill -0 "$(cat standin.pid)" 2>/dev/null; then
    echo "cosmos stand-in exited; its log:" >&2
    cat standin.log >&2
    rm -f standin.pid
    exit 1
  fi
  sleep 0.5
done
echo "cosmos stand-in did not answer on $url within 30 s; its log:" >&2
cat standin.log >&2
exit 1
