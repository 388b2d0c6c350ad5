#!/bin/sh
# Benchmark bulk-fetch against parallel `curl -o` on the same files (issue 4): bulk-testserver
# serves an export of about MB megabytes; both clients fetch every file at the same parallelism
# into the same disk, each followed by sync, and the server alone is timed with curl to /dev/null
# (it must be at least 3x faster than the tool, or the ratio measures the server).
#
#   scripts/bench/fetch.sh [MB [WORKDIR]]      # default 300 MB in a temporary folder
#
# PARALLEL (default 5) is both clients' parallelism; ROUNDS (default 2) runs each client that
# many times, alternating, and keeps the best wall time. KEEP=1 keeps WORKDIR. Needs curl and GNU
# time (/usr/bin/time). Reports wall seconds, MB/s (1 MB = 1e6 bytes), CPU seconds per GB (user +
# system, GB = 1e9 bytes) and peak RSS.
set -eu

mb=${1:-300}
work=${2:-}
parallel=${PARALLEL:-5}
rounds=${ROUNDS:-2}
root=$(cd "$(dirname "$0")/../.." && pwd)
for tool in curl /usr/bin/time; do
	command -v "$tool" >/dev/null || {
		echo "fetch.sh: needs $tool" >&2
		exit 1
	}
done
if [ -z "$work" ]; then
	work=$(mktemp -d "${TMPDIR:-/tmp}/fetch-bench.XXXXXX")
fi
server=
cleanup() {
	if [ -n "$server" ]; then
		kill "$server" 2>/dev/null || true
	fi
	if [ "${KEEP:-0}" != 1 ]; then
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$work/bin"
exec 3>&1 # results go to fd 3

(cd "$root" && go build -o "$work/bin/" ./cmd/bulk-testserver ./cmd/bulk-kickoff ./cmd/bulk-poll ./cmd/bulk-fetch)
PATH="$work/bin:$PATH"
export PATH

# About 7 MiB per 50 generated patients; files of at most 100000 lines (or 50 MB).
patients=$((mb * 50 / 7))
bulk-testserver --patients "$patients" --polls 0 --retry-after 0 --file-lines 100000 >"$work/url" 2>"$work/server.log" &
server=$!
i=0
while [ ! -s "$work/url" ]; do
	i=$((i + 1))
	if [ "$i" -gt 600 ] || ! kill -0 "$server" 2>/dev/null; then
		echo "fetch.sh: bulk-testserver did not start" >&2
		cat "$work/server.log" >&2
		exit 1
	fi
	sleep 0.1
done
base=$(head -n 1 "$work/url")
echo "generating the export ($patients patients)..." >&2
bulk-kickoff "$base" 2>/dev/null | bulk-poll --quiet --timeout 1h >"$work/manifest.ndjson"
grep -o '"url":"[^"]*"' "$work/manifest.ndjson" | sed 's/^"url":"//; s/"$//' >"$work/urls"
nfiles=$(wc -l <"$work/urls")

# seconds and CPU of a command, from GNU time: "wall user sys maxrss_kb"
timed() {
	out=$1
	shift
	/usr/bin/time -o "$out" -f '%e %U %S %M' "$@"
}

# The server alone: the first run warms the page cache of its files for both clients, the second
# is timed.
# shellcheck disable=SC2016 # expanded by the inner sh
null_cmd='xargs -P "$1" -n 1 curl -s -f -o /dev/null <"$2"'
sh -c "$null_cmd" sh "$parallel" "$work/urls"
timed "$work/t.null.1" sh -c "$null_cmd" sh "$parallel" "$work/urls"

run_curl() {
	rm -rf "$work/curl"
	mkdir -p "$work/curl"
	# shellcheck disable=SC2016 # expanded by the inner sh
	timed "$work/t.curl.$1" sh -c 'cd "$1" && xargs -P "$2" -n 1 curl -s -f -O <"$3" && sync' sh "$work/curl" "$parallel" "$work/urls"
}
run_fetch() {
	rm -rf "$work/fetch"
	# shellcheck disable=SC2016 # expanded by the inner sh
	timed "$work/t.fetch.$1" sh -c 'bulk-fetch --quiet --no-delete --parallel "$2" --dir "$1" "$3" >/dev/null 2>"$1.err" && sync' sh "$work/fetch" "$parallel" "$work/manifest.ndjson" || {
		cat "$work/fetch.err" >&2
		exit 1
	}
}
r=1
while [ "$r" -le "$rounds" ]; do
	run_curl "$r"
	run_fetch "$r"
	r=$((r + 1))
done
bytes=$(cat "$work"/curl/* | wc -c)
fetched=$(cat "$work"/fetch/[A-Z]*.ndjson "$work"/fetch/*/[A-Z]*.ndjson 2>/dev/null | wc -c)
if [ "$bytes" -ne "$fetched" ]; then
	echo "fetch.sh: curl got $bytes bytes, bulk-fetch $fetched" >&2
	exit 1
fi

# best wall time of the rounds, with its CPU and RSS
best() {
	sort -n "$work"/t."$1".* | head -n 1
}
report() {
	awk -v name="$1" -v bytes="$bytes" '{ printf "%-30s %7.2f s  %7.1f MB/s  %6.2f CPU-s/GB  %6.1f MiB peak RSS\n", name, $1, bytes / $1 / 1e6, ($2 + $3) / (bytes / 1e9), $4 / 1024 }'
}
{
	printf 'export: %d files, %.1f MB; parallelism %d; best of %d rounds; %s\n' "$nfiles" "$(echo "$bytes" | awk '{ print $1 / 1e6 }')" "$parallel" "$rounds" "$(nproc) CPUs"
	best null | report "server alone (curl >/dev/null)"
	best curl | report "curl -o + sync"
	best fetch | report "bulk-fetch + sync"
	set -- "$(best null | cut -d' ' -f1)" "$(best curl | cut -d' ' -f1)" "$(best fetch | cut -d' ' -f1)"
	awk -v s="$1" -v c="$2" -v f="$3" 'BEGIN {
		printf "bulk-fetch throughput / curl throughput: %.2f (target >= 0.90)\n", c / f
		printf "server alone / bulk-fetch speed: %.1fx (must be >= 3 for the ratio to measure the client)\n", f / s
	}'
} >&3
