#!/usr/bin/env bash
# `make monitor`: Debian's Prometheus and Alertmanager with the repository's configuration
# (k8s/monitoring/), against the site `make run` serves on this machine. Ctrl+C stops both.
#
#   deploy/monitor.sh          install when missing (root with apt), render, run
#   deploy/monitor.sh render   only write the configuration into $MONITOR_DIR
#
# Settings (environment): PORT (8000) and WORKER_METRICS_PORT (9100), as `make run` has them;
# PROMETHEUS_PORT (9090), ALERTMANAGER_PORT (9093), all on 127.0.0.1; METRICS_TOKEN, when the
# site has one; ALERT_WEBHOOK_URL, where Alertmanager sends alerts; SCRAPE_INTERVAL (15s);
# MONITOR_DIR (var/monitor: configuration, token, data).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-8000}
WORKER_METRICS_PORT=${WORKER_METRICS_PORT:-9100}
PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}
ALERTMANAGER_PORT=${ALERTMANAGER_PORT:-9093}
SCRAPE_INTERVAL=${SCRAPE_INTERVAL:-15s}
MONITOR_DIR=${MONITOR_DIR:-var/monitor}
PACKAGES="prometheus prometheus-alertmanager"
SOURCE=k8s/monitoring

render() {
    mkdir -p "$MONITOR_DIR"
    sed -e "s/127\.0\.0\.1:8000/127.0.0.1:$PORT/" \
        -e "s/127\.0\.0\.1:9100/127.0.0.1:$WORKER_METRICS_PORT/" \
        -e "s/127\.0\.0\.1:9090/127.0.0.1:$PROMETHEUS_PORT/" \
        -e "s/127\.0\.0\.1:9093/127.0.0.1:$ALERTMANAGER_PORT/" \
        -e "s/^\(  \(scrape\|evaluation\)_interval:\) 15s/\1 $SCRAPE_INTERVAL/" \
        "$SOURCE/prometheus.yml" >"$MONITOR_DIR/prometheus.yml"
    cp "$SOURCE/alerts.yml" "$MONITOR_DIR/alerts.yml"
    if [ -n "${ALERT_WEBHOOK_URL:-}" ]; then
        sed -e "s|url: http://127.0.0.1:5001/alerts|url: $ALERT_WEBHOOK_URL|" \
            "$SOURCE/alertmanager.yml" >"$MONITOR_DIR/alertmanager.yml"
    else
        cp "$SOURCE/alertmanager.yml" "$MONITOR_DIR/alertmanager.yml"
    fi
    # The bearer token for /metrics; empty when the site has none (it then answers loopback).
    (umask 077 && printf '%s' "${METRICS_TOKEN:-}" >"$MONITOR_DIR/metrics-token")
}

install() {
    local missing=""
    for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
    [ -z "$missing" ] && return
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "Installing:$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
    else
        echo "make monitor needs:$missing. Run: sudo apt-get install -y$missing" >&2
        exit 1
    fi
}

if [ "${1:-}" = render ]; then
    render
    exit 0
fi

install
render
promtool check config "$MONITOR_DIR/prometheus.yml" >/dev/null
amtool check-config "$MONITOR_DIR/alertmanager.yml" >/dev/null

pids=()
stop() {
    trap - INT TERM EXIT
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

prometheus-alertmanager \
    --config.file="$MONITOR_DIR/alertmanager.yml" \
    --storage.path="$MONITOR_DIR/alertmanager" \
    --web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" \
    --cluster.listen-address= \
    --log.level=warn &
pids+=($!)
prometheus \
    --config.file="$MONITOR_DIR/prometheus.yml" \
    --storage.tsdb.path="$MONITOR_DIR/prometheus" \
    --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
    --log.level=warn &
pids+=($!)

echo "Prometheus on http://127.0.0.1:$PROMETHEUS_PORT/ (targets: /targets, alerts: /alerts)," \
    "Alertmanager on http://127.0.0.1:$ALERTMANAGER_PORT/, scraping the site on :$PORT and" \
    "its worker on :$WORKER_METRICS_PORT (Ctrl+C stops them)"
# Either one stopping on its own stops the other: half a monitoring stack says nothing.
wait -n "${pids[@]}"
echo "make monitor: Prometheus or Alertmanager stopped; stopping the other" >&2
exit 1
