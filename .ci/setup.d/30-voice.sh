#!/usr/bin/env bash
# Speech (voice/): espeak-ng and sox for the synthesizers, and the deterministic copy of the Vosk
# model the tests use (~/.cache/tanfang/vosk-models/<name>-nodither: symlinks to the big files and
# --dither=0.0 in conf/mfcc.conf; plus the -fast copy of the benchmark). Idempotent.
set -euo pipefail
VENV="${VENV:-/work/main/.venv}"
missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
MODEL="${TANFANG_TEST_VOSK_MODEL:-$(cd "$REPO" && "$VENV/bin/python" -c 'from core.settings import load_settings; print(load_settings(env={}).voice.vosk_model)')}"
if [ ! -d "$MODEL" ]; then
  # a fresh machine: the official model from voice.model_url (or voice.model_mirror), sha256-checked
  echo "voice: Vosk model not found at $MODEL: fetching it (tanfang model fetch)" >&2
  (cd "$REPO" && TANFANG_VOICE__VOSK_MODEL="$MODEL" "$VENV/bin/python" -c 'from tanfang.cli import main; main()' model fetch) || {
    echo "voice: could not fetch the Vosk model to $MODEL (set voice.model_mirror, or see /work/shared/models/SOURCES.md)" >&2
    exit 1
  }
fi
cd "$REPO"
"$VENV/bin/python" -m voice.model_copy "$MODEL"
"$VENV/bin/python" -m voice.model_copy "$MODEL" --fast
