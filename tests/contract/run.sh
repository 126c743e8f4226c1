#!/usr/bin/env bash
# Contract test: Schemathesis 4.32.5, every built-in check, against a running server.
#
#   tests/contract/run.sh http://127.0.0.1:PORT
#
# Reads the server's own /openapi.json and tests every operation in it (GET /v1/graph/ws, a
# websocket upgrade, may answer a plain GET with 400; see schemathesis.toml). Bounded: at most ST_MAX_EXAMPLES fuzzed cases
# per operation (default 10, from schemathesis.toml) and ST_TIME_LIMIT seconds in all (default
# 220); reproducible: a fixed seed (ST_SEED), no example database, no cache. Talks to nothing
# but BASE_URL. Exits 0 only when no check failed and nothing errored; otherwise prints each
# failing operation with its failures and exits non-zero (1 failures or errors, 2 Schemathesis
# could not run, 124 out of time). Reports (JUnit XML, JSON) are left in ST_REPORT_DIR
# (default: a temporary directory, printed).
#
# Environment: PYTHON (the interpreter with schemathesis 4.32.5; default python3), ST_SEED,
# ST_MAX_EXAMPLES, ST_TIME_LIMIT, ST_REPORT_DIR, ST_API_KEY (the key to send, if any).
set -euo pipefail

BASE="${1:?usage: $0 BASE_URL (e.g. http://127.0.0.1:3917)}"
BASE="${BASE%/}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
SEED="${ST_SEED:-20240611}"
TIME_LIMIT="${ST_TIME_LIMIT:-220}"

version="$("$PYTHON" -c 'import schemathesis; print(schemathesis.__version__)' 2>/dev/null)" || {
    echo "contract: schemathesis is not installed for $PYTHON (pip install schemathesis==4.32.5)" >&2
    exit 2
}
if [[ "$version" != "4.32.5" ]]; then
    echo "contract: warning: schemathesis $version, this test is written for 4.32.5" >&2
fi

# Schemathesis and Hypothesis write state into the working directory (.hypothesis/,
# .schemathesis/): run in a scratch directory, never in the repository.
WORK="$(mktemp -d -t infergraph-contract.XXXXXX)"
REPORT="${ST_REPORT_DIR:-$WORK/report}"
mkdir -p "$REPORT"
if [[ -n "${ST_REPORT_DIR:-}" ]]; then
    trap 'rm -rf "$WORK"' EXIT
fi
cd "$WORK"

# Only the target: no proxy in between, and nothing else to reach.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
export NO_PROXY='*' no_proxy='*'

args=(
    --config-file "$HERE/schemathesis.toml"
    run "$BASE/openapi.json"
    --url "$BASE"
    --checks all
    --phases examples,coverage,fuzzing,stateful
    --seed "$SEED"
    --workers 1
    --request-timeout 150
    --wait-for-schema 30
    --report junit,json
    --report-junit-path "$REPORT/junit.xml"
    --report-json-path "$REPORT/report.json"
    --no-color
)
if [[ -n "${ST_MAX_EXAMPLES:-}" ]]; then
    args+=(--max-examples "$ST_MAX_EXAMPLES")
fi
# A server with keys on: every request carries this one (and the `ignored_auth` check sends
# some without it, expecting the 401 the document promises).
if [[ -n "${ST_API_KEY:-}" ]]; then
    args+=(--header "Authorization: Bearer $ST_API_KEY")
fi

echo "contract: schemathesis $version, seed $SEED, limit ${TIME_LIMIT}s, target $BASE"
started=$SECONDS
set +e
# SIGINT at the limit: Schemathesis stops as on Ctrl-C and still writes its reports.
timeout --signal=INT --kill-after=20 "$TIME_LIMIT" "$PYTHON" -m schemathesis.cli "${args[@]}"
rc=$?
set -e
elapsed=$((SECONDS - started))
if [[ $rc -eq 130 || $rc -eq 124 || $rc -eq 137 ]] && ((elapsed >= TIME_LIMIT)); then
    echo "contract: out of time: stopped after ${elapsed}s (limit ${TIME_LIMIT}s)" >&2
    rc=124
fi

"$PYTHON" - "$REPORT/junit.xml" "$REPORT/report.json" "$rc" <<'EOF'
"""One block per failing operation: its failure codes and each failure's first lines."""
import json
import sys
import xml.etree.ElementTree as ET

junit, report, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    cases = ET.parse(junit).getroot().iter("testcase")
except (OSError, ET.ParseError) as error:
    print(f"contract: no JUnit report ({error})")
    cases = []
bad = 0
print("\n==== contract summary ====")
for case in cases:
    for kind in ("failure", "error"):
        for item in case.findall(kind):
            bad += 1
            codes = item.get("message") or ""
            print(f"{kind.upper()}: {case.get('name')}  {codes}")
            lines = [line for line in (item.text or "").splitlines() if line.strip()]
            for line in lines[:40]:
                print(f"    {line}")
            if len(lines) > 40:
                print(f"    ... ({len(lines) - 40} more lines in {junit})")
try:
    with open(report) as fd:
        doc = json.load(fd)
    cases = doc.get("test_cases") or {}
    print(
        f"{cases.get('generated', '?')} cases, {cases.get('unique_failures', '?')} unique failures, "
        f"stop: {doc.get('stop_reason')}, {doc.get('running_time', 0):.0f}s"
    )
    for group in doc.get("failures") or []:
        print(f"  {group['code']} {group['title']} x{group['count']}: {', '.join(group['operations'])}")
except (OSError, ValueError, TypeError) as error:
    print(f"contract: no JSON report ({error})")
print("contract: PASSED" if rc == 0 and not bad else f"contract: FAILED (exit {rc or 1})")
EOF
echo "contract: reports in $REPORT"
if [[ $rc -eq 0 ]] && grep -q "<failure\|<error" "$REPORT/junit.xml" 2>/dev/null; then
    rc=1
fi
exit "$rc"
