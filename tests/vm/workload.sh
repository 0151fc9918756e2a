#!/bin/sh
# A short ordinary workload, without the test module: file I/O, process creation and loopback
# networking, then a quarter of the kernel benchmark's lock-heavy workload (lockload: open,
# pipes, fork, mmap, UDP, threads on one file). locktrace must raise no inversion alert
# while it runs.
set -e
mkdir -p /tmp/workload/www
cd /tmp/workload

# File I/O on tmpfs: write, copy, read back, rename, delete.
i=0
while [ $i -lt 20 ]; do
    dd if=/dev/urandom of=file$i bs=4k count=16 2>/dev/null
    cp file$i copy$i
    cmp file$i copy$i
    mv copy$i moved$i
    i=$((i + 1))
done
sync
cat file* moved* > /dev/null
rm -f file* moved*

# Process creation: short-lived shells and pipelines.
i=0
while [ $i -lt 30 ]; do
    sh -c 'echo $$ | wc -c' > /dev/null
    i=$((i + 1))
done

# Loopback networking: ICMP, and HTTP over TCP.
ping -c 3 -i 0.2 127.0.0.1 > /dev/null
dd if=/dev/urandom of=www/blob bs=64k count=4 2>/dev/null
httpd -p 127.0.0.1:8080 -h /tmp/workload/www
i=0
while [ $i -lt 10 ]; do
    wget -q -O got http://127.0.0.1:8080/blob
    cmp got www/blob
    i=$((i + 1))
done
kill "$(pidof httpd)"
rm -rf /tmp/workload

# Lock-heavy system calls from several threads and processes at once.
/tests/lockload /tmp 4 > /dev/null
