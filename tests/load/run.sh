#!/usr/bin/env bash
# `make load`: run a named Locust profile against a running site, write CSV and HTML reports
# into a folder, then check the site's database (tests/load/check.py). Exits non-zero when
# Locust could not run or the check finds a problem.
#
#   PROFILE=smoke HOST=http://127.0.0.1:8000 tests/load/run.sh
#   RUN_TIME=20s        overrides the profile's length
#   REPORT_DIR=...      overrides the folder (default artifacts/load/<profile>-<UTC time>/)
#   LOAD_GRACE_S=120    how long the check waits for queued runs to end
#
# The check reads the database named by DATABASE_URL, so run this with the site's settings.
set -uo pipefail
cd "$(dirname "$0")/../.."

PROFILE=${PROFILE:-smoke}
HOST=${HOST:-http://127.0.0.1:8000}
PY=${PY:-.venv/bin/python}
PERSONAS="EditorVisitor SignedInUser WaitingApiClient PollingApiClient Reader"

# name   users  spawn rate (users/s)  length  user classes
case "$PROFILE" in
    smoke)  users=1;   rate=1;  length=1m;  classes=SmokeUser ;;  # every flow, one user
    light)  users=10;  rate=2;  length=5m;  classes=$PERSONAS ;;
    medium) users=50;  rate=5;  length=10m; classes=$PERSONAS ;;
    heavy)  users=100; rate=10; length=15m; classes=$PERSONAS ;;
    stress) users=200; rate=10; length=30m; classes=$PERSONAS ;;
    burst)  users=50;  rate=10; length=60s; classes=$PERSONAS ;;  # CI's short burst
    *) echo "Unknown PROFILE=$PROFILE: smoke, light, medium, heavy, stress or burst." >&2; exit 2 ;;
esac
RUN_TIME=${RUN_TIME:-$length}
REPORT_DIR=${REPORT_DIR:-artifacts/load/$PROFILE-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$REPORT_DIR"
since=$(date -u +%Y-%m-%dT%H:%M:%SZ)

echo "== load profile $PROFILE: $users users (+$rate/s) for $RUN_TIME against $HOST -> $REPORT_DIR"
"$PY" -m locust -f tests/load/locustfile.py --headless --only-summary \
    --host "$HOST" --users "$users" --spawn-rate "$rate" --run-time "$RUN_TIME" \
    --stop-timeout 20 --exit-code-on-error 0 \
    --csv "$REPORT_DIR/locust" --html "$REPORT_DIR/report.html" \
    --logfile "$REPORT_DIR/locust.log" --ids-file "$REPORT_DIR/submitted.txt" \
    $classes
locust_status=$?
if [ "$locust_status" != 0 ]; then
    echo "Locust exited with status $locust_status (see $REPORT_DIR/locust.log)." >&2
fi

echo "== check (runs since $since)"
"$PY" tests/load/check.py --since "$since" --report-dir "$REPORT_DIR" | tee "$REPORT_DIR/check.txt"
check_status=${PIPESTATUS[0]}
echo "Reports: $REPORT_DIR/report.html, $REPORT_DIR/locust_stats.csv, $REPORT_DIR/check.txt"
[ "$locust_status" = 0 ] && [ "$check_status" = 0 ]
