#!/bin/sh
# export-and-load.sh: the "on-the-fly export" — kickoff, poll, fetch, inline, load — in one
# command, resumable by running the same command again.
#
#   scripts/export-and-load.sh FHIR_URL [--export-to DIR] [--db FILE] [--no-inline] [--new-export]
#                              [BULK-KICKOFF FLAGS...]
#
# FHIR_URL is a base URL, BASE/Patient or BASE/Group/ID (as for bulk-kickoff). Without
# --export-to the files go to a temporary folder that is removed after a successful load. The
# server and auth settings come from the environment (BULK_FHIR_URL, BULK_SMART_CLIENT_ID,
# BULK_SMART_KEY, ...; see README.md). Nothing is loaded unless every file was downloaded and
# verified; on failure the script names the step that failed and prints the command that resumes.
#
# With --export-to, DIR/.bulkpipe/pipeline/ remembers how far the export got: a rerun after a
# failure or an interrupt resumes it (polling the same export, or only inlining and loading once
# the download is complete), and a rerun after success says the export is complete and changes
# nothing. --new-export starts a new export into DIR: an unfinished one is cancelled on the server,
# and bulk-fetch replaces the old files.
#
# The tools are taken from PATH, else from bin/ of this checkout (make build).
set -eu

prog=export-and-load.sh

usage() {
  echo "usage: $prog FHIR_URL [--export-to DIR] [--db FILE] [--no-inline] [--new-export] [bulk-kickoff flags...]" >&2
  exit 2
}

[ $# -ge 1 ] || usage
url=$1
shift
case $url in
  http://* | https://*) ;;
  *) echo "$prog: FHIR_URL must be an http(s) URL, got '$url'" >&2; usage ;;
esac
export_to=
db=bulkpipe.duckdb
inline=yes
new_export=no
kickoff_args=
while [ $# -gt 0 ]; do
  case $1 in
    --export-to) [ $# -ge 2 ] || usage; export_to=$2; shift 2 ;;
    --export-to=*) export_to=${1#*=}; shift ;;
    --db) [ $# -ge 2 ] || usage; db=$2; shift 2 ;;
    --db=*) db=${1#*=}; shift ;;
    --no-inline) inline=no; shift ;;
    --new-export) new_export=yes; shift ;;
    *)
      # Kept as separate words for bulk-kickoff; quoting survives through the positional list.
      kickoff_args="$kickoff_args $(printf '%s' "$1" | sed "s/'/'\\\\''/g; s/^/'/; s/\$/'/")"
      shift ;;
  esac
done

# The tools: PATH first, then bin/ of this checkout, where `make build` puts them.
root=$(cd "$(dirname "$0")/.." && pwd)
PATH="$PATH:$root/bin"
export PATH
tools="bulk-kickoff bulk-poll bulk-fetch etl-load"
[ "$inline" = no ] || tools="$tools ndjson-inline"
for tool in $tools; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$prog: $tool not found on PATH or in $root/bin; build the tools with 'make build' in $root" \
      "(or: go build -o bin/ ./cmd/...), then run the same command again" >&2
    exit 1
  fi
done

if [ -n "$export_to" ]; then
  dir=$export_to
  keep=yes
else
  dir=$(mktemp -d "${TMPDIR:-/tmp}/bulkpipe-export.XXXXXX")/export
  keep=no
fi
work=$dir/.bulkpipe/pipeline
mkdir -p "$work"
log=$work/events.ndjson
# The steps leave these behind, in order: status-url (the export was started), fetched (every
# file is downloaded and verified, and the export is deleted on the server), done (loaded).
again="sh $0 '$url' --export-to '$dir' --db '$db'"
[ "$inline" = yes ] || again="$again --no-inline"
resume=$again

fail() {
  echo "$prog: $*" >&2
  echo "$prog: to resume: $resume" >&2
  exit 1
}

# step_failed NAME RC: a tool ended with RC. 130 is an interrupt (Ctrl-C), passed on as such.
step_failed() {
  if [ "$2" -eq 130 ]; then
    interrupted
  fi
  fail "$1 failed (exit $2)${3:-}"
}

