// SPDX-License-Identifier: GPL-2.0
/*
 * locktrace_test: real lock patterns on demand, for locktrace's in-guest tests.
 *
 * Writing a pattern's name to /proc/locktrace_test runs that pattern once and returns when it
 * is complete:
 *
 *   seed            the seed's IRQ lock inversion: lt_seed_outer_lock is taken in hardirq
 *                   context (an hrtimer callback) and, in task context, held (IRQs saved)
 *                   while taking lt_seed_inner_lock, which is also taken with IRQs enabled.
 *   abba            lt_abba_a -> lt_abba_b in one kernel thread, then lt_abba_b -> lt_abba_a in
 *                   a second one, run one after the other so nothing deadlocks.
 *   vfree_irqoff    vfree() with IRQs disabled (the area is allocated before disabling them).
 *   percpu_softirq  a non-atomic (GFP_KERNEL) per-CPU allocation from softirq context (a
 *                   timer_list callback), after one from process context; both are freed in
 *                   process context.
 *   clean           lt_clean_first -> lt_clean_second in two kernel threads, the same order
 *                   each time: must not alert.
 *
 * Every lock is static, so the guest's /proc/kallsyms (KALLSYMS_ALL) names it. Debian's kernels
 * have neither LOCKDEP nor DEBUG_ATOMIC_SLEEP: none of these patterns makes the kernel itself
 * complain, and none can deadlock, since the conflicting orders never run at the same time.
 */
#include <linux/completion.h>
#include <linux/hrtimer.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/proc_fs.h>
#include <linux/sched.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/timer.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <linux/vmalloc.h>

#define PROC_NAME "locktrace_test"

/* seed */
static DEFINE_SPINLOCK(lt_seed_outer_lock);
static DEFINE_SPINLOCK(lt_seed_inner_lock);
static struct hrtimer lt_seed_timer;
static DECLARE_COMPLETION(lt_seed_fired);

/* abba */
static DEFINE_MUTEX(lt_abba_a);
static DEFINE_MUTEX(lt_abba_b);

/* clean */
static DEFINE_SPINLOCK(lt_clean_first);
static DEFINE_SPINLOCK(lt_clean_second);

/* percpu_softirq */
static struct timer_list lt_softirq_timer;
static DECLARE_COMPLETION(lt_softirq_fired);
static void __percpu *lt_softirq_area;

/* Serializes triggers: each pattern runs alone. */
static DEFINE_MUTEX(lt_trigger_mutex);

static enum hrtimer_restart lt_seed_timer_fn(struct hrtimer *timer)
{
	unsigned long flags;

	/* Hardirq context: lt_seed_outer_lock becomes HARDIRQ-safe. */
	spin_lock_irqsave(&lt_seed_outer_lock, flags);
	spin_unlock_irqrestore(&lt_seed_outer_lock, flags);
	complete(&lt_seed_fired);
	return HRTIMER_NORESTART;
}

static int run_seed(void)
{
	unsigned long flags;

	/* lt_seed_inner_lock taken with IRQs enabled: HARDIRQ-unsafe. */
	spin_lock(&lt_seed_inner_lock);
	spin_unlock(&lt_seed_inner_lock);

	/* lt_seed_outer_lock taken in hardirq context. */
	reinit_completion(&lt_seed_fired);
	hrtimer_start(&lt_seed_timer, ms_to_ktime(1), HRTIMER_MODE_REL_HARD);
	wait_for_completion(&lt_seed_fired);
	hrtimer_cancel(&lt_seed_timer);

	/* outer -> inner: a HARDIRQ-safe lock held while taking a HARDIRQ-unsafe one. */
	spin_lock_irqsave(&lt_seed_outer_lock, flags);
	spin_lock(&lt_seed_inner_lock);
	spin_unlock(&lt_seed_inner_lock);
	spin_unlock_irqrestore(&lt_seed_outer_lock, flags);
	return 0;
}

/* Two locks of one kind taken in a given order by a kernel thread. */
struct lt_order {
	struct mutex *first_mutex, *second_mutex;
	spinlock_t *first_spin, *second_spin;
	struct completion done;
};

static int lt_order_thread(void *arg)
{
	struct lt_order *order = arg;

	if (order->first_mutex) {
		mutex_lock(order->first_mutex);
		mutex_lock(order->second_mutex);
		mutex_unlock(order->second_mutex);
		mutex_unlock(order->first_mutex);
	} else {
		spin_lock(order->first_spin);
		spin_lock(order->second_spin);
		spin_unlock(order->second_spin);
		spin_unlock(order->first_spin);
	}
	complete(&order->done);
	/* Stay until kthread_stop(), so the task cannot go away under it. */
	while (!kthread_should_stop())
		schedule_timeout_interruptible(HZ / 10);
	return 0;
}

/* Runs one lt_order in a fresh kernel thread and waits until it has finished. */
static int run_order(struct lt_order *order, const char *name)
{
	struct task_struct *task;

	init_completion(&order->done);
	task = kthread_run(lt_order_thread, order, "%s", name);
	if (IS_ERR(task))
		return PTR_ERR(task);
	wait_for_completion(&order->done);
	return kthread_stop(task);
}

