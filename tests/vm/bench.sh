#!/bin/sh
# locktrace's kernel overhead benchmark, run by /init instead of guest-tests.sh when the
# kernel command line says `locktrace.run=bench` (`cargo xtask vm bench`).
#
# The workload (/tests/lockload, tests/programs/lockload.c) runs once to warm up (TCG
# translates code on first use; discarded), then bare, then while locktrace runs in the
# background: `watch --floor` (every probe attached, every program empty), `watch --json`
# (alerts to a file) and `record` (to a tmpfs). Compare runs of one boot only.
#
# Console protocol, read by xtask/src/vm/serial.rs and xtask/src/vm/bench.rs:
#   LOCKTRACE-VM-KERNEL <uname -r>
#   LOCKTRACE-VM-CHECK <name> PASS|FAIL <detail>                   one per run
#   LOCKTRACE-BENCH phase run=<run> phase=<name> ops=<n> ns=<n>      per run and phase
#   LOCKTRACE-BENCH session run=<run> attach_ms=<n> ready_ms=<n> traced_ms=<n> cpu_ms=<n>
#       bytes=<n> summary=<locktrace's last line>                   per session, one line
#   LOCKTRACE-VM-RESULT PASS | LOCKTRACE-VM-RESULT FAIL <failed>/<total>   exactly once, last
#
# A session: locktrace starts in the background. attach_ms: until it says "N probes
# attached". It then reads the kernel's symbol table (seconds under TCG); ready_ms: until it
# is quiet (see settle). Then the workload runs; traced_ms is the wall time from ready to the
# workload's end, cpu_ms locktrace's utime+stime over that time. Then SIGINT; the summary
# gives the events read and the losses by reason; bytes is the recording's size. Times come
# from /proc/uptime (10 ms steps: busybox's date has no nanoseconds).

LIMIT=1800         # seconds for one workload run, so one hang cannot eat the whole boot
ATTACH_LIMIT=600   # seconds for locktrace to attach its probes and settle
STOP_LIMIT=120     # seconds for locktrace to finish after SIGINT
# The recording's tmpfs: a few hundred MB (about 110 bytes per event), in a 2 GiB guest.
mkdir -p /traces
mount -t tmpfs -o size=1400m tmpfs /traces
TOTAL=0
FAILED=0

# check NAME STATUS DETAIL: reports one check; STATUS 0 passes.
check() {
    TOTAL=$((TOTAL + 1))
    if [ "$2" = 0 ]; then
        echo "LOCKTRACE-VM-CHECK $1 PASS $3"
    else
        FAILED=$((FAILED + 1))
        echo "LOCKTRACE-VM-CHECK $1 FAIL $3"
    fi
}

# now_ms: milliseconds since boot.
now_ms() {
    read -r up _ < /proc/uptime
    echo $(($(echo "$up" | tr -d .) * 10))
}

# cpu_ms PID: the process's utime + stime in milliseconds (USER_HZ is 100 on x86); 0 once
# it is gone.
cpu_ms() {
    stat=$(cat "/proc/$1/stat" 2> /dev/null) || {
        echo 0
        return
    }
    # shellcheck disable=SC2086 # the fields of /proc/PID/stat, split on spaces
    set -- $stat
    echo $(((${14} + ${15}) * 10))
}

# workload RUN: runs the workload once and prints its phases for run RUN.
workload() {
    timeout "$LIMIT" /tests/lockload /tmp > "/tmp/$1.phases" 2> "/tmp/$1.phases.err"
    load_status=$?
    sed "s/^/LOCKTRACE-BENCH phase run=$1 /" "/tmp/$1.phases"
    return "$load_status"
}

# settle PID DEADLINE_MS: waits until PID uses under a fifth of a CPU over half a second
# (locktrace has read the symbol table and only drains the idle guest's events), or until
# DEADLINE_MS; fails when PID is gone.
settle() {
    before=$(cpu_ms "$1")
    while sleep 0.5 && kill -0 "$1" 2> /dev/null; do
        after=$(cpu_ms "$1")
        [ $((after - before)) -le 100 ] || [ "$(now_ms)" -gt "$2" ] && return 0
        before=$after
    done
    return 1
}

# session RUN FILE LOCKTRACE-ARGS...: runs the workload under `locktrace ARGS` (FILE: the
# recording it writes, or -) and reports the session.
session() {
    run=$1
    file=$2
    shift 2
    started=$(now_ms)
    deadline=$((started + ATTACH_LIMIT * 1000))
    locktrace "$@" > "/tmp/$run.out" 2> "/tmp/$run.err" &
    pid=$!
    until grep -q 'probes attached' "/tmp/$run.err"; do
        if ! kill -0 "$pid" 2> /dev/null || [ "$(now_ms)" -gt "$deadline" ]; then
            break
        fi
        sleep 0.1
    done
    attached=$(now_ms)
    if ! grep -q 'probes attached' "/tmp/$run.err" || ! settle "$pid" "$deadline"; then
        kill -KILL "$pid" 2> /dev/null
        wait "$pid"
        check "$run" 1 "locktrace did not attach: $(tail -n 1 "/tmp/$run.err")"
        return
    fi
    ready=$(now_ms)
    cpu_before=$(cpu_ms "$pid")
    workload "$run"
    cpu_after=$(cpu_ms "$pid")
    ended=$(now_ms)
    kill -INT "$pid"
    waited=0
    while kill -0 "$pid" 2> /dev/null && [ "$waited" -lt $((STOP_LIMIT * 10)) ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -KILL "$pid" 2> /dev/null
    wait "$pid"
    status=$?
    bytes=0
    [ "$file" != - ] && [ -f "$file" ] && bytes=$(wc -c < "$file")
    sed 's/^/  | /' "/tmp/$run.err"
    echo "LOCKTRACE-BENCH session run=$run attach_ms=$((attached - started))" \
        "ready_ms=$((ready - started)) traced_ms=$((ended - ready))" \
        "cpu_ms=$((cpu_after - cpu_before)) bytes=$bytes" \
        "summary=$(grep -E '^locktrace: (recorded )?[0-9]+ events' "/tmp/$run.err" | tail -n 1)"
    [ "$load_status" = 0 ] && [ "$status" = 0 ]
    check "$run" $? "workload exit $load_status, locktrace exit $status: locktrace $*"
    [ "$file" = - ] || rm -f "$file"
}

echo "LOCKTRACE-VM-KERNEL $(uname -r)"

workload warmup > /dev/null
check warmup "$load_status" "workload exit $load_status"
workload bare
check bare "$load_status" "workload exit $load_status"
session floor - watch --floor
session watch - watch --json
session record /traces/bench.lttrace record -o /traces/bench.lttrace

if [ "$FAILED" = 0 ]; then
    echo "LOCKTRACE-VM-RESULT PASS"
else
    echo "LOCKTRACE-VM-RESULT FAIL $FAILED/$TOTAL"
fi
