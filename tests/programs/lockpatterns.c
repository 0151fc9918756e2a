/*
 * Known pthread lock patterns for locktrace's user-space tests. Each thread finishes before
 * the next starts, so nothing actually deadlocks: the tracer must find the problem from the
 * order alone, as lockdep would.
 *
 *   lockpatterns abba        AB-BA between two threads
 *   lockpatterns ab          only A then B (with `ba`, an AB-BA split over two runs)
 *   lockpatterns ba          only B then A
 *   lockpatterns evil-abba   the same from threads named with a terminal escape and a newline
 *   lockpatterns late-abba   the same after sleeping a second (lets a tracer attach late)
 *   lockpatterns abba-wait   the same, then waits to be killed (a session that stays up)
 *   lockpatterns cycle3      A->B, B->C, C->A across three threads
 *   lockpatterns rwmutex     rwlock writer vs mutex in opposite orders
 *   lockpatterns reader-held      a reader takes a mutex with the rwlock read-held, then
 *                                 the mutex then the rwlock for writing: a cycle
 *   lockpatterns reader-released  the same, but the reader unlocks the rwlock before taking
 *                                 the mutex: no cycle
 *   lockpatterns clean       consistent order in eight threads; the reverse order only by trylock
 *   lockpatterns repeat N    the AB-BA cycle N times
 *   lockpatterns bench N     N lock/unlock pairs in one thread, timed (overhead benchmark)
 *   lockpatterns chains N    N+1 mutexes taken in overlapping pairs (N new chains, in order:
 *                            no alert), then waits to be killed
 *
 * Built with frame pointers so user stacks can be walked.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h> /* pause */
#include <stdlib.h>
#include <string.h>
#include <time.h>

pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t lock_c = PTHREAD_MUTEX_INITIALIZER;
pthread_rwlock_t table_rwlock = PTHREAD_RWLOCK_INITIALIZER;

static void __attribute__((noinline)) take_two(pthread_mutex_t *first, pthread_mutex_t *second)
{
	pthread_mutex_lock(first);
	pthread_mutex_lock(second);
	pthread_mutex_unlock(second);
	pthread_mutex_unlock(first);
}

static void *__attribute__((noinline)) take_a_then_b(void *arg)
{
	(void)arg;
	take_two(&lock_a, &lock_b);
	return NULL;
}

static void *__attribute__((noinline)) take_b_then_a(void *arg)
{
	(void)arg;
	take_two(&lock_b, &lock_a);
	return NULL;
}

/* Clears the screen and starts a forged line if printed raw (15 bytes at most, as comm). */
static const char EVIL_NAME[] = "\033[2J\nFORGED";

static void *__attribute__((noinline)) evil_a_then_b(void *arg)
{
	pthread_setname_np(pthread_self(), EVIL_NAME);
	return take_a_then_b(arg);
}

static void *__attribute__((noinline)) evil_b_then_a(void *arg)
{
	pthread_setname_np(pthread_self(), EVIL_NAME);
	return take_b_then_a(arg);
}

static void *__attribute__((noinline)) take_b_then_c(void *arg)
{
	(void)arg;
	take_two(&lock_b, &lock_c);
	return NULL;
}

static void *__attribute__((noinline)) take_c_then_a(void *arg)
{
	(void)arg;
	take_two(&lock_c, &lock_a);
	return NULL;
}

static void *__attribute__((noinline)) write_table_then_a(void *arg)
{
	(void)arg;
	pthread_rwlock_wrlock(&table_rwlock);
	pthread_mutex_lock(&lock_a);
	pthread_mutex_unlock(&lock_a);
	pthread_rwlock_unlock(&table_rwlock);
	return NULL;
}

static void *__attribute__((noinline)) a_then_write_table(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock_a);
	pthread_rwlock_wrlock(&table_rwlock);
	pthread_rwlock_unlock(&table_rwlock);
	pthread_mutex_unlock(&lock_a);
	return NULL;
}

static void *__attribute__((noinline)) read_table_then_a(void *arg)
{
	(void)arg;
	pthread_rwlock_rdlock(&table_rwlock);
	pthread_mutex_lock(&lock_a);
	pthread_mutex_unlock(&lock_a);
	pthread_rwlock_unlock(&table_rwlock);
	return NULL;
}

static void *__attribute__((noinline)) read_table_then_later_a(void *arg)
{
	(void)arg;
	pthread_rwlock_rdlock(&table_rwlock);
	pthread_rwlock_unlock(&table_rwlock);
	pthread_mutex_lock(&lock_a);
	pthread_mutex_unlock(&lock_a);
	return NULL;
}

