#!/usr/bin/env bash
# Start a local PostgreSQL on 127.0.0.1 for the test suite (installs it with apt if missing)
# and print the URL to use as TANFANG_TEST_POSTGRES_URL.
set -euo pipefail
PGUSER_NAME=tanfang
PGDB=tanfang_test
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing PostgreSQL (apt)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  else
    echo "PostgreSQL is not installed and this is not root: install postgresql" >&2
    exit 1
  fi
fi
ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h 2>/dev/null | grep -q "^$ver main"; then
  pg_createcluster "$ver" main >&2
fi
if ! pg_lsclusters -h | grep "^$ver main" | grep -q online; then
  pg_ctlcluster "$ver" main start >&2
fi
for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q -h 127.0.0.1" && break
  sleep 1
done
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_roles WHERE rolname='$PGUSER_NAME'\"" | grep -q 1 \
  || su postgres -c "psql -q -c \"CREATE ROLE $PGUSER_NAME LOGIN PASSWORD '$PGUSER_NAME' CREATEDB\"" >&2
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_database WHERE datname='$PGDB'\"" | grep -q 1 \
  || su postgres -c "createdb -O $PGUSER_NAME $PGDB" >&2
echo "postgresql+psycopg://$PGUSER_NAME:$PGUSER_NAME@127.0.0.1:5432/$PGDB"
