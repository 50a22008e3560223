#!/usr/bin/env bash
# The Airflow version matrix (`make test-compat`): one venv per Airflow line under .compat/, the provider installed
# from this checkout, then the unit and end-to-end (example-DAG) tests in each.
#
#   tests/compat/run.sh [LINE...]      lines: 2.11 3.0 3.3 (default: all)
#   RELOCK=1 tests/compat/run.sh       re-resolve tests/compat/pins-LINE.txt first (needs PyPI)
#
# Airflow's constraints files are not reachable from here (only PyPI is), so each line is resolved once by uv and
# pinned in tests/compat/pins-LINE.txt (committed: a run installs exactly those with `uv pip sync`):
#   2.11  --resolution lowest-direct: this provider's own dependencies at their pyproject lower bounds;
#   3.0   newest, but the execution-API stack (FastAPI, Cadwyn, Starlette, pydantic) as of the release
#         (newer FastAPI/Cadwyn break 3.0.6's in-process API server: HTTP 422 on task start in dag.test());
#   3.3   newest (the same line as .venv).
set -uo pipefail
cd "$(dirname "$0")/../.."
UV=${UV:-.venv/bin/uv}
HERE=tests/compat
API_CUTOFF_3_0=2025-10-01T00:00:00Z

line_airflow() {
    case $1 in
        2.11) echo 2.11.2 ;;
        3.0) echo 3.0.6 ;;
        3.3) echo 3.3.2 ;;
        *) echo "unknown line $1 (known: 2.11 3.0 3.3)" >&2; return 1 ;;
    esac
}

line_extras() {  # the messaging extra (common-messaging) needs Airflow 3
    case $1 in
        2.11) echo "--extra test" ;;
        *) echo "--extra test --extra messaging" ;;
    esac
}

line_resolve_flags() {
    case $1 in
        2.11) echo "--resolution lowest-direct" ;;
        3.0) for p in fastapi cadwyn starlette pydantic pydantic-core; do
                 printf -- '--exclude-newer-package %s=%s ' "$p" "$API_CUTOFF_3_0"
             done ;;
        3.3) echo "" ;;
    esac
}

lock() {  # LINE -> tests/compat/pins-LINE.txt
    local line=$1 airflow
    airflow=$(line_airflow "$line") || return 1
    # shellcheck disable=SC2046
    "$UV" pip compile -q --python-version 3.11 pyproject.toml $(line_extras "$line") \
        -c <(echo "apache-airflow==$airflow") $(line_resolve_flags "$line") \
        --custom-compile-command "RELOCK=1 tests/compat/run.sh $line" -o "$HERE/pins-$line.txt"
}

run_line() {  # LINE -> prints one summary row; returns pytest's status
    local line=$1 venv=.compat/af-$1 log=.compat/test-$1.log t0 t1 t2 rc summary
    t0=$(date +%s)
    if [[ ${RELOCK:-0} == 1 || ! -f $HERE/pins-$line.txt ]]; then
        lock "$line" || return 1
    fi
    test -x "$venv/bin/python" || "$UV" venv -q --python 3.11 "$venv" || return 1
    "$UV" pip sync -q --python "$venv/bin/python" "$HERE/pins-$line.txt" || return 1
    "$UV" pip install -q --python "$venv/bin/python" --no-deps -e . || return 1
    t1=$(date +%s)
    "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit tests/e2e >"$log" 2>&1
    rc=$?
    t2=$(date +%s)
    summary=$(grep -E '^=*? ?[0-9]+ (passed|failed|error)' "$log" | tail -n 1 | tr -d '=')
    printf '%-5s airflow %-7s build %4ss  tests %4ss  %s  (log: %s)\n' \
        "$line" "$("$venv/bin/python" -c 'import airflow; print(airflow.__version__)' 2>/dev/null)" \
        $((t1 - t0)) $((t2 - t1)) "${summary:-no summary, see the log}" "$log"
    return $rc
}

mkdir -p .compat
lines=("$@")
[[ ${#lines[@]} -gt 0 ]] || lines=(2.11 3.0 3.3)
status=0
rows=()
for line in "${lines[@]}"; do
    row=$(run_line "$line") || status=1
    echo "$row"
    rows+=("$row")
done
echo "== Airflow version matrix"
printf '%s\n' "${rows[@]}"
exit $status
