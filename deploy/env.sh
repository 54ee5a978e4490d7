#!/usr/bin/env sh
# `make up`'s first step: make sure .env holds every secret docker-compose.yml wants, each made
# at random the first time (never a default from the repository). Values already there are
# kept, so the database's password and everyone's sessions survive the next `make up`.
set -eu
cd "$(dirname "$0")/.."
ENV_FILE=${ENV_FILE:-.env}

random() {
    # $1 random bytes as hex: safe in URLs (DATABASE_URL) and YAML.
    od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'
}

umask 077
[ -f "$ENV_FILE" ] || printf '# Secrets for docker-compose.yml, made by `make up`. Keep this file to yourself.\n' >"$ENV_FILE"
chmod 600 "$ENV_FILE"
for name in SECRET_KEY:48 POSTGRES_PASSWORD:24 GRAFANA_ADMIN_PASSWORD:16 METRICS_TOKEN:32; do
    var=${name%%:*}
    if ! grep -q "^$var=" "$ENV_FILE"; then
        echo "$var=$(random "${name#*:}")" >>"$ENV_FILE"
        echo "make up: wrote a new $var into $ENV_FILE"
    fi
done
