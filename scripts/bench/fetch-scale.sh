#!/bin/sh
# Benchmark bulk-fetch on a manifest of many tiny files (issue 14): bulk-testserver serves an
# export of about FILES one-line files, and bulk-fetch downloads them with the default --parallel
# under `ulimit -n NOFILE`. Reported per run: exit status, files that failed with "too many open
# files", wall seconds, the most descriptors bulk-fetch held (sampled every 50 ms from
# /proc/PID/fd), peak RSS (GNU time), bytes bulk-fetch wrote per file (wchar of /proc/PID/io at
# the last sample: data, log and state together) and the size of the final state.json.
#
#   scripts/bench/fetch-scale.sh [FILES [WORKDIR]]   # default 20000 files, a temporary folder
#
# NOFILE (default 256) is the descriptor limit. BEFORE=/path/to/bulk-fetch also runs another
# build (an older one, to compare) on the same manifest. KEEP=1 keeps WORKDIR. Needs Linux
# (/proc) and GNU time (/usr/bin/time).
set -eu

files=${1:-20000}
work=${2:-}
nofile=${NOFILE:-256}
before=${BEFORE:-}
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ ! -x /usr/bin/time ] || [ ! -d /proc/self/fd ]; then
	echo "fetch-scale.sh: needs GNU time (/usr/bin/time) and /proc" >&2
	exit 1
fi
# shellcheck disable=SC3045 # ulimit -n: dash, bash and busybox sh all have it
if ! (ulimit -n "$nofile") 2>/dev/null; then
	# shellcheck disable=SC3045
	echo "fetch-scale.sh: cannot set ulimit -n $nofile (the hard limit is $(ulimit -Hn))" >&2
	exit 1
fi
if [ -n "$before" ] && [ ! -x "$before" ]; then
	echo "fetch-scale.sh: BEFORE=$before is not an executable" >&2
	exit 1
fi
if [ -z "$work" ]; then
	work=$(mktemp -d "${TMPDIR:-/tmp}/fetch-scale.XXXXXX")
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

(cd "$root" && go build -o "$work/bin/" ./cmd/bulk-testserver ./cmd/bulk-kickoff ./cmd/bulk-poll ./cmd/bulk-fetch)
PATH="$work/bin:$PATH"
export PATH

# With --file-lines 1 every resource is a file of its own: about 113 per generated patient.
patients=$((files / 113 + 1))
bulk-testserver --patients "$patients" --polls 0 --retry-after 0 --file-lines 1 >"$work/url" 2>"$work/server.log" &
server=$!
i=0
while [ ! -s "$work/url" ]; do
	i=$((i + 1))
	if [ "$i" -gt 600 ] || ! kill -0 "$server" 2>/dev/null; then
		echo "fetch-scale.sh: bulk-testserver did not start" >&2
		cat "$work/server.log" >&2
		exit 1
	fi
	sleep 0.1
done
base=$(head -n 1 "$work/url")
echo "generating the export ($patients patients)..." >&2
if ! bulk-kickoff "$base" 2>"$work/kickoff.err" >"$work/status"; then
	cat "$work/kickoff.err" >&2
	exit 1
fi
if ! bulk-poll --quiet --timeout 1h <"$work/status" >"$work/manifest.ndjson"; then
	exit 1
fi
nfiles=$(grep -o '"url":"[^"]*"' "$work/manifest.ndjson" | wc -l)
echo "$nfiles files in the manifest; ulimit -n $nofile" >&2

# run LABEL BULK-FETCH: one download into a fresh folder, sampled while it runs.
run() {
	label=$1
	bin=$2
	dir=$work/out.$label
	rm -rf "$dir"
	start=$(date +%s.%N)
	# shellcheck disable=SC2016 # expanded by the inner sh
	/usr/bin/time -o "$work/time.$label" -f '%e %M' \
		sh -c 'ulimit -n "$1" && exec "$2" --quiet --no-delete --dir "$3" "$4" >/dev/null 2>"$5"' \
		sh "$nofile" "$bin" "$dir" "$work/manifest.ndjson" "$work/err.$label" &
	timer=$!
	fds=0
	wchar=0
	pid=
	while kill -0 "$timer" 2>/dev/null; do
		if [ -z "$pid" ]; then
			# GNU time's child: the sh that execs bulk-fetch.
			pid=$(pgrep -P "$timer" || true)
		fi
		if [ -n "$pid" ] && [ -d "/proc/$pid/fd" ]; then
			# shellcheck disable=SC2012 # descriptor names are numbers
			n=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
			if [ "$n" -gt "$fds" ]; then
				fds=$n
			fi
			w=$(sed -n 's/^wchar: //p' "/proc/$pid/io" 2>/dev/null || true)
			if [ -n "$w" ]; then
				wchar=$w
			fi
		fi
		sleep 0.05
	done
	status=0
	wait "$timer" || status=$?
	end=$(date +%s.%N)
	failed=$(grep -c 'too many open files' "$work/err.$label" 2>/dev/null || true)
	state=0
	if [ -f "$dir/.bulkpipe/state.json" ]; then
		state=$(wc -c <"$dir/.bulkpipe/state.json")
	fi
	# GNU time puts "Command exited with non-zero status N" first when it did.
	rss=$(tail -n 1 "$work/time.$label" | awk '{ print $2 }')
	case $rss in
	'' | *[!0-9]*) rss=0 ;;
	esac
	awk -v label="$label" -v n="$nfiles" -v status="$status" -v failed="$failed" -v start="$start" -v end="$end" \
		-v fds="$fds" -v rss="$rss" -v wchar="$wchar" -v state="$state" 'BEGIN {
		printf "%-7s %6d files  exit %-3d %6d failed (EMFILE)  %8.1f s  %4d fds  %6.1f MiB RSS  %9d bytes written/file  state.json %d bytes\n",
			label, n, status, failed, end - start, fds, rss / 1024, wchar / n, state
	}'
}

if [ -n "$before" ]; then
	run before "$before"
fi
run after "$work/bin/bulk-fetch"
