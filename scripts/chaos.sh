#!/bin/sh
# chaos.sh - run the whole chaos matrix of bulkpipe (docs/reliability.md): the pipeline
# kickoff → poll → fetch → inline → merge → load against bulk-testserver under every fault kind,
# a seeded random mix of faults, and a kill -9 of each tool at each failpoint followed by a rerun,
# each case compared with a fault-free run. The cases live in pkg/e2e/chaos_test.go; plain
# `go test ./pkg/e2e` runs only a short fixed subset of them.
#
# Usage: scripts/chaos.sh [SEED]        (from anywhere inside the repository)
#
#   SEED   replay the random mix of that seed (printed by an earlier run) instead of two new ones
#
# Environment:
#   CHAOS_SEED       as SEED
#   CHAOS_PARALLEL   cases run at once (default 4: most of a case is spent waiting for retries)
#   CHAOS_REPORT     the TSV report, one line per case (default chaos-report.tsv in the current
#                    folder): group, case, outcome, seconds, notes
#   CHAOS_RUN        a go test -run pattern to narrow the matrix (default Chaos), e.g.
#                    'Chaos/cases/crash' or 'Chaos/cases/fault/reset'
#   GO               the go command (default go)
#
# Exit status: 0 when every case passed, 1 when one failed (the report says which), 2 on a
# usage error. The verbose log goes to standard error; the summary to standard output.
set -eu

prog=chaos.sh
if [ $# -gt 1 ]; then
	echo "usage: $prog [SEED]" >&2
	exit 2
fi
seed=${1:-${CHAOS_SEED:-0}}
case $seed in
'' | *[!0-9-]*)
	echo "$prog: SEED must be a number, got '$seed'" >&2
	exit 2
	;;
esac
go=${GO:-go}
parallel=${CHAOS_PARALLEL:-4}
run=${CHAOS_RUN:-Chaos}
report=${CHAOS_REPORT:-chaos-report.tsv}
case $report in
/*) ;;
*) report=$(pwd)/$report ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
log=$(mktemp "${TMPDIR:-/tmp}/chaos-log.XXXXXX")
trap 'rm -f "$log"' EXIT
trap 'exit 130' INT TERM

if [ "$seed" = 0 ]; then
	mix="two new random mixes"
else
	mix="the random mix of seed $seed"
fi
echo "$prog: running the chaos matrix ($mix, $parallel cases at once); report: $report" >&2
status=0
(cd "$root" && "$go" test ./pkg/e2e -run "$run" -count=1 -timeout 30m -v -parallel "$parallel" \
	-chaos.long -chaos.seed="$seed" -chaos.report="$report") >"$log" 2>&1 || status=$?
cat "$log" >&2

# The summary: the test's own count per group, each failed case, the seeds to replay.
grep -E '^\s+(reference|fault|crash|mix): [0-9]+ cases' "$log" | sed 's/^[[:space:]]*//' || :
grep -E -o 'random mix seed [0-9]+' "$log" | sort -u | sed "s/^/$prog: /" || :
if [ -f "$report" ]; then
	awk -F '\t' 'NR > 1 && $3 != "pass" { print "FAIL " $1 "/" $2 }' "$report"
fi
if [ "$status" -ne 0 ]; then
	echo "$prog: some cases failed (go test exit $status); see $report and the log above" >&2
	exit 1
fi
echo "$prog: every case passed; report in $report" >&2
