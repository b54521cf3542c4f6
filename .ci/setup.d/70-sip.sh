#!/usr/bin/env bash
# Test peers of the SIP line (voice/sip_line.py): Kamailio as the carrier's registrar + proxy and
# baresip as an independent SIP phone (tests/sip_peers.py starts them on free ports of 127.0.0.1).
# PJSIP itself comes from the pjsua2-python wheel in pyproject.toml (installed with the venv).
# Idempotent: installs only what is missing.
set -euo pipefail
VENV="${VENV:-/work/main/.venv}"
missing=()
command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ] || missing+=(kamailio)
command -v baresip >/dev/null 2>&1 || missing+=(baresip-core)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The Debian package enables a system-wide kamailio service on 5060; the tests never use it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled kamailio >/dev/null 2>&1; then
  systemctl disable --now kamailio >/dev/null 2>&1 || true
fi
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import pjsua2' >/dev/null 2>&1; then
  "$VENV/bin/pip" install -q 'pjsua2-python>=2.15.1,<2.16'
fi
if [ -x "$VENV/bin/python" ]; then "$VENV/bin/python" -c 'import pjsua2'; fi
echo "sip peers: ready (kamailio $(kamailio -v 2>/dev/null | head -1 | awk '{print $3}'), baresip-core, pjsua2)"
