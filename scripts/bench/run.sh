#!/bin/sh
# make bench (issue 8): every tool side by side, in the same run, with its physical limit, on data
# served by bulk-testserver on loopback; prints a table and rewrites the generated block of
# docs/benchmarks.md. Nothing is downloaded from outside and nothing is asserted: targets are
# printed beside the numbers.
#
#   fetch           bulk-fetch + sync      vs  parallel curl -o + sync (same files, parallelism, disk);
#                   and the server alone (curl >/dev/null), which must be >= 3x faster than the tool
#   inline (pass)   ndjson-inline          vs  cat, on the export's files it leaves alone
#   inline (notes)  ndjson-inline          vs  parallel curl of the same attachment URLs
#   merge           ndjson-merge --mem     vs  cat and sort -u (sort -S the same memory)
#   load            etl-load               vs  DuckDB SQL doing the same load (report/sqlload)
#
# Environment:
#   BENCH_SIZE_MB   export size in MB (1e6 bytes), default 1100 (>= 1 GiB); the merge input too
#   BENCH_MERGE_MB  merge input size (default BENCH_SIZE_MB)
#   BENCH_ROUNDS    rounds per contestant, alternating; the best is kept (default 2)
#   BENCH_PARALLEL  downloads at once, for the tools and for curl (default 5)
#   BENCH_MEM       ndjson-merge --mem and sort -S (default 256MB)
#   BENCH_DOC       the report to rewrite (default docs/benchmarks.md; "-" for none)
#   TMPDIR          where the one temporary folder goes (removed at the end unless KEEP=1)
# Needs go, curl, sort, sync. Wall time, CPU (user + system) and peak RSS come from wait4(2)
# through scripts/bench/report; MB = 1e6 bytes, GB = 1e9 bytes.
set -eu

size_mb=${BENCH_SIZE_MB:-1100}
merge_mb=${BENCH_MERGE_MB:-$size_mb}
rounds=${BENCH_ROUNDS:-2}
parallel=${BENCH_PARALLEL:-5}
mem=${BENCH_MEM:-256MB}
file_lines=100000
root=$(cd "$(dirname "$0")/../.." && pwd)
doc=${BENCH_DOC:-$root/docs/benchmarks.md}

for tool in go curl sort sync; do
	command -v "$tool" >/dev/null || {
		echo "run.sh: needs $tool" >&2
		exit 1
	}
