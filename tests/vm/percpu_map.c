// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * percpu_map: creates and closes BPF_MAP_TYPE_PERCPU_ARRAY maps through the bpf() syscall.
 *
 * Creating one makes the kernel call the per-CPU allocator (pcpu_alloc_mutex, then pcpu_lock);
 * closing it frees the area again (free_percpu, pcpu_lock with IRQs saved), from a deferred
 * context. That gives locktrace's in-guest tests real kernel lock dependencies on demand.
 * Usage: percpu_map [COUNT] (default 4). Exits 0 on success. Dynamically linked, so that
 * `locktrace record -- percpu_map` can trace it through its C library.
 */
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int count = argc > 1 ? atoi(argv[1]) : 4;

	for (int i = 0; i < count; i++) {
		union bpf_attr attr;

		memset(&attr, 0, sizeof(attr));
		attr.map_type = BPF_MAP_TYPE_PERCPU_ARRAY;
		attr.key_size = 4;
		attr.value_size = 64;
		attr.max_entries = 16;
		int fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr));
		if (fd < 0) {
			perror("percpu_map: BPF_MAP_CREATE");
			return 1;
		}
		close(fd);
	}
	/* Map memory is freed after an RCU grace period: give it time to happen while we run. */
	usleep(200 * 1000);
	printf("percpu_map: created and closed %d per-CPU array maps\n", count);
	return 0;
}
