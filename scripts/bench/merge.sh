#!/bin/sh
# Benchmark ndjson-merge against cat and sort -u of the same bytes (issue 6): MB megabytes of
# Observations in 10 slice folders, 20 % of the lines copies of other slices' lines.
#
#   scripts/bench/merge.sh [MB [WORKDIR]]      # default 200 MB in a temporary folder
#
# MEM (default 256MB) is ndjson-merge --mem, and sort -S gets the same number of MiB.
# KEEP=1 keeps WORKDIR. Reports wall seconds, input MB/s (1 MB = 1e6 bytes) and peak RSS, with
# GNU time when /usr/bin/time is GNU, else getrusage(2) through scripts/bench/benchtool.
# Caches are warm: the input is read once before the first measurement.
set -eu

mb=${1:-200}
work=${2:-}
mem=${MEM:-256MB}
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "$work" ]; then
	work=$(mktemp -d "${TMPDIR:-/tmp}/merge-bench.XXXXXX")
fi
cleanup() {
	if [ "${KEEP:-0}" != 1 ]; then
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$work/bin" "$work/tmp"
exec 3>&1 # results go to fd 3: the commands' stdout is redirected

(cd "$root" && go build -o "$work/bin/" ./cmd/ndjson-merge ./scripts/bench/benchtool)
echo "generating $mb MB in 10 slices with 20% duplicates under $work" >&2
"$work/bin/benchtool" gen -mb "$mb" -slices 10 -dup 0.2 -out "$work/in" >&2
bytes=$(cat "$work"/in/*/Observation.*.ndjson | wc -c)

if /usr/bin/time --version 2>&1 | grep -q GNU; then
	timer=gnu
else
	timer=rusage
fi

# measure NAME CMD [ARG...]: runs CMD (stdout as redirected by the caller), then prints a result row.
measure() {
	name=$1
	shift
	rm -f "$work/time"
	if [ "$timer" = gnu ]; then
		/usr/bin/time -f '%e %M' -o "$work/time" "$@"
	else
		"$work/bin/benchtool" rusage -o "$work/time" "$@"
	fi
	# GNU time prefixes "Command exited with non-zero status N" on failure; take the last line
	tail -n 1 "$work/time" | awk -v name="$name" -v bytes="$bytes" '{
		mbs = ($1 > 0) ? bytes / 1e6 / $1 : 0
		printf "%-14s %8.2f %10.1f %12.1f\n", name, $1, mbs, $2 / 1024
	}' >&3
}

# sort -S takes K/M/G as powers of 1024 and no trailing B
sortmem=$(printf '%s' "$mem" | sed 's/[iI]\{0,1\}[bB]$//')

cat "$work"/in/*/Observation.*.ndjson >/dev/null # warm the page cache for every contestant
printf '%s MB input (%s bytes), --mem %s, %s\n' "$mb" "$bytes" "$mem" "$(nproc 2>/dev/null || echo '?') CPUs"
printf '%-14s %8s %10s %12s\n' tool seconds 'MB/s' 'peak RSS MiB'
measure cat cat "$work"/in/*/Observation.*.ndjson >"$work/cat.ndjson"
rm -f "$work/cat.ndjson"
measure 'sort -u' env LC_ALL=C sort -u -S "$sortmem" -T "$work/tmp" -o "$work/sort.ndjson" "$work"/in/*/Observation.*.ndjson
rm -f "$work/sort.ndjson"
measure ndjson-merge "$work/bin/ndjson-merge" "$work"/in/* --dir "$work/merged" --mem "$mem" --quiet
printf 'ndjson-merge kept %s of %s lines\n' \
	"$(cat "$work"/merged/Observation.*.ndjson | wc -l | tr -d ' ')" "$(cat "$work"/in/*/Observation.*.ndjson | wc -l | tr -d ' ')"
