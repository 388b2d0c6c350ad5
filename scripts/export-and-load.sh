#!/bin/sh
# export-and-load.sh: the "on-the-fly export" — kickoff, poll, fetch, inline, load — in one
# command, resumable by running the same command again.
#
#   scripts/export-and-load.sh FHIR_URL [--export-to DIR] [--db FILE] [--no-inline] [BULK-KICKOFF FLAGS...]
#
# FHIR_URL is a base URL, BASE/Patient or BASE/Group/ID (as for bulk-kickoff). Without
# --export-to the files go to a temporary folder that is removed after a successful load. The
# server and auth settings come from the environment (BULK_FHIR_URL, BULK_SMART_CLIENT_ID,
# BULK_SMART_KEY, ...; see README.md). Nothing is loaded unless every file was downloaded and
# verified; on failure the script prints the command that resumes.
set -eu

usage() {
  echo "usage: export-and-load.sh FHIR_URL [--export-to DIR] [--db FILE] [--no-inline] [bulk-kickoff flags...]" >&2
  exit 2
}

[ $# -ge 1 ] || usage
url=$1
shift
case $url in
  http://* | https://*) ;;
  *) echo "export-and-load.sh: FHIR_URL must be an http(s) URL, got '$url'" >&2; usage ;;
esac
export_to=
db=bulkpipe.duckdb
inline=yes
kickoff_args=
while [ $# -gt 0 ]; do
  case $1 in
    --export-to) [ $# -ge 2 ] || usage; export_to=$2; shift 2 ;;
    --export-to=*) export_to=${1#*=}; shift ;;
    --db) [ $# -ge 2 ] || usage; db=$2; shift 2 ;;
    --db=*) db=${1#*=}; shift ;;
    --no-inline) inline=no; shift ;;
    *)
      # Kept as separate words for bulk-kickoff; quoting survives through the positional list.
      kickoff_args="$kickoff_args $(printf '%s' "$1" | sed "s/'/'\\\\''/g; s/^/'/; s/\$/'/")"
      shift ;;
  esac
done

if [ -n "$export_to" ]; then
  dir=$export_to
  keep=yes
else
  dir=$(mktemp -d "${TMPDIR:-/tmp}/bulkpipe-export.XXXXXX")/export
  keep=no
fi
mkdir -p "$dir/.bulkpipe"
work=$dir/.bulkpipe/pipeline
mkdir -p "$work"
log=$work/events.ndjson
resume="sh $0 '$url' --export-to '$dir' --db '$db'"

fail() {
  echo "export-and-load.sh: $*" >&2
  echo "export-and-load.sh: to resume: $resume" >&2
  exit 1
}

# 1. Kickoff, once: a rerun finds the status URL and goes straight to polling.
if [ ! -s "$work/status-url" ]; then
  eval "set -- $kickoff_args"
  bulk-kickoff "$url" "$@" --log "$log" -o "$work/status-url" || fail "bulk-kickoff failed"
fi
status=$(head -n 1 "$work/status-url")
resume="sh $0 '$url' --export-to '$dir' --db '$db'   (or: bulk-poll '$status' | bulk-fetch --dir '$dir')"

# 2 and 3. Poll and fetch at once (manifest pages download as they arrive); sh has no pipefail,
# so bulk-poll's exit status travels through a file.
rm -f "$work/poll.rc"
{
  rc=0
  bulk-poll "$status" --log "$log" || rc=$?
  echo "$rc" >"$work/poll.rc"
} | bulk-fetch --dir "$dir" --log "$log" >"$work/files" || fail "bulk-fetch failed; nothing was loaded"
poll_rc=$(cat "$work/poll.rc" 2>/dev/null || echo 1)
[ "$poll_rc" -eq 0 ] || fail "bulk-poll failed (exit $poll_rc); nothing was loaded"

# 4. Inline clinical notes, so they survive the EHR's links.
if [ "$inline" = yes ]; then
  ndjson-inline --in-place "$dir" --log "$log" || fail "ndjson-inline failed; nothing was loaded"
fi

# 5. Load, and show what landed.
etl-load --db "$db" --summary "$dir" || fail "etl-load failed; the database is unchanged"
if [ "$keep" = no ]; then
  rm -rf "$(dirname "$dir")"
else
  echo "export-and-load.sh: export kept in $dir" >&2
fi
