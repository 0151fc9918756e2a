#!/bin/sh
# Runs the test module's patterns given as arguments, in order (each write returns when its
# pattern is complete). Exits non-zero at the first that fails.
for pattern in "$@"; do
    echo "$pattern" > /proc/locktrace_test || exit 1
done
