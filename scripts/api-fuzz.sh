#!/usr/bin/env bash
# Fuzzes the JSON API against its own OpenAPI document with schemathesis:
# a real server (the debug build) on a free loopback port over a temporary
# data folder, signed in, with a database, a contact, an attachment, a
# request and a personal token for the generated cases to reach. Every
# check but two: `ignored_auth` (the public operations take no token) and
# `positive_data_acceptance` (the document's request schemas are looser
# than the rules the services enforce, e.g. a contact e-mail's form).
# Fails on any failure or server error. Usage: scripts/api-fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${1:-120}"
venv="${SELDESK_SCHEMATHESIS_VENV:-$HOME/.cache/seldesk/schemathesis-4.32.5}"
if [ ! -x "$venv/bin/st" ]; then
  echo "==> installing schemathesis 4.32.5 in $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis==4.32.5'
fi
# The binary the test suite just built (same features: a plain `cargo build`
# would resolve features without the dev-dependencies and rebuild much).
cargo test --workspace --locked --no-run -q
data=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
admin=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/debug/seldesk serve --data "$data" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" >"$data/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$data"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
json() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }
call() { curl -sf -H 'content-type: application/json' "$@"; }
call -X POST "$base/api/v1/accounts" -d '{"name":"Fuzz Tester","company":"Fuzz Ltd","email":"fuzz@example.com","password":"violet tractor lemon"}' >/dev/null
token=$(call -X POST "$base/api/v1/auth/token" -d '{"email":"fuzz@example.com","password":"violet tractor lemon"}' | json '["token"]')
auth=(-H "Authorization: Bearer $token")
db=$(call "${auth[@]}" -X POST "$base/api/v1/databases" -d '{"name":"fuzzed"}' | json '["id"]')
cid=$(call "${auth[@]}" -X POST "$base/api/v1/databases/$db/contacts" -d '{"name":"Meera Shah","email":"meera@example.com"}' | json '["id"]')
aid=$(curl -sf "${auth[@]}" -X POST "$base/api/v1/databases/$db/contacts/$cid/attachments?name=offer.txt" --data-binary 'signed' | json '["id"]')
request=$(call "${auth[@]}" -X POST "$base/api/v1/me/requests" -d '{"kind":"question","message":"Where are my backups kept?"}' | json '["id"]')
pat=$(call "${auth[@]}" -X POST "$base/api/v1/me/tokens" -d '{"name":"fuzz","scopes":["databases:read"],"expires_in_days":1}' | json '["id"]')
cat >"$data/schemathesis.toml" <<TOML
headers = { Authorization = "Bearer $token" }
[[operations]]
include-path-regex = "^/api/v1/databases/\\\\{id\\\\}"
parameters = { id = "$db", cid = $cid, aid = $aid }
# A generated move really moves the database: at its switch-over, requests
# are told to retry in a second (503 Busy with Retry-After), by design.
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]
[[operations]]
include-path-regex = "^/api/v1/me/requests/"
parameters = { id = $request }
[[operations]]
include-path-regex = "^/api/v1/me/tokens/"
parameters = { id = "$pat" }
TOML
echo "==> schemathesis against $base/api/v1/openapi.json for ${budget}s"
# Failures are reported below, with the server's errors: no early exit.
# A request may take up to 30 s (the suite may still be finishing on a busy
# machine) and a network-level failure is tried once more: a server that
# refuses an oversized upload answers 413 and may close the connection
# before the client has sent it all, which the client sees as a reset.
set +e
"$venv/bin/st" --config-file "$data/schemathesis.toml" run "$base/api/v1/openapi.json" \
  --checks all --exclude-checks ignored_auth,positive_data_acceptance \
  --phases examples,coverage,fuzzing --max-time "$budget" --workers 2 --no-color \
  --request-timeout 30 --request-retries 1 2>&1 |
  tee "$data/fuzz.log" | awk '/ERRORS|FAILURES|SUMMARY/ { shown = 1 } shown'
status=${PIPESTATUS[0]}
set -e
if [ "$status" != 0 ]; then
  echo "==> the server's errors"
  grep -E "ERROR|WARN" "$data/server.log" | tail -n 20 || true
fi
if grep -qi "panicked" "$data/server.log"; then
  grep -i -A3 "panicked" "$data/server.log"
  status=1
fi
exit "$status"
