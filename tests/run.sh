#!/bin/sh
# Runs every test binary given on the command line and then every shell test
# in tests/cli/, adds up their counts, and ends with "N passed, N failed".
# Exits non-zero when anything failed.
passed=0; failed=0; skipped=0; status=0
tally() { # $1 = a line "name: P passed, F failed, S skipped"
    p=$(echo "$1" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped.*/\1/p')
    f=$(echo "$1" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped.*/\2/p')
    s=$(echo "$1" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped.*/\3/p')
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${s:-0}))
}
for t in "$@"; do
    out=$("$t" 2>&1); rc=$?
    echo "$out" | grep -v '^ok ' 
    line=$(echo "$out" | tail -n 1)
    if echo "$line" | grep -q ' passed, .* failed'; then tally "$line"; else
        echo "$t: crashed or printed no summary (exit $rc)"; failed=$((failed + 1)); fi
    if [ $rc -ne 0 ]; then status=1; if ! echo "$line" | grep -q ' passed, .* failed'; then :; elif echo "$line" | grep -q ' 0 failed'; then
        echo "$t: exit $rc with no failed test"; failed=$((failed + 1)); fi; fi
done
for t in tests/cli/*.sh; do
    [ -f "$t" ] || continue
    out=$(sh "$t" 2>&1); rc=$?
    echo "$out" | grep -v '^ok '
    line=$(echo "$out" | tail -n 1)
    if echo "$line" | grep -q ' passed, .* failed'; then tally "$line"; else
        echo "$t: printed no summary (exit $rc)"; failed=$((failed + 1)); fi
    [ $rc -ne 0 ] && status=1
done
[ $skipped -gt 0 ] && echo "($skipped skipped: see SKIP lines above)"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ] && [ $status -eq 0 ]
