#!/usr/bin/env bash
# coverage-report.sh BUILD_DIR - line and branch coverage of src/ from the .gcda
# files the suites left in BUILD_DIR (a `--coverage` build): one summary line per
# program, the total, and an HTML report in BUILD_DIR/html/.
set -euo pipefail
BUILD=${1:?usage: coverage-report.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$BUILD/coverage
mkdir -p "$OUT"
RC=(--rc lcov_branch_coverage=1 --quiet)

lcov "${RC[@]}" --capture --directory "$BUILD/obj" --base-directory "$ROOT" \
    --output-file "$OUT/all.info" 2>"$OUT/lcov.log" || { cat "$OUT/lcov.log" >&2; exit 1; }
lcov "${RC[@]}" --extract "$OUT/all.info" "$ROOT/src/*" --output-file "$OUT/src.info"

# "lines......: 91.2% (1234 of 1353 lines)" -> "91.2% (1234 of 1353 lines)"
pct() { lcov --rc lcov_branch_coverage=1 --summary "$1" 2>&1 | awk -v k="$2" '$1 == k {print $2, $3, $4, $5, $6}'; }

printf '== coverage of src/ (%s)\n' "$BUILD"
printf '   %-16s %-28s %s\n' part lines branches
for part in common runtime sidecar gateway invoke; do
    lcov "${RC[@]}" --extract "$OUT/src.info" "$ROOT/src/$part/*" --output-file "$OUT/$part.info" \
        2>/dev/null || continue
    printf '   %-16s %-28s %s\n' "src/$part" "$(pct "$OUT/$part.info" 'lines......:')" \
        "$(pct "$OUT/$part.info" 'branches...:')"
done
printf '   %-16s %-28s %s\n' "src (total)" "$(pct "$OUT/src.info" 'lines......:')" \
    "$(pct "$OUT/src.info" 'branches...:')"

genhtml "${RC[@]}" --branch-coverage --prefix "$ROOT" --title "Asya in C: src/" \
    --output-directory "$OUT/html" "$OUT/src.info" >"$OUT/genhtml.log" 2>&1 ||
    { cat "$OUT/genhtml.log" >&2; exit 1; }
echo "   HTML report: $OUT/html/index.html"

# COVERAGE_MIN (percent of lines of src/): fail below it.
if [ -n "${COVERAGE_MIN:-}" ]; then
    total=$(pct "$OUT/src.info" 'lines......:' | cut -d% -f1)
    awk -v t="$total" -v m="$COVERAGE_MIN" 'BEGIN { exit !(t + 0 >= m + 0) }' ||
        { echo "coverage: $total% of lines of src/ is below COVERAGE_MIN=$COVERAGE_MIN%" >&2; exit 1; }
fi
