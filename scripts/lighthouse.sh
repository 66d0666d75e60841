#!/usr/bin/env bash
# Lighthouse 12 (npm) with Debian's Chromium on the public pages, mobile
# (Lighthouse's default: a phone, throttled) and desktop. Prints each
# page's four scores; the figures go to docs/accessibility.md.
# Usage: scripts/lighthouse.sh [BINARY]   (default: target/release/seldesk,
# else target/debug/seldesk)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${SELDESK_LIGHTHOUSE_DIR:-$HOME/.cache/seldesk/lighthouse-12}"
if [ ! -x "$dir/node_modules/.bin/lighthouse" ]; then
  echo "==> installing lighthouse 12 in $dir"
  mkdir -p "$dir"
  (cd "$dir" && npm install --silent --no-audit --no-fund --no-save lighthouse@12 >/dev/null)
fi
bin="${1:-}"
if [ -z "$bin" ]; then
  if [ -x target/release/seldesk ]; then bin=target/release/seldesk; else bin=target/debug/seldesk; fi
fi
data=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" serve --data "$data" --listen "127.0.0.1:$port" --admin-listen 127.0.0.1:0 >"$data/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
export CHROME_PATH="${CHROMIUM:-/usr/bin/chromium}"
printf '%-10s %-8s %11s %13s %14s %5s\n' page form performance accessibility best-practices seo
for page in / /pricing /privacy /signup /careers; do
  for form in mobile desktop; do
    preset=(); [ "$form" = desktop ] && preset=(--preset=desktop)
    "$dir/node_modules/.bin/lighthouse" "http://127.0.0.1:$port$page" "${preset[@]}" --quiet \
      --chrome-flags="--headless=new --no-sandbox --disable-gpu" --output=json --output-path="$data/lh.json" >/dev/null 2>&1
    python3 - "$data/lh.json" "$page" "$form" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["categories"]
s = lambda k: round(c[k]["score"] * 100)
print(f"{sys.argv[2]:<10} {sys.argv[3]:<8} {s('performance'):>11} {s('accessibility'):>13} {s('best-practices'):>14} {s('seo'):>5}")
for k in ("accessibility", "best-practices", "seo"):
    for ref in c[k]["auditRefs"]:
        a = r["audits"][ref["id"]]
        if ref["weight"] and a.get("score") is not None and a["score"] < 1:
            print(f"    {k}: {a['id']}: {a['title']}")
PY
  done
done
