#!/bin/sh
# locktrace's in-guest tests, run by /init on each guest kernel.
#
# Console protocol (tests/vm/protocol.sh), read by xtask/src/vm/serial.rs:
#   LOCKTRACE-VM-KERNEL <uname -r>
#   LOCKTRACE-VM-CHECK <name> PASS|FAIL <detail>     one per check
#   LOCKTRACE-VM-FILE-BEGIN <name> <bytes>            then the file in base64, then
#   LOCKTRACE-VM-FILE-END <name>
#   LOCKTRACE-VM-RESULT PASS | LOCKTRACE-VM-RESULT FAIL <failed>/<total>   exactly once, last
#
# The guest checks that each step runs; the host judges the JSON the steps wrote (the files
# shipped back, only for steps that succeeded), see xtask/src/vm/checks.rs. Commands that
# locktrace spawns run under dash, which is dynamically linked: locktrace traces a command's
# pthread locks through its C library, and busybox is static.

PATTERNS=$(cat /tests/patterns)
LIMIT=120          # seconds for one locktrace command, so one hang cannot eat the whole run
ALERTS=2           # the exit status of `watch` and `report` when they found alerts
SHIP_MAX=8388608   # bytes: larger files would take minutes on the emulated serial port
# Traces go to their own bounded tmpfs: a runaway trace must not fill the /tmp that the other
# steps write their output to.
mkdir -p /traces
mount -t tmpfs -o size=256m tmpfs /traces
. /tests/protocol.sh

# ship NAME FILE: sends FILE to the host, unless it is too large for the serial port (a
# failed check then).
ship() {
    [ -f "$2" ] || return 0
    size=$(wc -c < "$2")
    if [ "$size" -gt "$SHIP_MAX" ]; then
        check "ship-$1" 1 "$size bytes, more than $SHIP_MAX"
        return 0
    fi
    send_file "$1" "$2"
}

# step NAME CMD...: runs CMD under the time limit, stdout to /tmp/NAME.out, stderr to
# /tmp/NAME.err (its tail is shown on failure), and reports check NAME.
step() {
    run_step 0 "$@"
}

# scan NAME CMD...: a step for `watch` and `report`, which exit with $ALERTS when they found
# alerts; the host judges which from the JSON, so that status passes too.
scan() {
    run_step "$ALERTS" "$@"
}

# run_step ALSO_OK NAME CMD...: step, with exit status ALSO_OK passing as well as 0.
run_step() {
    also_ok=$1
    name=$2
    shift 2
    timeout "$LIMIT" "$@" > "/tmp/$name.out" 2> "/tmp/$name.err"
    status=$?
    detail="exit $status"
    [ "$status" = 143 ] || [ "$status" = 137 ] && detail="timed out after ${LIMIT}s"
    [ "$status" = "$also_ok" ] && status=0
    check "$name" "$status" "$detail: $*"
    if [ "$status" != 0 ]; then
        tail -n 15 "/tmp/$name.err" | sed 's/^/  | /'
    fi
    return "$status"
}

# kernel_complaints: the first line of new kernel warnings since the last `dmesg -c`.
kernel_complaints() {
    dmesg | grep -E 'BUG:|WARNING:|Oops|Call Trace|INFO:' | head -n 1
}

echo "LOCKTRACE-VM-KERNEL $(uname -r)"

# --- Infrastructure: the module, its patterns and the test programs work on this kernel. ---
dmesg -c > /dev/null
insmod /tests/locktrace_test.ko && [ -e /proc/locktrace_test ]
check kmod-load $? "$(dmesg | grep -m 1 locktrace_test)"

# The module's static locks are named in kallsyms (KALLSYMS_ALL), so locktrace can name them.
missing=""
for lock in lt_seed_outer_lock lt_seed_inner_lock lt_abba_a lt_abba_b lt_clean_first lt_clean_second; do
    grep -qE "[[:space:]]$lock([[:space:]]|\$)" /proc/kallsyms || missing="$missing $lock"
done
[ -z "$missing" ]
check kmod-symbols $? "${missing:-all six lt_* locks in /proc/kallsyms}${missing:+ not in /proc/kallsyms}"

for pattern in $PATTERNS; do
    dmesg -c > /dev/null
    echo "$pattern" > /proc/locktrace_test
    status=$?
    complaint=$(kernel_complaints)
    [ "$status" = 0 ] && [ -z "$complaint" ]
    check "kmod-$pattern" $? "write status $status ${complaint:+; kernel: $complaint}"
done

step percpu-map /tests/percpu_map 4
step locktrace-help locktrace --help

# --- locktrace on this kernel. ---
# Every probe loads and attaches; the host reads check.json. What verifying the programs cost
# on this kernel (instructions the verifier walked) is shown, most expensive first.
mkdir -p /tmp/verifier
step locktrace-check env LOCKTRACE_VERIFIER_LOG=/tmp/verifier locktrace check --json &&
    ship check.json /tmp/locktrace-check.out
sort -k2 -n -r /tmp/verifier/verified.txt 2>/dev/null |
    awk '{ total += $2 } NR <= 4 { print "  | verified " $0 } END { print "  | verified in all: " total " instructions" }'
# A program the verifier refused: the end of its log, where the reason is.
for log in /tmp/verifier/*.log; do
    [ -f "$log" ] || continue
    echo "  | refused: $log"
    tail -n 25 "$log" | sed 's/^/  |   /'
done
locktrace check 2>&1 | sed 's/^/  | /'

# Ordinary kernel activity: per-CPU maps give pcpu_alloc_mutex -> pcpu_lock.
if step record-ordinary locktrace record -o /traces/ordinary.lttrace -- /tests/percpu_map 8; then
    step graph-ordinary locktrace graph /traces/ordinary.lttrace --format json &&
        ship graph.json /tmp/graph-ordinary.out
fi
ls -l /traces | sed 's/^/  | /'
rm -f /traces/ordinary.lttrace

# Each pattern of the module under `watch`: the host compares the alerts with the expected ones.
for pattern in $PATTERNS; do
    scan "watch-$pattern" locktrace watch --json -- dash /tests/trigger.sh "$pattern" &&
        ship "watch-$pattern.json" "/tmp/watch-$pattern.out"
done

# An ordinary workload, without the module's patterns: no inversion alert.
scan workload locktrace watch --json -- dash /tests/workload.sh &&
    ship workload.json /tmp/workload.out
# ... and no held stack overflows: a stack deeper than 32 there is a bug of ours (every
# switch to one of locktrace's own threads once left the run-queue lock on its stack).
held=$(grep -o 'held state: [^;)]*' /tmp/workload.err | tail -n 1)
echo "$held" | grep -q held_overflow
[ $? != 0 ]
check workload-held-stacks $? "${held:-held state: no corrections}"

# A record of all patterns, replayed here and (by the host) on the host.
# shellcheck disable=SC2086 # PATTERNS is a list of words
if step record-patterns locktrace record -o /traces/patterns.lttrace -- dash /tests/trigger.sh $PATTERNS; then
    ship patterns.lttrace /traces/patterns.lttrace
    scan report-guest locktrace report /traces/patterns.lttrace --json &&
        ship report.json /tmp/report-guest.out
fi

# The same patterns once more by kprobes and kretprobes alone (`--attach kprobe`): the path
# of kernels that refuse trampolines but allow kprobes. The host wants all their alerts.
# shellcheck disable=SC2086 # PATTERNS is a list of words
scan watch-kprobe locktrace watch --json --attach kprobe -- dash /tests/trigger.sh $PATTERNS &&
    ship watch-kprobe.json /tmp/watch-kprobe.out

dmesg -c > /dev/null
result
