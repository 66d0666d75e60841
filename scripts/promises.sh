#!/usr/bin/env bash
# Lists every promise of the privacy policy with the tests tagged for it
# (`// promise: ID` on the line(s) before a test), and with --check exits 1
# when a promise that policy/seldesk.toml marks as implemented has none.
#
#   scripts/promises.sh            table of promise -> tests
#   scripts/promises.sh --check    also fail on implemented promises without a test
#   scripts/promises.sh --count    one line: "N of M promises have a tagged test"
set -euo pipefail
cd "$(dirname "$0")/.."

promises_md="../shared/PROMISES.md"
policy="policy/seldesk.toml"

# Every promise ID: from the specification when it is beside the checkout,
# plus the ones the policy file names.
ids=$( {
  [ -f "$promises_md" ] && grep -oE '^\| [A-Z]{2,3}-[0-9]+ ' "$promises_md" | tr -d '| '
  grep -oE '"[A-Z]{2,3}-[0-9]+"' "$policy" | tr -d '"'
} | sort -u -t- -k1,1 -k2,2n)

# tag lines: file:line:// promise: A-1, B-2  ->  "ID<TAB>file::test_name"
tags=$(git ls-files -co --exclude-standard -- '*.rs' | xargs awk '
  FNR == 1 { pending = "" }
  /\/\/ promise:/ {
    sub(/.*\/\/ promise:[ ]*/, "")
    gsub(/[ ]/, "")
    pending = (pending == "" ? $0 : pending "," $0)
    next
  }
  pending != "" && /fn [a-zA-Z0-9_]+/ {
    match($0, /fn [a-zA-Z0-9_]+/)
    name = substr($0, RSTART + 3, RLENGTH - 3)
    n = split(pending, list, ",")
    for (i = 1; i <= n; i++) if (list[i] != "") printf "%s\t%s::%s\n", list[i], FILENAME, name
    pending = ""
  }
' 2>/dev/null || true)

implemented=$(awk '/^implemented_promises/ { print }' "$policy" | grep -oE '[A-Z]{2,3}-[0-9]+' || true)

mode="${1:-}"
covered=0
total=0
missing=()
for id in $ids; do
  total=$((total + 1))
  tests=$(printf '%s\n' "$tags" | awk -F'\t' -v id="$id" '$1 == id { print $2 }' | sort -u)
  if [ -n "$tests" ]; then covered=$((covered + 1)); fi
  if [ "$mode" != "--count" ]; then
    if [ -n "$tests" ]; then
      printf '%-7s %s\n' "$id" "$(printf '%s' "$tests" | paste -sd' ' -)"
    else
      printf '%-7s -\n' "$id"
    fi
  fi
  if printf '%s\n' $implemented | grep -qx "$id" && [ -z "$tests" ]; then missing+=("$id"); fi
done
echo "$covered of $total promises have a tagged test"
if [ "$mode" = "--check" ] && [ ${#missing[@]} -gt 0 ]; then
  echo "error: marked implemented in $policy but no test is tagged: ${missing[*]}" >&2
  exit 1
fi

# Every sentence of the published text carries the promises that prove it
# (docs/policy.md): the binary fails on an unmarked sentence, and each
# promise a sentence cites needs a tagged test.
if [ "$mode" = "--check" ]; then
  cited=$(cargo run -q -p seldesk -- policy promises) || exit 1
  uncited=()
  unknown=()
  for id in $cited; do
    # Without the specification beside the checkout, only the policy file's
    # IDs are known: an ID is then checked for its test only.
    if [ -f "$promises_md" ] && ! printf '%s\n' $ids | grep -qx "$id"; then unknown+=("$id"); continue; fi
    if ! printf '%s\n' "$tags" | awk -F'\t' -v id="$id" '$1 == id { found = 1 } END { exit !found }'; then
      uncited+=("$id")
    fi
  done
  if [ ${#unknown[@]} -gt 0 ]; then
    echo "error: the policy text cites promises that do not exist: ${unknown[*]}" >&2
    exit 1
  fi
  if [ ${#uncited[@]} -gt 0 ]; then
    echo "error: the policy text states promises no test proves: ${uncited[*]}" >&2
    exit 1
  fi
  echo "$(printf '%s\n' $cited | wc -l) promises cited by the policy text, each with a tagged test"
fi
