#!/usr/bin/env bash
# Rasa for the app (dialogs/): its own Python 3.10 virtualenv and the trained model, both cached
# under the Rasa cache dir (rasa.cache_dir, default ~/.cache/tanfang) and keyed by content:
#   rasa-env/<sha256(dialogs/requirements-rasa.txt)[:12]>/   (.complete when installed)
#   rasa-models/<hash of config.yml, domain, data/**, requirements>.tar.gz
# Idempotent: with unchanged content both are reused and this takes a second.
# Rasa 3.6 needs Python < 3.11: python3.10 from the OS, or pyenv's 3.10.x.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-$PWD/.venv}

have_py310() {
  if command -v python3.10 >/dev/null 2>&1 && python3.10 -c 'import venv' >/dev/null 2>&1; then
    return 0
  fi
  for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10.*/bin/python; do
    [ -x "$p" ] && "$p" -c 'import venv' >/dev/null 2>&1 && return 0
  done
  return 1
}

if ! have_py310; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
      && apt-cache show python3.10-venv >/dev/null 2>&1; then
    echo "rasa: installing python3.10 from the OS packages"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.10 python3.10-venv >/dev/null
  elif command -v pyenv >/dev/null 2>&1 || [ -x "${PYENV_ROOT:-$HOME/.pyenv}/bin/pyenv" ]; then
    echo "rasa: building Python 3.10 with pyenv (several minutes)"
    "$(command -v pyenv || echo "${PYENV_ROOT:-$HOME/.pyenv}/bin/pyenv")" install -s 3.10
  else
    echo "rasa: Python 3.10 is required for Rasa 3.6 (python3.10 on PATH or pyenv 3.10.x)" >&2
    exit 1
  fi
fi

# Creates the Rasa environment when missing, then trains unless the model is cached.
"$VENV/bin/tanfang" rasa train
"$VENV/bin/tanfang" rasa status
