#!/usr/bin/env bash
# Runs every Seldesk test on a fresh Debian machine with Rust:
# installs what is missing (Chromium, chromedriver, PostgreSQL), starts
# PostgreSQL if it is installed but not running, then runs the format check,
# clippy with warnings denied, and the whole suite on SQLite and on PostgreSQL,
# browser journeys included.
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
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
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

# 3. Rust checks and tests.
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
say "tests on SQLite"
cargo test --workspace --locked 2>&1 | tee -a "$log"
say "tests on PostgreSQL ($(printf '%s' "$PG_URL" | sed -E 's#://([^:@/]+):[^@]*@#://\1:***@#'))"
SELDESK_TEST_PG="$PG_URL" cargo test --workspace --locked 2>&1 | tee -a "$log"
say "promise coverage"
./scripts/promises.sh --check
# One closing line over both runs.
awk '/^test result:/ { p += $4; f += $6 } END { printf "\nall tests: %d passed, %d failed\n", p, f }' "$log"
