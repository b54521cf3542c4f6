#!/usr/bin/env bash
# Test peers for the Twilio phone path (voice/): Stoplight Prism 5.14 (runs on Node 20) serving
# Twilio's own OpenAPI spec (twilio_api_v2010.json from @twilio/cli-core) as the REST peer of
# the real twilio client. Installed once into ~/.cache/tanfang/npm/<versions>/ (idempotent).
# tests/test_twilio_client.py finds it there (or via TANFANG_TEST_TWILIO_PEERS).
set -euo pipefail
PRISM_VERSION=5.14.2
CLI_CORE_VERSION=9.0.0
DIR="${TANFANG_TEST_TWILIO_PEERS:-$HOME/.cache/tanfang/npm/twilio-peers-prism${PRISM_VERSION}-clicore${CLI_CORE_VERSION}}"
SPEC="$DIR/node_modules/@twilio/cli-core/src/services/twilio-api/twilio_api_v2010.json"
if [ -x "$DIR/node_modules/.bin/prism" ] && [ -f "$SPEC" ]; then
  echo "twilio peers: ready in $DIR"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
  else
    echo "twilio peers: npm (Node 20) is required" >&2
    exit 1
  fi
fi
mkdir -p "$DIR"
cd "$DIR"
[ -f package.json ] || echo '{"name":"tanfang-twilio-peers","private":true}' > package.json
npm install --no-audit --no-fund --ignore-scripts \
  "@stoplight/prism-cli@${PRISM_VERSION}" "@twilio/cli-core@${CLI_CORE_VERSION}"
test -x node_modules/.bin/prism && test -f "$SPEC"
echo "twilio peers: installed in $DIR"
