/*
 * The kernel overhead benchmark's workload (`cargo xtask vm bench`, tests/vm/bench.sh):
 * system calls that take many kernel locks, one phase per family, each a fixed number of
 * operations timed with CLOCK_MONOTONIC. Each phase prints one line:
 *
 *   phase=<name> ops=<operations> ns=<elapsed nanoseconds>
 *
 *   lockload [DIR [DIVISOR]]
 *
 * DIR holds the phases' files (default /tmp; a tmpfs in the guest); DIVISOR divides every
 * phase's count (default 1): the VM suite's ordinary workload runs a short version.
 *
 * The counts make each phase last about 1-3 s in the qemu guests (TCG, no tracing). Exits
 * non-zero, saying why on stderr, when a system call fails.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGES_PER_MAP 16
#define IO_THREADS 4
#define IO_BLOCK 512

static char path[4096];

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* open, fstat and close one tmpfs file: dentry, inode and file-table locks. */
static void open_fstat_close(long ops)
{
	struct stat st;

	for (long i = 0; i < ops; i++) {
		int fd = open(path, O_RDONLY);

		if (fd < 0 || fstat(fd, &st) < 0 || close(fd) < 0)
			die("open/fstat/close");
	}
}

/* One byte to a child and back through two pipes: pipe mutexes, wait queues, wake-ups. */
static void pipe_round_trips(long ops)
{
	int to_child[2], to_parent[2];
	char byte = 0;

	if (pipe(to_child) < 0 || pipe(to_parent) < 0)
		die("pipe");
	pid_t child = fork();

	if (child < 0)
		die("fork");
	if (child == 0) {
		close(to_child[1]);
		while (read(to_child[0], &byte, 1) == 1)
			if (write(to_parent[1], &byte, 1) != 1)
				_exit(1);
		_exit(0);
	}
	for (long i = 0; i < ops; i++)
		if (write(to_child[1], &byte, 1) != 1 || read(to_parent[0], &byte, 1) != 1)
			die("pipe round trip");
	close(to_child[1]);
	if (waitpid(child, NULL, 0) < 0)
		die("waitpid");
	close(to_child[0]);
	close(to_parent[0]);
	close(to_parent[1]);
}

/* fork, _exit in the child, wait in the parent: mm copy, pid allocation, reaping. */
static void fork_wait(long ops)
{
	for (long i = 0; i < ops; i++) {
		pid_t child = fork();

		if (child < 0)
			die("fork");
		if (child == 0)
			_exit(0);
		if (waitpid(child, NULL, 0) < 0)
			die("waitpid");
	}
}

/* Map anonymous memory, fault in every page, unmap: mmap_lock, page-table locks, LRU. */
static void mmap_fault_munmap(long ops)
{
	long page = sysconf(_SC_PAGESIZE);

	for (long i = 0; i < ops; i++) {
		char *p = mmap(NULL, PAGES_PER_MAP * page, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			die("mmap");
		for (int j = 0; j < PAGES_PER_MAP; j++)
			p[j * page] = 1;
		if (munmap(p, PAGES_PER_MAP * page) < 0)
			die("munmap");
	}
}

/* A datagram between two sockets on 127.0.0.1: socket locks, the loopback softirq. A lost
 * datagram ends the phase with an error after one second instead of hanging. */
static void udp_loopback(long ops)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t len = sizeof(addr);
	struct timeval limit = { .tv_sec = 1 };
	char buf[64] = { 0 };
	int rx = socket(AF_INET, SOCK_DGRAM, 0);
	int tx = socket(AF_INET, SOCK_DGRAM, 0);

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (rx < 0 || tx < 0 || bind(rx, (struct sockaddr *)&addr, len) < 0 ||
	    getsockname(rx, (struct sockaddr *)&addr, &len) < 0 ||
	    setsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit)) < 0)
		die("udp socket");
	for (long i = 0; i < ops; i++)
		if (sendto(tx, buf, sizeof(buf), 0, (struct sockaddr *)&addr, len) < 0 ||
		    recv(rx, buf, sizeof(buf), 0) < 0)
			die("udp send/recv");
	close(rx);
	close(tx);
}

struct io_thread {
	int fd;
	int index;
	long ops;
};

static void *pwrite_pread(void *arg)
{
	struct io_thread *t = arg;
	char buf[IO_BLOCK];
	off_t offset = (off_t)t->index * IO_BLOCK;

	memset(buf, t->index, sizeof(buf));
	for (long i = 0; i < t->ops; i++)
		if (pwrite(t->fd, buf, sizeof(buf), offset) != IO_BLOCK ||
		    pread(t->fd, buf, sizeof(buf), offset) != IO_BLOCK)
			die("pwrite/pread");
	return NULL;
}

/* IO_THREADS threads writing and reading their own block of one shared file: the inode's
 * rwsem, the page cache, the file's position-less paths. An operation is one pwrite and one
 * pread. */
static void shared_file_io(long ops)
{
	pthread_t threads[IO_THREADS];
	struct io_thread args[IO_THREADS];
	int fd = open(path, O_RDWR);

	if (fd < 0)
		die("open");
	for (int i = 0; i < IO_THREADS; i++) {
		args[i] = (struct io_thread){ .fd = fd, .index = i, .ops = ops / IO_THREADS };
		if (pthread_create(&threads[i], NULL, pwrite_pread, &args[i]) != 0)
			die("pthread_create");
	}
	for (int i = 0; i < IO_THREADS; i++)
		pthread_join(threads[i], NULL);
	close(fd);
}

static const struct phase {
	const char *name;
	long ops;
	void (*run)(long ops);
} phases[] = {
	{ "open", 150000, open_fstat_close },
	{ "pipe", 40000, pipe_round_trips },
	{ "fork", 1200, fork_wait },
	{ "mmap", 12000, mmap_fault_munmap },
	{ "udp", 150000, udp_loopback },
	{ "pwrite", 300000, shared_file_io },
};

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	long divisor = argc > 2 ? atol(argv[2]) : 1;
	int fd;

	if (divisor < 1) {
		fprintf(stderr, "lockload: the divisor must be a positive number\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/lockload.%d", dir, (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, IO_THREADS * IO_BLOCK) < 0 || close(fd) < 0)
		die(path);
	for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++) {
		long ops = phases[i].ops / divisor > 0 ? phases[i].ops / divisor : 1;
		long long start = now_ns();

		phases[i].run(ops);
		printf("phase=%s ops=%ld ns=%lld\n", phases[i].name, ops, now_ns() - start);
		fflush(stdout);
	}
	unlink(path);
	return 0;
}
