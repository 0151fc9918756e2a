# The console protocol both guest scripts speak (guest-tests.sh and bench.sh source this;
# xtask/src/vm/serial.rs reads it): one line per check, files in base64, one result line.

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

# send_file NAME FILE: sends FILE to the host. Kernel messages stay off the console meanwhile.
send_file() {
    dmesg -n 1
    echo "LOCKTRACE-VM-FILE-BEGIN $1 $(wc -c < "$2")"
    base64 "$2"
    echo "LOCKTRACE-VM-FILE-END $1"
    dmesg -n 5
}

# result: the last line, exactly once.
result() {
    if [ "$FAILED" = 0 ]; then
        echo "LOCKTRACE-VM-RESULT PASS"
    else
        echo "LOCKTRACE-VM-RESULT FAIL $FAILED/$TOTAL"
    fi
}
