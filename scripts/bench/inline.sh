#!/bin/sh
# Benchmark of ndjson-inline (issue 5), each part against a baseline on the same data:
#   1. pass-through of a file of resources it leaves alone (Observations), against cat
#      (target: 1 GB/s or more);
#   2. rewriting a DocumentReference file whose attachments bulk-testserver serves, against
#      parallel curl fetching the same URLs (as many curls at once as ndjson-inline's
#      --parallel, each fetching batches of 200 URLs over one keep-alive connection).
# Sizes are in MB (1e6 bytes) of input: PASS_MB (default 1024), NOTES_MB (default 1024).
# PARALLEL (default 5) downloads at once; PATIENTS (default 100) sizes the server's data set.
# Usage: scripts/bench/inline.sh, or PASS_MB=300 NOTES_MB=30 scripts/bench/inline.sh on a
# small machine. Needs go and curl.
set -eu

PASS_MB=${PASS_MB:-1024}
NOTES_MB=${NOTES_MB:-1024}
PARALLEL=${PARALLEL:-5}
PATIENTS=${PATIENTS:-100}

root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/inline-bench.XXXXXX")
srv_pid=
cleanup() {
	if [ -n "$srv_pid" ]; then
		kill "$srv_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building ndjson-inline, bulk-testserver and inlinegen..." >&2
(cd "$root" && go build -o "$work/bin/" ./cmd/ndjson-inline ./cmd/bulk-testserver ./scripts/bench/inlinegen) || exit 1
bin=$work/bin

# mbps BYTES SECONDS; ratio A B
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / 1e6 / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
size() { wc -c <"$1" | tr -d ' '; }

# 1. Pass-through.
"$bin/inlinegen" passthrough -mb "$PASS_MB" -out "$work/obs.ndjson" || exit 1
bytes=$(size "$work/obs.ndjson")
"$bin/inlinegen" time -in "$work/obs.ndjson" cat >/dev/null || exit 1 # warm the page cache
t_cat=$("$bin/inlinegen" time -in "$work/obs.ndjson" cat) || exit 1
# No server is needed: nothing in the file is a target (the base is never contacted).
t_inl=$("$bin/inlinegen" time -in "$work/obs.ndjson" "$bin/ndjson-inline" --quiet --fhir-url http://127.0.0.1:9/fhir) || exit 1
cat_mbps=$(mbps "$bytes" "$t_cat")
inl_mbps=$(mbps "$bytes" "$t_inl")
echo "pass-through, $((bytes / 1000000)) MB of Observations:"
echo "  cat            ${t_cat} s  ${cat_mbps} MB/s"
echo "  ndjson-inline  ${t_inl} s  ${inl_mbps} MB/s  ($(ratio "$t_cat" "$t_inl") x cat's speed; target 1000 MB/s)"
rm -f "$work/obs.ndjson"

# 2. Rewriting notes whose attachments come from the test server.
"$bin/bulk-testserver" --patients "$PATIENTS" >"$work/server.out" 2>"$work/server.err" &
srv_pid=$!
i=0
while [ ! -s "$work/server.out" ]; do
	i=$((i + 1))
	if [ "$i" -gt 60 ]; then
		echo "inline.sh: bulk-testserver did not start:" >&2
		cat "$work/server.err" >&2
		exit 1
	fi
	sleep 1
done
base=$(head -n 1 "$work/server.out")
mkdir "$work/curl"
n=$("$bin/inlinegen" notes -mb "$NOTES_MB" -patients "$PATIENTS" -base "$base" -out "$work/notes.ndjson" \
	-curl "$work/curl") || exit 1
bytes=$(size "$work/notes.ndjson")
t_inl=$("$bin/inlinegen" time -in "$work/notes.ndjson" -out "$work/notes.out" \
	"$bin/ndjson-inline" --parallel "$PARALLEL" --fhir-url "$base" 2>"$work/inline.err") || {
	cat "$work/inline.err" >&2
	exit 1
}
summary=$(tail -n 1 "$work/inline.err")
out_bytes=$(size "$work/notes.out")
(cd "$work/curl" && ls) >"$work/batches"
t_curl=$("$bin/inlinegen" time -in "$work/batches" sh -c "cd '$work/curl' && xargs -P $PARALLEL -n 1 curl -sS --fail -K") || exit 1
echo "rewriting $((bytes / 1000000)) MB of DocumentReferences ($n attachments, $((out_bytes / 1000000)) MB out), $PARALLEL at once:"
echo "  curl           ${t_curl} s  $(awk -v n="$n" -v s="$t_curl" 'BEGIN { printf "%.0f", n / s }') attachments/s"
echo "  ndjson-inline  ${t_inl} s  $(awk -v n="$n" -v s="$t_inl" 'BEGIN { printf "%.0f", n / s }') attachments/s, $(mbps "$bytes" "$t_inl") MB/s in, $(mbps "$out_bytes" "$t_inl") MB/s out  ($(ratio "$t_curl" "$t_inl") x curl's speed)"
echo "  ($summary)"
