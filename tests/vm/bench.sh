#!/bin/sh
# locktrace's kernel overhead benchmark, run by /init instead of guest-tests.sh when the
# kernel command line says `locktrace.run=bench` (`cargo xtask vm bench`).
#
# The workload (/tests/lockload, tests/programs/lockload.c) runs once to warm up (TCG
# translates code on first use; discarded), then bare, then while locktrace runs in the
# background: `watch --floor` (every probe attached, every program empty), `watch --json`
# (alerts to a file), `record` (to a tmpfs), and `watch` with the kernel's per-program
# statistics (LOCKTRACE_PROG_STATS: run counts and times, printed by locktrace at the end;
# they cost two clock reads a program run, so that session is not a measurement of cost).
# The bare and floor runs take seconds and are easily disturbed: they run ROUNDS times and
# the host takes each phase's median; the traced runs run once. Compare runs of one boot only.
#
# Console protocol (tests/vm/protocol.sh), read by xtask/src/vm/serial.rs and
# xtask/src/vm/bench.rs:
#   LOCKTRACE-VM-KERNEL <uname -r>
#   LOCKTRACE-VM-CHECK <name> PASS|FAIL <detail>                   one per run
#   LOCKTRACE-BENCH phase run=<run> phase=<name> ops=<n> ns=<n>      per round and phase
#   LOCKTRACE-BENCH session run=<run> attach_ms=<n> ready_ms=<n> traced_ms=<n> cpu_ms=<n>
#       bytes=<n> summary=<locktrace's last line>                   per session, one line
#   LOCKTRACE-VM-FILE-BEGIN watch-alerts.json <bytes>, base64, LOCKTRACE-VM-FILE-END ...
#                                                   watch's alerts on the workload, if any
#   LOCKTRACE-VM-RESULT PASS | LOCKTRACE-VM-RESULT FAIL <failed>/<total>   exactly once, last
#
# A session: locktrace starts in the background. attach_ms: until it says "N probes
# attached". It then reads the kernel's symbol table (seconds under TCG); ready_ms: until it
# is quiet (see settle). Then the workload runs; traced_ms is the wall time from ready to the
# workload's end, cpu_ms locktrace's utime+stime over that time. Then SIGINT; the summary
# gives the lock operations followed, the facts read, the losses by reason and the held
# stacks' corrections; bytes is the recording's size. `watch` exits 2 when it found alerts
# (they are shipped and printed, not judged here). Times come from /proc/uptime (10 ms steps: busybox's date has no nanoseconds).

LIMIT=1800         # seconds for one workload run, so one hang cannot eat the whole boot
ATTACH_LIMIT=600   # seconds for locktrace to attach its probes and settle
STOP_LIMIT=120     # seconds for locktrace to finish after SIGINT
ROUNDS=3           # workload runs for bare and floor
# The recording's tmpfs: room for the old design's recordings (a GB and more for the whole
# workload; facts take a few MB), in a 3 GiB guest.
mkdir -p /traces
mount -t tmpfs -o size=2200m tmpfs /traces
. /tests/protocol.sh

# ship NAME FILE: sends FILE to the host, if it has anything.
ship() {
    [ -s "$2" ] || return 0
    send_file "$1" "$2"
}