static int run_abba(void)
{
	struct lt_order ab = { .first_mutex = &lt_abba_a, .second_mutex = &lt_abba_b };
	struct lt_order ba = { .first_mutex = &lt_abba_b, .second_mutex = &lt_abba_a };
	int err;

	err = run_order(&ab, "lt_abba_ab");
	if (err)
		return err;
	return run_order(&ba, "lt_abba_ba");
}

static int run_clean(void)
{
	struct lt_order one = { .first_spin = &lt_clean_first, .second_spin = &lt_clean_second };
	struct lt_order two = { .first_spin = &lt_clean_first, .second_spin = &lt_clean_second };
	int err;

	err = run_order(&one, "lt_clean_one");
	if (err)
		return err;
	return run_order(&two, "lt_clean_two");
}

static int run_vfree_irqoff(void)
{
	unsigned long flags;
	void *area = vmalloc(PAGE_SIZE);

	if (!area)
		return -ENOMEM;
	memset(area, 0x5a, PAGE_SIZE);
	local_irq_save(flags);
	vfree(area);
	local_irq_restore(flags);
	return 0;
}

static void lt_softirq_timer_fn(struct timer_list *timer)
{
	/* Softirq context: __alloc_percpu() may sleep (GFP_KERNEL, pcpu_alloc_mutex). */
	lt_softirq_area = __alloc_percpu(sizeof(u64), sizeof(u64));
	complete(&lt_softirq_fired);
}

/*
 * The softirq allocation runs three times: kprobe programs (--attach kprobe) are skipped as a
 * whole in a softirq that runs on the exit of an interrupt which arrived while one of them was
 * running on that CPU (the kernel's per-CPU guard), so one run alone may go unseen there. The
 * alerts are the same however often the pattern repeats.
 */
#define LT_SOFTIRQ_RUNS 3

static int run_percpu_softirq(void)
{
	void __percpu *area;
	int run;

	/* Process context first, softirqs enabled: the ordinary use of the allocator. */
	area = __alloc_percpu(sizeof(u64), sizeof(u64));
	if (!area)
		return -ENOMEM;
	free_percpu(area);

	for (run = 0; run < LT_SOFTIRQ_RUNS; run++) {
		reinit_completion(&lt_softirq_fired);
		lt_softirq_area = NULL;
		mod_timer(&lt_softirq_timer, jiffies + 1);
		wait_for_completion(&lt_softirq_fired);
		timer_delete_sync(&lt_softirq_timer);
		if (!lt_softirq_area)
			return -ENOMEM;
		free_percpu(lt_softirq_area);
		lt_softirq_area = NULL;
	}
	return 0;
}

static const struct {
	const char *name;
	int (*run)(void);
} lt_patterns[] = {
	{ "seed", run_seed },
	{ "abba", run_abba },
	{ "vfree_irqoff", run_vfree_irqoff },
	{ "percpu_softirq", run_percpu_softirq },
	{ "clean", run_clean },
};

static ssize_t lt_proc_write(struct file *file, const char __user *ubuf, size_t count,
			     loff_t *ppos)
{
	char word[32];
	size_t len = min(count, sizeof(word) - 1);
	size_t i;
	int err = -EINVAL;

	if (copy_from_user(word, ubuf, len))
		return -EFAULT;
	word[len] = '\0';
	strim(word);

	mutex_lock(&lt_trigger_mutex);
	for (i = 0; i < ARRAY_SIZE(lt_patterns); i++) {
		if (strcmp(word, lt_patterns[i].name) == 0) {
			err = lt_patterns[i].run();
			break;
		}
	}
	mutex_unlock(&lt_trigger_mutex);
	if (err)
		return err;
	pr_info("locktrace_test: %s done\n", word);
	return count;
}

static const struct proc_ops lt_proc_ops = {
	.proc_write = lt_proc_write,
};

static int __init lt_init(void)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0)
	hrtimer_setup(&lt_seed_timer, lt_seed_timer_fn, CLOCK_MONOTONIC, HRTIMER_MODE_REL_HARD);
#else
	hrtimer_init(&lt_seed_timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL_HARD);
	lt_seed_timer.function = lt_seed_timer_fn;
#endif
	timer_setup(&lt_softirq_timer, lt_softirq_timer_fn, 0);
	if (!proc_create(PROC_NAME, 0200, NULL, &lt_proc_ops))
		return -ENOMEM;
	return 0;
}

static void __exit lt_exit(void)
{
	remove_proc_entry(PROC_NAME, NULL);
	hrtimer_cancel(&lt_seed_timer);
	timer_delete_sync(&lt_softirq_timer);
}

module_init(lt_init);
module_exit(lt_exit);
MODULE_DESCRIPTION("Real lock patterns on demand for locktrace's VM tests");
MODULE_LICENSE("GPL");
