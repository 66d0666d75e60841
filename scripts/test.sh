#!/usr/bin/env bash
# Runs every Seldesk test on a fresh Debian machine with Rust:
# installs what is missing (Chromium, chromedriver, PostgreSQL, curl), starts
# PostgreSQL if it is installed but not running, then runs the format check,
# clippy with warnings denied, and the whole suite on SQLite and on PostgreSQL,
# browser journeys included, and fuzzes the API against its OpenAPI document.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. System packages.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  # Another apt (a fresh machine's own updates) may hold the lock: wait for it.
  as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
fi

# 2. PostgreSQL: start every cluster that is installed but not running.
if command -v pg_lsclusters >/dev/null 2>&1; then
  if [ -z "$(pg_lsclusters -h 2>/dev/null)" ] && command -v pg_createcluster >/dev/null 2>&1; then
    ver=$(ls /usr/lib/postgresql | sort -V | tail -n1)
    say "creating PostgreSQL $ver cluster"
    as_root pg_createcluster "$ver" main >/dev/null
  fi
  pg_lsclusters -h | while read -r ver cluster port status _; do
    if [ "$status" != "online" ]; then
      say "starting PostgreSQL $ver/$cluster"
      as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" start
    fi
  done
fi
PG_URL="${SELDESK_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
for _ in $(seq 1 30); do
  pg_isready -q -d "$PG_URL" && break
  sleep 1
done
if ! psql "$PG_URL" -Atqc 'select 1' >/dev/null 2>&1; then
  # A fresh Debian cluster refuses password-less TCP logins: give the
  # postgres role a password for tests on loopback.
  say "setting a test password for the postgres role"
  as_root su postgres -c "psql -qc \"ALTER ROLE postgres PASSWORD 'seldesk-test'\"" >/dev/null
  PG_URL="postgres://postgres:seldesk-test@127.0.0.1:5432/postgres"
fi
psql "$PG_URL" -Atqc 'select 1' >/dev/null
# Drop databases left by earlier runs.
psql "$PG_URL" -Atqc "select datname from pg_database where datname like 'seldesk_t_%'" |
  while read -r db; do psql "$PG_URL" -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null; done

# 3. An S3-compatible server on loopback for the vault's bucket tests: moto
# (from PyPI, in its own virtualenv; boto3 comes with it and the tests use it
# as an S3 client independent of ours).
MOTO_VENV="${SELDESK_MOTO_VENV:-$HOME/.cache/seldesk/moto-5.2.5}"
if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
  say "installing moto 5.2.5 in $MOTO_VENV"
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install -q 'moto[server]==5.2.5'
fi
# A real SMTP server for the mail tests: aiosmtpd, in the same virtualenv.
if ! "$MOTO_VENV/bin/python" -c 'import aiosmtpd' >/dev/null 2>&1; then
  say "installing aiosmtpd 1.4.6 in $MOTO_VENV"
  "$MOTO_VENV/bin/pip" install -q 'aiosmtpd==1.4.6'
fi
MOTO_PORT=$("$MOTO_VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >/dev/null 2>&1 &
MOTO_PID=$!
trap 'kill "$MOTO_PID" "${SMTP_PID:-}" 2>/dev/null || true' EXIT
for _ in $(seq 1 30); do
  "$MOTO_VENV/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$MOTO_PORT/')" >/dev/null 2>&1 && break
  sleep 1
done
export SELDESK_TEST_S3="http://127.0.0.1:$MOTO_PORT" SELDESK_TEST_S3_PYTHON="$MOTO_VENV/bin/python"
SMTP_PORT=$("$MOTO_VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SMTP_DIR=$(mktemp -d)
"$MOTO_VENV/bin/python" scripts/test-smtp-server.py "$SMTP_PORT" "$SMTP_DIR" >/dev/null 2>&1 &
SMTP_PID=$!
for _ in $(seq 1 30); do
  "$MOTO_VENV/bin/python" -c "import socket; socket.create_connection(('127.0.0.1', $SMTP_PORT), 1)" >/dev/null 2>&1 && break
  sleep 0.5
done
export SELDESK_TEST_SMTP="smtp://127.0.0.1:$SMTP_PORT" SELDESK_TEST_SMTP_DIR="$SMTP_DIR"

# axe-core (npm) for the accessibility checks of the browser tests: the
# tests inject it into each page they check.
AXE_DIR="${SELDESK_AXE_DIR:-$HOME/.cache/seldesk/axe-4.14.1}"
if [ ! -f "$AXE_DIR/node_modules/axe-core/axe.min.js" ]; then
  command -v npm >/dev/null 2>&1 || { as_root apt-get -o DPkg::Lock::Timeout=600 update -qq; as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq npm >/dev/null; }
  say "installing axe-core 4.14.1 in $AXE_DIR"
  mkdir -p "$AXE_DIR"
  (cd "$AXE_DIR" && npm install --silent --no-audit --no-fund --no-save axe-core@4.14.1 >/dev/null)
fi
export SELDESK_AXE="$AXE_DIR/node_modules/axe-core/axe.min.js"

# 4. Rust checks and tests.
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"; kill "$MOTO_PID" "$SMTP_PID" 2>/dev/null || true' EXIT
say "tests on SQLite"
cargo test --workspace --locked 2>&1 | tee -a "$log"
say "tests on PostgreSQL ($(printf '%s' "$PG_URL" | sed -E 's#://([^:@/]+):[^@]*@#://\1:***@#'))"
SELDESK_TEST_PG="$PG_URL" cargo test --workspace --locked 2>&1 | tee -a "$log"
say "API fuzzing against the OpenAPI document (schemathesis)"
./scripts/api-fuzz.sh 120
say "promise coverage"
./scripts/promises.sh --check
# One closing line over both runs.
awk '/^test result:/ { p += $4; f += $6 } END { printf "\nall tests: %d passed, %d failed\n", p, f }' "$log"