interrupted() {
  trap - INT TERM
  echo "$prog: interrupted; to resume: $resume" >&2
  exit 130
}
trap interrupted INT TERM

if [ "$new_export" = yes ]; then
  if [ -s "$work/status-url" ] && [ ! -e "$work/fetched" ]; then
    # Servers such as Epic allow one export per client and Group: give the unfinished one up.
    old=$(head -n 1 "$work/status-url")
    echo "$prog: --new-export: cancelling the unfinished export $old" >&2
    bulk-poll --cancel "$old" || echo "$prog: could not cancel $old; starting the new export anyway" >&2
  fi
  rm -f "$work/status-url" "$work/fetched" "$work/done" "$work/poll.rc" "$work/files"
  # Until the new export is downloaded, a resumed run must still let bulk-fetch replace the old.
  : >"$work/new-export"
elif [ -e "$work/done" ]; then
  echo "$prog: the export in $dir is complete and was $(head -n 1 "$work/done"); nothing to do" >&2
  echo "$prog: to start a new export into $dir: $again --new-export" >&2
  echo "$prog: to load it into another database: etl-load --db FILE '$dir'" >&2
  exit 0
fi

# 1. Kickoff, once: a rerun finds the status URL and goes straight to polling.
if [ ! -s "$work/status-url" ]; then
  eval "set -- $kickoff_args"
  rc=0
  bulk-kickoff "$url" "$@" --log "$log" -o "$work/status-url" || rc=$?
  if [ "$rc" -ne 0 ]; then
    # Nothing was started (or bulk-kickoff said it may have been): a rerun kicks off again.
    resume="run the same command again"
    step_failed bulk-kickoff "$rc"
  fi
fi
status=$(head -n 1 "$work/status-url")

# 2 and 3. Poll and fetch at once (manifest pages download as they arrive); sh has no pipefail,
# so bulk-poll's exit status travels through a file.
if [ ! -e "$work/fetched" ]; then
  resume="$again   (or: bulk-poll '$status' | bulk-fetch --dir '$dir')"
  fetch_flags=
  [ ! -e "$work/new-export" ] || fetch_flags=--new-export
  rm -f "$work/poll.rc"
  fetch_rc=0
  {
    rc=0
    bulk-poll "$status" --log "$log" || rc=$?
    echo "$rc" >"$work/poll.rc"
  } | bulk-fetch --dir "$dir" --log "$log" ${fetch_flags:+"$fetch_flags"} >"$work/files" || fetch_rc=$?
  poll_rc=$(cat "$work/poll.rc" 2>/dev/null || echo 130)
  # bulk-poll first: when it fails, bulk-fetch fails too, for want of a manifest.
  if [ "$poll_rc" -ne 0 ]; then
    step_failed bulk-poll "$poll_rc" "; nothing was loaded. If the server no longer knows the export (404, 410), start a new one: $again --new-export"
  fi
  [ "$fetch_rc" -eq 0 ] || step_failed bulk-fetch "$fetch_rc" "; verified files are kept in $dir, nothing was loaded"
  # bulk-fetch deleted the export on the server: from here a rerun must not poll it again.
  date -u +%Y-%m-%dT%H:%M:%SZ >"$work/fetched"
  rm -f "$work/new-export"
fi
resume=$again

# 4. Inline clinical notes, so they survive the EHR's links.
if [ "$inline" = yes ]; then
  rc=0
  ndjson-inline --in-place "$dir" --log "$log" || rc=$?
  [ "$rc" -eq 0 ] || step_failed ndjson-inline "$rc" "; nothing was loaded"
fi

# 5. Load, and show what landed.
rc=0
etl-load --db "$db" --summary "$dir" || rc=$?
[ "$rc" -eq 0 ] || step_failed etl-load "$rc" "; the database is unchanged"
if [ "$keep" = no ]; then
  rm -rf "$(dirname "$dir")"
else
  echo "loaded into $db at $(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$work/done"
  echo "$prog: export kept in $dir" >&2
fi