static void *__attribute__((noinline)) a_b_c_in_order(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock_a);
	pthread_mutex_lock(&lock_b);
	pthread_mutex_lock(&lock_c);
	pthread_mutex_unlock(&lock_c);
	pthread_mutex_unlock(&lock_b);
	pthread_mutex_unlock(&lock_a);
	return NULL;
}

static void *__attribute__((noinline)) b_then_try_a(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock_b);
	if (pthread_mutex_trylock(&lock_a) == 0)
		pthread_mutex_unlock(&lock_a);
	pthread_mutex_unlock(&lock_b);
	return NULL;
}

static void run_one(void *(*fn)(void *))
{
	pthread_t thread;
	if (pthread_create(&thread, NULL, fn, NULL) != 0) {
		perror("pthread_create");
		exit(2);
	}
	pthread_join(thread, NULL);
}

int main(int argc, char **argv)
{
	const char *pattern = argc > 1 ? argv[1] : "";
	long count = argc > 2 ? atol(argv[2]) : 0;

	if (!strcmp(pattern, "late-abba")) {
		struct timespec pause = { 1, 0 };
		nanosleep(&pause, NULL);
		run_one(take_a_then_b);
		run_one(take_b_then_a);
	} else if (!strcmp(pattern, "ab")) {
		run_one(take_a_then_b);
	} else if (!strcmp(pattern, "ba")) {
		run_one(take_b_then_a);
	} else if (!strcmp(pattern, "abba")) {
		run_one(take_a_then_b);
		run_one(take_b_then_a);
	} else if (!strcmp(pattern, "abba-wait")) {
		run_one(take_a_then_b);
		run_one(take_b_then_a);
		for (;;)
			pause();
	} else if (!strcmp(pattern, "evil-abba")) {
		run_one(evil_a_then_b);
		run_one(evil_b_then_a);
	} else if (!strcmp(pattern, "cycle3")) {
		run_one(take_a_then_b);
		run_one(take_b_then_c);
		run_one(take_c_then_a);
	} else if (!strcmp(pattern, "rwmutex")) {
		run_one(write_table_then_a);
		run_one(a_then_write_table);
	} else if (!strcmp(pattern, "reader-held")) {
		run_one(read_table_then_a);
		run_one(a_then_write_table);
	} else if (!strcmp(pattern, "reader-released")) {
		run_one(read_table_then_later_a);
		run_one(a_then_write_table);
	} else if (!strcmp(pattern, "clean")) {
		for (int i = 0; i < 8; i++)
			run_one(a_b_c_in_order);
		run_one(b_then_try_a);
	} else if (!strcmp(pattern, "repeat")) {
		for (long i = 0; i < count; i++) {
			take_a_then_b(NULL);
			take_b_then_a(NULL);
		}
	} else if (!strcmp(pattern, "bench")) {
		struct timespec start, end;
		clock_gettime(CLOCK_MONOTONIC, &start);
		for (long i = 0; i < count; i++) {
			pthread_mutex_lock(&lock_a);
			pthread_mutex_unlock(&lock_a);
		}
		clock_gettime(CLOCK_MONOTONIC, &end);
		long long ns = (end.tv_sec - start.tv_sec) * 1000000000LL + (end.tv_nsec - start.tv_nsec);
		/* One lock and one unlock per iteration: two lock operations. */
		fprintf(stderr, "bench: %ld lock operations in %lld ns\n", 2 * count, ns);
	} else if (!strcmp(pattern, "chains")) {
		pthread_mutex_t *locks = calloc(count + 1, sizeof(*locks));
		if (!locks) {
			perror("calloc");
			return 2;
		}
		for (long i = 0; i <= count; i++)
			pthread_mutex_init(&locks[i], NULL);
		for (long i = 0; i < count; i++) {
			pthread_mutex_lock(&locks[i]);
			pthread_mutex_lock(&locks[i + 1]);
			pthread_mutex_unlock(&locks[i + 1]);
			pthread_mutex_unlock(&locks[i]);
		}
		for (;;)
			pause();
	} else {
		fprintf(stderr, "usage: lockpatterns abba|abba-wait|evil-abba|cycle3|rwmutex|reader-held|reader-released|clean|repeat N|bench N|chains N\n");
		return 2;
	}
	return 0;
}
