#!/bin/sh
# Run every Go fuzz target in the module for a short time each (CI) or longer by hand:
#   scripts/fuzz.sh            # 3s per target
#   FUZZTIME=2m scripts/fuzz.sh pkg/fhirclient
# New crashers land in the package's testdata/fuzz/ and then fail plain `go test` until fixed.
set -eu
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-3s}
root=${1:-.}
failed=0
count=0
# One "file name" pair per fuzz target, from the test sources themselves.
targets=$(grep -rl --include='*_test.go' '^func Fuzz' "$root" | sort | while read -r file; do
  sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file" | while read -r name; do
    printf '%s %s\n' "$(dirname "$file")" "$name"
  done
done)
# The here-document keeps the loop in this shell, so the counters survive it.
while read -r dir name; do
  [ -n "$dir" ] || continue
  count=$((count + 1))
  if go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "./$dir" >"${TMPDIR:-/tmp}/fuzz.$$.log" 2>&1; then
    echo "ok   $dir $name"
  else
    echo "FAIL $dir $name"
    cat "${TMPDIR:-/tmp}/fuzz.$$.log"
    failed=$((failed + 1))
  fi
done <<EOF2
$targets
EOF2
rm -f "${TMPDIR:-/tmp}/fuzz.$$.log"
echo "fuzz: $((count - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
