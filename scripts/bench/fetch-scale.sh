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
# NOFILE (default 256) is the descriptor limit, PARALLEL (default 5, bulk-fetch's default) its
# --parallel. BEFORE=/path/to/bulk-fetch also runs another build (an older one, to compare) on
# the same manifest. CURL=1 also downloads the same URLs with `xargs -P PARALLEL curl` under the
# same limit, CURL_BATCH (default 100) URLs per curl over one keep-alive connection: one curl per
# file spends more time starting processes than downloading (descriptors are summed over xargs and
# its curls). RESULTS=FILE appends one JSON line
# per run to FILE in the format of scripts/bench/report (make bench-scale). KEEP=1 keeps WORKDIR.
# Needs Linux (/proc), GNU time (/usr/bin/time) and pgrep.
set -eu

files=${1:-20000}
work=${2:-}
nofile=${NOFILE:-256}
parallel=${PARALLEL:-5}
batch=${CURL_BATCH:-100}
before=${BEFORE:-}
results=${RESULTS:-}
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
grep -o '"url":"[^"]*"' "$work/manifest.ndjson" | sed 's/^"url":"//; s/"$//' >"$work/urls"
nfiles=$(wc -l <"$work/urls" | tr -d ' ')
echo "$nfiles files in the manifest; ulimit -n $nofile" >&2
loadavg() { cut -d' ' -f1 /proc/loadavg; }
# Descriptors a command started from here inherits beyond stdio (a terminal multiplexer's or a CI
# runner's leaked pipes): counted in each process sampled below, they are not the program's own.
# ls holds one more, the /proc/self/fd it reads.
inherited=$(($(sh -c 'exec ls /proc/self/fd' </dev/null 2>/dev/null | wc -l) - 4))
if [ "$inherited" -lt 0 ]; then
	inherited=0
fi

# run LABEL BULK-FETCH|curl: one download into a fresh folder, sampled while it runs.
run() {
	label=$1
	bin=$2
	dir=$work/out.$label
	rm -rf "$dir"
	load_start=$(loadavg)
	start=$(date +%s.%N)
	if [ "$bin" = curl ]; then
		mkdir -p "$dir"
		shown="cd \$WORK/out.curl && xargs -P $parallel -n $batch curl -s -f --remote-name-all <\$WORK/urls"
		# shellcheck disable=SC2016 # expanded by the inner sh
		/usr/bin/time -o "$work/time.$label" -f '%e %M' \
			sh -c 'ulimit -n "$1" && cd "$2" && exec xargs -P "$3" -n "$4" curl -s -f --remote-name-all <"$5" 2>"$6"' \
			sh "$nofile" "$dir" "$parallel" "$batch" "$work/urls" "$work/err.$label" &
	else
		shown="bulk-fetch --quiet --no-delete --parallel $parallel --dir \$WORK/out.$label \$WORK/manifest.ndjson"
		# shellcheck disable=SC2016 # expanded by the inner sh
		/usr/bin/time -o "$work/time.$label" -f '%e %M' \
			sh -c 'ulimit -n "$1" && exec "$2" --quiet --no-delete --parallel "$3" --dir "$4" "$5" >/dev/null 2>"$6"' \
			sh "$nofile" "$bin" "$parallel" "$dir" "$work/manifest.ndjson" "$work/err.$label" &
	fi
	timer=$!
	fds=0
	wchar=0
	pid=
	while kill -0 "$timer" 2>/dev/null; do
		if [ -z "$pid" ]; then
			# GNU time's child: the sh that execs bulk-fetch (or xargs).
			pid=$(pgrep -P "$timer" || true)
		fi
		if [ -n "$pid" ] && [ -d "/proc/$pid/fd" ]; then
			n=0
			# For curl, the descriptors of xargs and of every curl it runs at the time.
			for p in $pid $( [ "$bin" = curl ] && pgrep -P "$pid"); do
				# shellcheck disable=SC2012 # descriptor names are numbers
				n=$((n + $(ls "/proc/$p/fd" 2>/dev/null | wc -l) - inherited))
			done
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
	load_end=$(loadavg)
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
	if [ -n "$results" ]; then
		# The manifest's files: Type.NNN.ndjson and error/ from bulk-fetch (not its log.ndjson),
		# the URLs' names from curl.
		got=$(find "$dir" -path "$dir/.bulkpipe" -prune -o -type f -name '*.ndjson' ! -name log.ndjson -print | wc -l)
		bytes=$(find "$dir" -path "$dir/.bulkpipe" -prune -o -type f -name '*.ndjson' ! -name log.ndjson -exec cat {} + | wc -c)
		role=tool
		name=bulk-fetch
		if [ "$bin" = curl ]; then
			role=limit
			name="xargs -P $parallel curl"
		elif [ "$label" = before ]; then
			name="bulk-fetch (BEFORE)"
		fi
		awk -v step="fetch $nfiles files" -v name="$name" -v role="$role" -v bytes="$bytes" -v got="$got" \
			-v start="$start" -v end="$end" -v rss="$rss" -v l0="$load_start" -v l1="$load_end" -v fds="$fds" \
			-v status="$status" -v failed="$failed" -v shown="$shown" 'BEGIN {
			printf "{\"step\":\"%s\",\"name\":\"%s\",\"role\":\"%s\",\"bytes\":%d,\"items\":%d,\"unit\":\"files\",\"wall\":%.3f,\"user\":0,\"sys\":0,\"rssKiB\":%d,\"load1\":%s,\"load1Start\":%s,\"fds\":%d,\"note\":\"%d failed (EMFILE)\",\"cmd\":\"%s\",\"exit\":%d}\n",
				step, name, role, bytes, got, end - start, rss, l1, l0, fds, failed, shown, status
		}' >>"$results"
	fi
}

if [ -n "$before" ]; then
	run before "$before"
fi
run after "$work/bin/bulk-fetch"
if [ "${CURL:-0}" = 1 ]; then
	run curl curl
fi