done
work=$(mktemp -d "${TMPDIR:-/tmp}/bulkpipe-bench.XXXXXX")
server=
cleanup() {
	if [ -n "$server" ]; then
		kill "$server" 2>/dev/null || true
		wait "$server" 2>/dev/null || true
	fi
	if [ "${KEEP:-0}" = 1 ]; then
		echo "run.sh: kept $work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$work/bin" "$work/tmp"
results=$work/results.jsonl
meta=$work/meta
say() { echo "bench: $*" >&2; }
setmeta() { printf '%s=%s\n' "$1" "$2" >>"$meta"; }
bytes_of() { cat "$@" | wc -c | tr -d ' '; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?'; }

say "building bin/ and the bench helpers..."
(cd "$root" && go build -o bin/ ./cmd/... &&
	go build -o "$work/bin/" ./scripts/bench/report ./scripts/bench/report/sqlload ./scripts/bench/benchtool)
bin=$root/bin
report=$work/bin/report
setmeta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
setmeta go "$(go version | cut -d' ' -f3)"
setmeta work "$work"
setmeta root "$root"
setmeta size_mb "$size_mb"
setmeta rounds "$rounds"
setmeta parallel "$parallel"
setmeta mem "$mem"
setmeta file_lines "$file_lines"
setmeta load_before "$(loadavg)"

# measure STEP NAME ROLE BYTES [report flags...] -- CMD [ARG...]: one timed run, appended to
# $results; stdin and stdout are the caller's.
measure() {
	m_step=$1 m_name=$2 m_role=$3 m_bytes=$4
	shift 4
	"$report" run -o "$results" -step "$m_step" -name "$m_name" -role "$m_role" -bytes "$m_bytes" "$@"
}

# --- the test server and its export --------------------------------------------------------
# About 140 kB of NDJSON per generated patient (7 patients per MB).
patients=$((size_mb * 50 / 7))
setmeta patients "$patients"
say "starting bulk-testserver --patients $patients (generating the data set)..."
"$bin/bulk-testserver" --patients "$patients" --polls 0 --retry-after 0 --file-lines "$file_lines" \
	>"$work/url" 2>"$work/server.log" &
server=$!
i=0
while [ ! -s "$work/url" ]; do
	i=$((i + 1))
	if [ "$i" -gt 6000 ] || ! kill -0 "$server" 2>/dev/null; then
		echo "run.sh: bulk-testserver did not start" >&2
		cat "$work/server.log" >&2
		exit 1
	fi
	sleep 0.1
done
base=$(head -n 1 "$work/url")
setmeta base "$base"
"$bin/bulk-kickoff" --quiet "$base" | "$bin/bulk-poll" --quiet --timeout 1h >"$work/manifest.ndjson"
grep -o '"url":"[^"]*"' "$work/manifest.ndjson" | sed 's/^"url":"//; s/"$//' >"$work/urls"
nfiles=$(wc -l <"$work/urls" | tr -d ' ')
setmeta export_files "$nfiles"

# --- fetch: bulk-fetch vs parallel curl -o, each + sync; the server alone -------------------
# The method of scripts/bench/fetch.sh, here so every step shares one server and the fetched
# folder feeds the later steps. A first untimed pass warms the server and the page cache.
say "fetch: $nfiles files, $parallel at once, $rounds rounds..."
# shellcheck disable=SC2016 # expanded by the inner sh
null_cmd='xargs -P "$1" -n 1 curl -s -f -o /dev/null <"$2"'
sh -c "$null_cmd" sh "$parallel" "$work/urls"
mkdir -p "$work/curl"
(cd "$work/curl" && xargs -P "$parallel" -n 1 curl -s -f -O <"$work/urls")
export_bytes=$(bytes_of "$work"/curl/*)
setmeta export_bytes "$export_bytes"
r=1
while [ "$r" -le "$rounds" ]; do
	measure fetch 'server alone (curl >/dev/null)' ref "$export_bytes" -target-faster 3 \
		-show "xargs -P $parallel -n 1 curl -s -f -o /dev/null <\$WORK/urls" -- \
		sh -c "$null_cmd" sh "$parallel" "$work/urls"
	rm -rf "$work/curl" "$work/export"
	mkdir -p "$work/curl"
	sync
	# shellcheck disable=SC2016 # expanded by the inner sh
	measure fetch 'curl -o + sync' limit "$export_bytes" \
		-show "cd \$WORK/curl && xargs -P $parallel -n 1 curl -s -f -O <\$WORK/urls && sync" -- \
		sh -c 'cd "$1" && xargs -P "$2" -n 1 curl -s -f -O <"$3" && sync' sh "$work/curl" "$parallel" "$work/urls"
	sync
	# shellcheck disable=SC2016 # expanded by the inner sh
	measure fetch 'bulk-fetch + sync' tool "$export_bytes" -target-ratio 0.9 \
		-show "bin/bulk-fetch --quiet --no-delete --parallel $parallel --dir \$WORK/export \$WORK/manifest.ndjson >/dev/null && sync" -- \
		sh -c '"$1" --quiet --no-delete --parallel "$2" --dir "$3" "$4" >/dev/null 2>"$5" && sync' \
		sh "$bin/bulk-fetch" "$parallel" "$work/export" "$work/manifest.ndjson" "$work/fetch.err" || {
		cat "$work/fetch.err" >&2
		exit 1
	}
	r=$((r + 1))
done
fetched=$(bytes_of "$work"/export/[A-Z]*.ndjson "$work"/export/*/[A-Z]*.ndjson)
if [ "$fetched" -ne "$export_bytes" ]; then
	echo "run.sh: curl got $export_bytes bytes, bulk-fetch $fetched" >&2
	exit 1
fi
rm -rf "$work/curl"

# --- inline: pass-through vs cat; rewriting notes vs parallel curl of the same URLs ---------
# The methods of scripts/bench/inline.sh, on the fetched export instead of generated files.
set --
for f in "$work"/export/[A-Z]*.ndjson; do
	case ${f##*/} in
	DocumentReference.* | DiagnosticReport.*) ;;
	*) set -- "$@" "$f" ;;
	esac
done
pass_bytes=$(bytes_of "$@")
pass_show="\$WORK/export/{every Type.NNN.ndjson but DocumentReference and DiagnosticReport}"
setmeta pass_bytes "$pass_bytes"
say "inline pass-through: $((pass_bytes / 1000000)) MB, $rounds rounds..."
cat "$@" >/dev/null
r=1
while [ "$r" -le "$rounds" ]; do
	measure 'inline (pass)' cat limit "$pass_bytes" -show "cat $pass_show >/dev/null" -- cat "$@" >/dev/null
	measure 'inline (pass)' ndjson-inline tool "$pass_bytes" -target-mbs 1000 \
		-show "bin/ndjson-inline --quiet --fhir-url \$BASE $pass_show >/dev/null" -- \
		"$bin/ndjson-inline" --quiet --fhir-url "$base" "$@" >/dev/null
	r=$((r + 1))
done

set -- "$work"/export/DocumentReference.*.ndjson "$work"/export/DiagnosticReport.*.ndjson
notes_bytes=$(bytes_of "$@")
notes_show="\$WORK/export/DocumentReference.*.ndjson \$WORK/export/DiagnosticReport.*.ndjson"
curlcfg_show="batches of 200 'url = …, output = /dev/null, header = Accept: <type>' by scripts/bench/report curlcfg"
setmeta notes_bytes "$notes_bytes"
mkdir -p "$work/curlcfg"
attachments=$("$report" curlcfg -base "$base" -dir "$work/curlcfg" "$@")
setmeta attachments "$attachments"
(cd "$work/curlcfg" && ls) >"$work/batches"
say "inline notes: $((notes_bytes / 1000000)) MB, $attachments attachments, $parallel at once, $rounds rounds..."
r=1
while [ "$r" -le "$rounds" ]; do
	# shellcheck disable=SC2016 # expanded by the inner sh
	measure 'inline (notes)' 'curl, same URLs' limit "$notes_bytes" -items "$attachments" -unit attachments \
		-show "cd \$WORK/curlcfg && ls | xargs -P $parallel -n 1 curl -sS --fail -K   # $curlcfg_show" -- \
		sh -c 'cd "$1" && xargs -P "$2" -n 1 curl -sS --fail -K <"$3"' sh "$work/curlcfg" "$parallel" "$work/batches"
	rm -f "$work/inlined.ndjson"
	# shellcheck disable=SC2094 # report reads the note file only after the command has ended
	measure 'inline (notes)' ndjson-inline tool "$notes_bytes" -items "$attachments" -unit attachments \
		-note-file "$work/inline.err" \
		-show "bin/ndjson-inline --parallel $parallel --fhir-url \$BASE $notes_show >\$WORK/inlined.ndjson" -- \
		"$bin/ndjson-inline" --parallel "$parallel" --fhir-url "$base" "$@" >"$work/inlined.ndjson" 2>"$work/inline.err" || {
		cat "$work/inline.err" >&2
		exit 1
	}
	r=$((r + 1))
done
rm -rf "$work/inlined.ndjson" "$work/curlcfg"

# --- merge: ndjson-merge vs cat and sort -u of the same bytes -------------------------------
# The method of scripts/bench/merge.sh: 10 slices, 20 % duplicates, --mem and sort -S alike.
say "merge: generating $merge_mb MB in 10 slices..."
"$work/bin/benchtool" gen -mb "$merge_mb" -slices 10 -dup 0.2 -out "$work/slices" >/dev/null
set -- "$work"/slices/*/Observation.*.ndjson
merge_show="\$WORK/slices/*/Observation.*.ndjson"
merge_bytes=$(bytes_of "$@")
setmeta merge_bytes "$merge_bytes"
sortmem=$(printf '%s' "$mem" | sed 's/[iI]\{0,1\}[bB]$//') # sort -S: K/M/G, powers of 1024
cat "$@" >/dev/null
say "merge: $((merge_bytes / 1000000)) MB, --mem $mem, $rounds rounds..."
r=1
while [ "$r" -le "$rounds" ]; do
	rm -f "$work/cat.ndjson" "$work/sorted.ndjson"
	rm -rf "$work/merged"
	measure merge cat limit "$merge_bytes" -show "cat $merge_show >\$WORK/cat.ndjson" -- cat "$@" >"$work/cat.ndjson"
	rm -f "$work/cat.ndjson"
	measure merge 'sort -u' limit "$merge_bytes" \
		-show "LC_ALL=C sort -u -S $sortmem -T \$WORK/tmp -o \$WORK/sorted.ndjson $merge_show" -- \
		env LC_ALL=C sort -u -S "$sortmem" -T "$work/tmp" -o "$work/sorted.ndjson" "$@"
	rm -f "$work/sorted.ndjson"
	measure merge "ndjson-merge --mem $mem" tool "$merge_bytes" \
		-show "bin/ndjson-merge \$WORK/slices/* --dir \$WORK/merged --mem $mem --quiet" -- \
		"$bin/ndjson-merge" "$work"/slices/* --dir "$work/merged" --mem "$mem" --quiet
	r=$((r + 1))
done
rm -rf "$work/slices" "$work/merged"

# --- load: etl-load vs DuckDB SQL doing the same load ---------------------------------------
load_bytes=$(bytes_of "$work"/export/[A-Z]*.ndjson)
say "load: $((load_bytes / 1000000)) MB into DuckDB, $rounds rounds..."
r=1
while [ "$r" -le "$rounds" ]; do
	rm -f "$work"/*.duckdb "$work"/*.duckdb.wal
	measure load 'DuckDB SQL (read_ndjson_objects)' limit "$load_bytes" -- \
		"$work/bin/sqlload" -db "$work/sql.duckdb" "$work/export"
	measure load etl-load tool "$load_bytes" -target-ratio 1.0 -- \
		"$bin/etl-load" --quiet --db "$work/load.duckdb" "$work/export"
	r=$((r + 1))
done
rm -f "$work"/*.duckdb "$work"/*.duckdb.wal

setmeta load_after "$(loadavg)"
echo
if [ "$doc" = - ]; then
	"$report" table -results "$results" -meta "$meta"
else
	"$report" table -results "$results" -meta "$meta" -md "$doc"
	echo
	echo "written to $doc"
fi
