#!/usr/bin/env bash
# telegram-test-api 4.2.1 (the Bot API emulator of tests/telegram) into ~/.cache/tanfang/npm.
set -euo pipefail
DIR="$HOME/.cache/tanfang/npm/telegram-test-api"
if [ -f "$DIR/node_modules/telegram-test-api/package.json" ] && \
   grep -q '"version": "4.2.1"' "$DIR/node_modules/telegram-test-api/package.json"; then
  exit 0
fi
command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
mkdir -p "$DIR"
cd "$DIR"
[ -f package.json ] || npm init -y >/dev/null
npm install --no-audit --no-fund telegram-test-api@4.2.1
