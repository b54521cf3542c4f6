#!/usr/bin/env bash
# Records/dashboard (issue 7): Debian's chromium for the end-to-end browser tests (driven by the
# playwright Python package with executable_path=/usr/bin/chromium — no browser download),
# WenQuanYi Micro Hei (TrueType CJK outlines reportlab can embed in the printed form) and
# poppler-utils (pdftoppm renders the form to PNG). Idempotent.
set -euo pipefail
VENV=${VENV:-$(cd "$(dirname "$0")/../.." && pwd)/.venv}
missing=""
for p in chromium fonts-wqy-microhei fonts-dejavu-core poppler-utils; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "browser: missing OS packages:$missing" >&2
    exit 1
  fi
fi
"$VENV/bin/python" -c "import playwright.sync_api, pypdf" 2>/dev/null \
  || "$VENV/bin/pip" install -q "playwright>=1.40" "pypdf>=4"
test -x /usr/bin/chromium
echo "browser: chromium $(dpkg-query -W -f='${Version}' chromium), playwright ready"