# now_ms: sets NOW to the milliseconds since boot. Shell builtins only, here and in cpu_ms:
# every process the script starts makes kernel lock events that locktrace then processes.
now_ms() {
    read -r up _ < /proc/uptime
    NOW=$((${up%.*} * 1000 + (1${up#*.} - 100) * 10))
}

# cpu_ms PID: sets CPU to the process's utime + stime in milliseconds (USER_HZ is 100 on
# x86); fails once the process is gone.
cpu_ms() {
    read -r stat 2> /dev/null < "/proc/$1/stat" || return 1
    # shellcheck disable=SC2086 # the fields of /proc/PID/stat, split on spaces
    set -- $stat
    CPU=$(((${14} + ${15}) * 10))
}

# workload RUN N: runs the workload N times (phases to /tmp/RUN.phases); sets LOAD_STATUS
# to the last failure's status, or 0.
workload() {
    : > "/tmp/$1.phases"
    LOAD_STATUS=0
    round=0
    while [ "$round" -lt "$2" ]; do
        timeout "$LIMIT" /tests/lockload /tmp >> "/tmp/$1.phases" 2>> "/tmp/$1.phases.err" ||
            LOAD_STATUS=$?
        round=$((round + 1))
    done
}

# phases RUN: prints the phases of run RUN.
phases() {
    sed "s/^/LOCKTRACE-BENCH phase run=$1 /" "/tmp/$1.phases"
}

# settle PID DEADLINE_MS: waits until PID used at most a fifth of a CPU over half a second
# (locktrace has read the symbol table and only drains the idle guest's events), or until
# DEADLINE_MS; fails when PID is gone.
settle() {
    cpu_ms "$1" || return 1
    before=$CPU
    while sleep 0.5; do
        cpu_ms "$1" || return 1
        now_ms
        [ $((CPU - before)) -le 100 ] || [ "$NOW" -gt "$2" ] && return 0
        before=$CPU
    done
}

# session RUN N FILE LOCKTRACE-ARGS...: runs the workload N times under `locktrace ARGS`
# (FILE: the recording it writes, or -) and reports the session.
session() {
    run=$1
    rounds=$2
    file=$3
    shift 3
    now_ms
    started=$NOW
    deadline=$((started + ATTACH_LIMIT * 1000))
    locktrace "$@" > "/tmp/$run.out" 2> "/tmp/$run.err" &
    pid=$!
    until grep -q 'probes attached' "/tmp/$run.err"; do
        now_ms
        kill -0 "$pid" 2> /dev/null && [ "$NOW" -le "$deadline" ] || break
        sleep 0.1
    done
    now_ms
    attached=$NOW
    if ! grep -q 'probes attached' "/tmp/$run.err" || ! settle "$pid" "$deadline"; then
        kill -KILL "$pid" 2> /dev/null
        wait "$pid"
        check "$run" 1 "locktrace did not attach: $(tail -n 1 "/tmp/$run.err")"
        return
    fi
    now_ms
    ready=$NOW
    cpu_ms "$pid"
    cpu_before=$CPU
    workload "$run" "$rounds"
    cpu_ms "$pid" || CPU=$cpu_before
    now_ms
    ended=$NOW
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
    phases "$run"
    sed 's/^/  | /' "/tmp/$run.err"
    echo "LOCKTRACE-BENCH session run=$run attach_ms=$((attached - started))" \
        "ready_ms=$((ready - started)) traced_ms=$((ended - ready))" \
        "cpu_ms=$((CPU - cpu_before)) bytes=$bytes" \
        "summary=$(grep -E '^locktrace: followed [0-9]+ lock operations' "/tmp/$run.err" | tail -n 1)"
    [ "$status" = 2 ] && [ "$1" = watch ] && status=0
    # Every session attaches what the floor attached: a program the verifier refused would
    # make a run cheap and wrong.
    probes=$(sed -n 's/^locktrace: \([0-9]*\) probes attached$/\1/p' "/tmp/$run.err" | tail -n 1)
    # Without a floor to compare with (the profile alone), every probe must attach.
    if [ -z "$FLOOR_PROBES" ]; then
        FLOOR_PROBES=$probes
        grep -q 'not attached' "/tmp/$run.err" && FLOOR_PROBES="all (some were not)"
    fi
    [ "$LOAD_STATUS" = 0 ] && [ "$status" = 0 ] && [ "$probes" = "$FLOOR_PROBES" ]
    passed=$?
    probe_note="$probes probes attached (floor: $FLOOR_PROBES)"
    check "$run" "$passed" "workload exit $LOAD_STATUS, locktrace exit $status, $probe_note: locktrace $*"
    [ "$file" = - ] || rm -f "$file"
}

echo "LOCKTRACE-VM-KERNEL $(uname -r)"

workload warmup 1
check warmup "$LOAD_STATUS" "workload exit $LOAD_STATUS"
# `cargo xtask vm bench --profile` (`locktrace.bench=profile`): the profile session alone, for
# working on the programs' cost.
if ! grep -qwF 'locktrace.bench=profile' /proc/cmdline; then
    workload bare "$ROUNDS"
    phases bare
    check bare "$LOAD_STATUS" "workload exit $LOAD_STATUS"
    session floor "$ROUNDS" - watch --floor
    session watch 1 - watch --json
    ship watch-alerts.json /tmp/watch.out
    session record 1 /traces/bench.lttrace record -o /traces/bench.lttrace
fi
# Where the programs' time goes: watch once more with the kernel's per-program run-time
# statistics on (two clock reads per program run: its times are not compared with the others).
export LOCKTRACE_PROG_STATS=1
session profile 1 - watch --json
unset LOCKTRACE_PROG_STATS

result
