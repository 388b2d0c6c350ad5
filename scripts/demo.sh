#!/bin/sh
# make demo: the main job end to end on the built-in test server — start bulk-testserver, export a
# Group with bulk-kickoff | bulk-poll | bulk-fetch, inline the clinical notes, load DuckDB, and
# print what landed. Everything goes under demo-out/ (or $OUT); rerunning starts afresh.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
OUT=${OUT:-demo-out}
PATIENTS=${PATIENTS:-50}
PATH="$PWD/$BIN:$PATH"
export PATH

rm -rf "$OUT"
mkdir -p "$OUT"

# The server prints its base URL as the first line of stdout, then serves until signalled.
bulk-testserver --patients "$PATIENTS" --polls 3 --fault 503@status --fault 429:1@file >"$OUT/server.url" 2>"$OUT/server.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
i=0
while [ ! -s "$OUT/server.url" ]; do
  i=$((i + 1))
  if [ "$i" -gt 300 ] || ! kill -0 "$server" 2>/dev/null; then
    echo "demo: bulk-testserver did not start:" >&2
    cat "$OUT/server.log" >&2
    exit 1
  fi
  sleep 0.1
done
base=$(head -n 1 "$OUT/server.url")
echo "demo: test server at $base (with a 503 on the status URL and a 429 on a file, to show the retries)"

BULK_LOG="$OUT/export.log"
export BULK_LOG
sh scripts/export-and-load.sh "$base/Group/all" --export-to "$OUT/export" --db "$OUT/bulkpipe.duckdb"
