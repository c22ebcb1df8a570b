#!/usr/bin/env bash
# runs.sh - per-run log folders for the test harnesses (sourced).

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
