#!/usr/bin/env bash
# runs.sh - per-run log folders, traps, verdict and pytest log options for the
# test harnesses (sourced).

# new_run_dir BASE NAME: create BASE/NAME-<date>-<time>-<pid> and print its path;
# keep only the newest ASYA_TEST_KEEP_RUNS (default 5) folders of that NAME.
new_run_dir()
{
    local base=$1 name=$2 dir
    dir=$base/$name-$(date +%Y%m%d-%H%M%S)-$$
    mkdir -p "$dir" || return 1
    # "-2*": the date, so "sidecar" runs never prune "sidecar-vs-runtime" ones.
    ls -1dt "$base/$name"-2* 2>/dev/null |
        tail -n +$((${ASYA_TEST_KEEP_RUNS:-5} + 1)) | while read -r old; do rm -rf "$old"; done
    printf '%s\n' "$dir"
}

# run_signal_traps: on Ctrl-C or TERM set RC to 130 or 143, say (the caller's
# say) so and exit, which runs the caller's EXIT trap (its teardown).
run_signal_traps()
{
    trap 'RC=130; say "interrupted"; exit 130' INT
    trap 'RC=143; say "terminated"; exit 143' TERM
}

# run_verdict RC DIR WHAT: say (the caller's say) whether the run passed and
# where its logs are: "logs of every WHAT" ("process", "container") on a failure.
run_verdict()
{
    if [ "$1" -ne 0 ]; then
        say "FAILED (exit $1); logs of every $3: $2"
    else
        say "passed; logs: $2"
    fi
}

# pytest_log_args LEVEL SET: set the array PYTEST_LOG_ARGS to pytest's
# --log-level for the harness's LEVEL (upper case, WARN as WARNING) and, when SET
# is not empty (ASYA_LOG_LEVEL was given), live logging at that level.
pytest_log_args()
{
    local level
    level=$(echo "$1" | tr '[:lower:]' '[:upper:]')
    [ "$level" = WARN ] && level=WARNING
    PYTEST_LOG_ARGS=(--log-level="$level")
    if [ -n "$2" ]; then
        PYTEST_LOG_ARGS+=(-o log_cli=true --log-cli-level="$level")
    fi
}
