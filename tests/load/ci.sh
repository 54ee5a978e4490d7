#!/usr/bin/env bash
# CI's load test (.ci/run): the site on a scratch PostgreSQL database, served the way
# `make run` serves it (manage.py serve: the web server and a worker) plus a second worker;
# then the smoke profile and a burst of 50 users for 60 s (tests/load/run.sh), each checked
# against the database (LOAD_PROFILES="heavy" RUN_TIME=3m runs others on the same setup). Fails on any 5xx other than counted 429/503 refusals, on any other
# failed request, and on any lost, stuck or wrong run. Reports: artifacts/load/ci-<time>/.
set -uo pipefail
cd "$(dirname "$0")/../.."

make install
PY=.venv/bin/python
PGHOST=${PGHOST:-127.0.0.1}
PGUSER=${PGUSER:-postgres}
db=integr8s_load_$$
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
out=${LOAD_REPORT_DIR:-artifacts/load/ci-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"

export DATABASE_URL="postgres://$PGUSER@$PGHOST:5432/$db"
# The site's own limits (30 runs a minute and 10 sign-ups an hour per address, 10 waiting or
# running per caller) would refuse most of a load test's submissions; raised for this run, so
# what is measured is the service. Refusals that still happen are counted, not failed.
export THROTTLE_ANON=100000/min THROTTLE_USER=100000/min MAX_ACTIVE_PER_CALLER=1000
export THROTTLE_SIGNUP=100000/hour THROTTLE_LOGIN=100000/min
# Every simulated user sends an X-Forwarded-For of its own: trust one proxy, so the site tells
# them apart as it tells people apart (fair scheduling, per-address limits).
export BEHIND_PROXY=true
# An installation of its own: its sandboxes' cgroups are not cleaned up by, and do not clean
# up, another site or test run on this machine. No fixed worker metrics port to collide on.
export SANDBOX_NAME=integr8s-load-$$ WORKER_METRICS_PORT=0

pids=()
stop() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -KILL -- -"$pid" 2>/dev/null  # its whole process group, if it would not stop
    done
    pids=()
}
cleanup() {
    stop
    dropdb -h "$PGHOST" -U "$PGUSER" --if-exists --force "$db"
}
trap cleanup EXIT

echo "== load test on PostgreSQL ($db), site on port $port, two workers; reports in $out"
createdb -h "$PGHOST" -U "$PGUSER" "$db" || exit 1
"$PY" manage.py migrate --no-input -v 0 || exit 1
# Each in a process group of its own (setsid), so nothing it started can outlive the run.
setsid "$PY" manage.py serve --port "$port" >"$out/serve.log" 2>&1 &
pids+=($!)
setsid "$PY" manage.py runworker >"$out/worker-2.log" 2>&1 &
pids+=($!)

host="http://127.0.0.1:$port"
ready() {
    "$PY" - "$host/readyz" <<'EOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as answer:
        sys.exit(json.load(answer).get("workers", 0) < 2)
except OSError:
    sys.exit(1)
EOF
}
for _ in $(seq 60); do ready && break; sleep 1; done
if ! ready; then
    echo "The site did not come up with two workers within 60 s:" >&2
    tail -n 30 "$out/serve.log" "$out/worker-2.log" >&2
    exit 1
fi

status=0
for profile in ${LOAD_PROFILES:-smoke burst}; do
    PROFILE=$profile HOST=$host REPORT_DIR=$out/$profile PY=$PY tests/load/run.sh || status=1
done
stop
errors=$(grep -c " ERROR " "$out/serve.log" "$out/worker-2.log" | paste -sd' ')
echo "Error lines in the site's logs: $errors (serve.log, worker-2.log in $out)"
[ "$status" = 0 ] && echo "== load test passed" || echo "== load test FAILED (reports in $out)" >&2
exit "$status"
