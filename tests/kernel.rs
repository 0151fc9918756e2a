//! Real attach on the running kernel (root and BPF required; see `support::bpf_available`):
//! recordings of real per-CPU allocator activity, signal handling, clean detach, privileges
//! and `locktrace check`.

mod support;

use std::{
    io::{BufRead, BufReader},
    os::fd::{FromRawFd, OwnedFd},
    process::{Child, Stdio},
    sync::mpsc,
    time::Duration,
};

use tracer::{
    fact::FactRecord,
    tracefile::{DropCounts, Record, TraceReader},
};
use tracer_common::{EventKind, ExecContext, IrqState};

/// Starts `locktrace ARGS` and waits until it says its probes are attached.
fn start_attached(args: &[&str]) -> Child {
    let mut child = support::locktrace()
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn locktrace");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[locktrace] {line}");
            if line.contains("probes attached") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("locktrace attached its probes");
    child
}

/// Creates a per-CPU array map through the bpf() syscall: the kernel allocates its values
/// with `pcpu_alloc`. Closing the returned descriptor frees them with `free_percpu`.
fn create_percpu_map() -> OwnedFd {
    #[repr(C)]
    struct MapCreateAttr {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
    }
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
    let attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_PERCPU_ARRAY,
        key_size: 4,
        value_size: 64,
        max_entries: 16,
        map_flags: 0,
    };
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            &raw const attr,
            std::mem::size_of::<MapCreateAttr>(),
        )
    };
    assert!(
        fd >= 0,
        "BPF_MAP_CREATE: {}",
        std::io::Error::last_os_error()
    );
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

fn signal(child: &Child, sig: i32) {
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// Every fact in a trace file, and whether it ended cleanly.
fn read_facts(path: &std::path::Path) -> (Vec<FactRecord>, bool) {
    let mut reader = TraceReader::open(path).expect("open the recording");
    let mut facts = Vec::new();
    for record in reader.by_ref() {
        if let Record::Facts(batch) = record.expect("no damage in the recording") {
            facts.extend(batch);
        }
    }
    (facts, reader.end().is_some())
}

/// The last counters a recording holds.
fn last_counts(path: &std::path::Path) -> DropCounts {
    let mut reader = TraceReader::open(path).expect("open the recording");
    let mut last = None;
    for record in reader.by_ref() {
        if let Record::Drops(counts) = record.expect("no damage in the recording") {
            last = Some(counts);
        }
    }
    last.expect("the recording holds its counters")
}

/// Where a recording to `target` is written until it finishes.
fn partial(target: &std::path::Path) -> std::path::PathBuf {
    let mut name = target.file_name().unwrap().to_os_string();
    name.push(".partial");
    target.with_file_name(name)
}

/// Names of our programs still loaded in the kernel.
fn our_programs_loaded() -> Vec<String> {
    const OURS: &[&str] = &[
        "tp_percpu_alloc",
        "tp_percpu_free",
        "tp_hardirq_entr",
        "tp_softirq_entr",
        "up_mutex_lock",
        "up_lock_return",
    ];
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|info| info.name_as_str().map(str::to_string))
        .filter(|name| OURS.iter().any(|ours| name.starts_with(ours)))
        .collect()
}

#[test]
fn per_cpu_allocations_are_recorded_with_irq_state_and_context() {
    let _one_session = support::one_session_at_a_time();
    if !support::bpf_available("per_cpu_allocations_are_recorded_with_irq_state_and_context") {
        return;
    }
    let dir = support::tempdir();
    let trace = support::path_in(&dir, "percpu.lttrace");
    let mut recorder =
        start_attached(&["record", "-o", trace.to_str().unwrap(), "--duration", "60"]);
    for _ in 0..8 {
        drop(create_percpu_map());
    }
    // Map values are freed from a workqueue after the last reference goes: give it a moment.
    std::thread::sleep(Duration::from_millis(500));
    signal(&recorder, libc::SIGINT);
    let status = recorder.wait().unwrap();
    assert!(status.success(), "locktrace record exited with {status}");

    let (facts, clean) = read_facts(&trace);
    assert!(clean, "SIGINT leaves a cleanly finished file");
    let me = std::process::id();
    let allocs: Vec<&FactRecord> = facts
        .iter()
        .filter(|f| f.call() == Some(EventKind::PcpuAlloc) && f.pid == me)
        .collect();
    // Each map creation allocates per-CPU memory from the same caller in the same state with
    // nothing held: the first is sent, the repeats are counted (`repeated_calls`).
    assert!(
        !allocs.is_empty(),
        "map creation allocates per-CPU memory: no fact from this test"
    );
    let repeated = last_counts(&trace).get("repeated_calls");
    assert!(
        repeated + allocs.len() as u64 >= 8,
        "8 allocations: {} facts and {repeated} repeats counted",
        allocs.len()
    );
    for alloc in &allocs {
        assert_eq!(
            alloc.irqs,
            IrqState::Enabled,
            "pcpu_alloc runs with IRQs on"
        );
        assert_eq!(alloc.context, ExecContext::Task, "in task context");
        assert!(
            !alloc.has(tracer_common::flags::ATOMIC),
            "GFP_KERNEL allocations"
        );
        assert!(alloc.stack.is_some(), "every call fact carries its stack");
    }
    let frees: Vec<&FactRecord> = facts
        .iter()
        .filter(|f| f.call() == Some(EventKind::PcpuFree))
        .collect();
    assert!(!frees.is_empty(), "closing the maps frees per-CPU memory");
    for free in &frees {
        assert_eq!(
            free.irqs,
            IrqState::Disabled,
            "percpu_free_percpu fires under pcpu_lock with IRQs saved"
        );
    }
}

#[test]
fn sigterm_and_sigkill_leave_a_readable_file_and_nothing_attached() {
    let _one_session = support::one_session_at_a_time();
    // SIGTERM finishes the recording and renames it into place; SIGKILL leaves its partial
    // file, readable up to the last complete chunk.
    if !support::bpf_available("sigterm_and_sigkill_leave_a_readable_file_and_nothing_attached") {
        return;
    }
    let dir = support::tempdir();
    for (sig, clean_end) in [(libc::SIGTERM, true), (libc::SIGKILL, false)] {
        let trace = support::path_in(&dir, &format!("sig{sig}.lttrace"));
        let mut recorder =
            start_attached(&["record", "-o", trace.to_str().unwrap(), "--duration", "60"]);
        assert!(
            !our_programs_loaded().is_empty(),
            "programs are loaded while recording"
        );
        for _ in 0..4 {
            drop(create_percpu_map());
        }
        // Past one flush tick, so the SIGKILL case has complete chunks on disk.
        std::thread::sleep(Duration::from_millis(1500));
        signal(&recorder, sig);
        recorder.wait().unwrap();

        // A killed recorder cannot rename its file into place: what it wrote is readable in
        // the partial file next to the target, and the target is not there.
        let written = if clean_end {
            trace.clone()
        } else {
            assert!(!trace.exists(), "signal {sig}: no file at the target");
            partial(&trace)
        };
        let mut reader = TraceReader::open(&written).expect("the file has a valid header");
        let mut facts = 0;
        for record in reader.by_ref() {
            if let Ok(Record::Facts(batch)) = record {
                facts += batch.len();
            }
        }
        assert!(
            facts > 0,
            "signal {sig}: facts before the signal are in the file"
        );
        assert_eq!(
            reader.end().is_some(),
            clean_end,
            "signal {sig}: a clean end only when the process could finish"
        );
        if !clean_end {
            assert!(
                reader.damage().is_some(),
                "a killed recording says where it stops"
            );
        }
        // The kernel releases programs when the last descriptor closes; give it a moment.
        let mut left = our_programs_loaded();
        for _ in 0..50 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            left = our_programs_loaded();
        }
        assert!(
            left.is_empty(),
            "signal {sig}: programs still loaded: {left:?}"
        );
    }
}

#[test]
fn non_root_gets_one_clear_error() {
    let _one_session = support::one_session_at_a_time();
    if !support::bpf_available("non_root_gets_one_clear_error") {
        return;
    }
    use std::os::unix::process::CommandExt;
    let output = support::locktrace()
        .args(["watch", "--duration", "1"])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run locktrace as nobody");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stderr}");
    assert!(lines[0].contains("needs root"), "{stderr}");
}

#[test]
fn a_non_root_record_leaves_the_existing_file_alone() {
    let _one_session = support::one_session_at_a_time();
    if !support::bpf_available("a_non_root_record_leaves_the_existing_file_alone") {
        return;
    }
    use std::os::unix::{fs::PermissionsExt, process::CommandExt};
    let dir = support::tempdir();
    // A directory nobody can write to, holding an earlier recording.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let trace = support::path_in(&dir, "earlier.lttrace");
    std::fs::write(&trace, b"an earlier recording").unwrap();
    let output = support::locktrace()
        .args(["record", "--duration", "1", "-o"])
        .arg(&trace)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run locktrace as nobody");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("needs root"), "{stderr}");
    assert_eq!(std::fs::read(&trace).unwrap(), b"an earlier recording");
    assert!(!partial(&trace).exists(), "no partial file left");
}

#[test]
fn a_second_record_to_the_same_file_fails_and_the_first_keeps_its_facts() {
    let _one_session = support::one_session_at_a_time();
    if !support::bpf_available(
        "a_second_record_to_the_same_file_fails_and_the_first_keeps_its_facts",
    ) {
        return;
    }
    let dir = support::tempdir();
    let trace = support::path_in(&dir, "shared.lttrace");
    let mut first = start_attached(&["record", "-o", trace.to_str().unwrap(), "--duration", "60"]);
    let second = support::locktrace()
        .args(["record", "--duration", "1", "-o"])
        .arg(&trace)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("being recorded by another process"),
        "{stderr}"
    );
    for _ in 0..4 {
        drop(create_percpu_map());
    }
    signal(&first, libc::SIGINT);
    assert!(first.wait().unwrap().success());
    let (facts, clean) = read_facts(&trace);
    assert!(clean, "the first recording finished in place");
    assert!(!facts.is_empty(), "with its facts");
}

#[test]
fn check_reports_what_this_kernel_allows() {
    let _one_session = support::one_session_at_a_time();
    if !support::bpf_available("check_reports_what_this_kernel_allows") {
        return;
    }
    let output = support::locktrace()
        .args(["check", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let feature = |name: &str| {
        report["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("feature {name} in {report}"))
            .clone()
    };
    assert_eq!(feature("tracepoints")["ok"], true, "{report}");
    assert_eq!(feature("uprobes")["ok"], true, "{report}");
    // This machine's kernel (6.18) has the kfunc and `struct pt_regs` in BTF: the programs
    // read trampoline frames with plain loads (the struct's BTF id is found).
    assert_eq!(feature("kfunc:bpf_rdonly_cast")["ok"], true, "{report}");
    // Whether trampolines load is the kernel's decision; what `check` says must match what
    // happened to the fexit probes, and a refusal must say why.
    let probes = report["probes"].as_array().unwrap();
    let fexit_attached = probes
        .iter()
        .any(|p| p["kind"] == "fexit" && p["attached"] == true);
    assert_eq!(feature("trampolines")["ok"], fexit_attached, "{report}");
    if !fexit_attached {
        let refused = probes
            .iter()
            .find(|p| p["name"] == "fexit:_raw_spin_lock")
            .expect("the spinlock probe is listed");
        assert!(
            refused["detail"].as_str().unwrap().contains("EPERM"),
            "the refusal names the error: {refused}"
        );
    }
}

/// `--attach kprobe` follows the lock functions by kprobes alone: where the kernel has no
/// kprobes (this machine's kind) the session says so in one line and runs on with what
/// attached; where it has them, they attach and no trampoline is tried.
#[test]
fn attach_kprobe_uses_kprobes_alone_or_says_in_one_line_why_not() {
    let _one_session = support::one_session_at_a_time();
    if !support::bpf_available("attach_kprobe_uses_kprobes_alone_or_says_in_one_line_why_not") {
        return;
    }
    let output = support::locktrace()
        .args(["watch", "--attach", "kprobe", "--duration", "1"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let not_attached: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("not attached"))
        .collect();
    assert!(
        !not_attached
            .iter()
            .any(|line| line.contains("fexit:") || line.contains("fentry:")),
        "no trampoline is tried: {stderr}"
    );
    if std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        assert!(not_attached.is_empty(), "{stderr}");
    } else {
        assert_eq!(not_attached.len(), 1, "{stderr}");
        assert!(
            not_attached[0].contains("kprobes not available in this kernel"),
            "{stderr}"
        );
    }
    assert!(
        stderr.contains("probes attached"),
        "the tracepoints run on: {stderr}"
    );
}

#[test]
fn check_prints_a_line_per_attach_type_and_every_probe_when_verbose() {
    let _one_session = support::one_session_at_a_time();
    if !support::bpf_available("check_prints_a_line_per_attach_type_and_every_probe_when_verbose") {
        return;
    }
    let run = |args: &[&str]| {
        let output = support::locktrace().args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let short = run(&["check"]);
    let verbose = run(&["check", "--verbose"]);
    assert!(short.contains("\nPROBES "), "{short}");
    assert!(short.lines().count() < 40, "{short}");
    // Every attach type gets its line; the probes themselves only under --verbose.
    for kind in ["fexit", "fentry", "tp_btf", "uprobe"] {
        assert!(
            short.lines().any(|l| l.starts_with(kind)),
            "{kind} in {short}"
        );
    }
    assert!(!short.contains("fexit:_raw_spin_lock "), "{short}");
    assert!(verbose.contains("fexit:_raw_spin_lock "), "{verbose}");
    assert!(verbose.lines().count() > 60, "{verbose}");
}

/// Makes `mmap_lock` contended: threads of one process mapping and unmapping memory.
fn contend_on_mmap_lock(duration: Duration) {
    let until = std::time::Instant::now() + duration;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                while std::time::Instant::now() < until {
                    unsafe {
                        let p = libc::mmap(
                            std::ptr::null_mut(),
                            1 << 16,
                            libc::PROT_READ | libc::PROT_WRITE,
                            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                            -1,
                            0,
                        );
                        libc::munmap(p, 1 << 16);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn contended_locks_are_classed_by_their_slab_cache() {
    let _one_session = support::one_session_at_a_time();
    if !support::bpf_available("contended_locks_are_classed_by_their_slab_cache") {
        return;
    }
    let btf = tracer::probes::btf::KernelBtf::from_sys_fs().unwrap();
    if !btf.has_func("bpf_get_kmem_cache") {
        eprintln!("SKIPPED slab-cache assertions: this kernel has no bpf_get_kmem_cache (6.13+)");
        return;
    }
    let dir = support::tempdir();
    let trace = support::path_in(&dir, "contention.lttrace");
    let mut recorder =
        start_attached(&["record", "-o", trace.to_str().unwrap(), "--duration", "60"]);
    contend_on_mmap_lock(Duration::from_secs(2));
    signal(&recorder, libc::SIGINT);
    assert!(recorder.wait().unwrap().success());

    let mut reader = TraceReader::open(&trace).unwrap();
    let mut symbols = tracer::symbols::Symbols::default();
    let mut contention = None;
    for record in reader.by_ref() {
        let record = record.unwrap();
        tracer::tracefile::apply_to_symbols(&record, &mut symbols);
        if let Record::Contention(snapshot) = record {
            contention = Some(snapshot);
        }
    }
    let stats = contention
        .expect("the recording ends with contention figures")
        .stats;
    assert!(
        stats.iter().any(|s| s.count > 0 && s.wait_ns > 0),
        "four threads mapping memory contend on mmap_lock: {stats:?}"
    );
    // The contention tracepoints see the lock by address: a class the address decides.
    let caches: std::collections::BTreeSet<&str> = stats
        .iter()
        .filter(|s| s.class.class_tag() == Some(tracer_common::ClassTag::SlabField))
        .filter_map(|s| symbols.slab_caches.get(&s.class.a))
        .map(String::as_str)
        .collect();
    assert!(
        caches.contains("mm_struct"),
        "mmap_lock lives in an mm_struct: caches seen {caches:?}"
    );
}

#[test]
fn a_missing_symbols_file_fails_before_attaching() {
    let _one_session = support::one_session_at_a_time();
    if !support::bpf_available("a_missing_symbols_file_fails_before_attaching") {
        return;
    }
    let output = support::locktrace()
        .args([
            "watch",
            "--duration",
            "1",
            "--symbols",
            "/nonexistent/System.map",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line, nothing attached: {stderr}"
    );
    assert!(stderr.contains("/nonexistent/System.map"), "{stderr}");
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: std::path::PathBuf, size: &str) -> SmallDisk {
        std::fs::create_dir(&at).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .status()
            .expect("mount");
        assert!(status.success(), "mounting a tmpfs at {}", at.display());
        SmallDisk(at)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_the_recording_and_its_command() {
    let _one_session = support::one_session_at_a_time();
    if !support::bpf_available("a_full_disk_stops_the_recording_and_its_command") {
        return;
    }
    let dir = support::tempdir();
    let disk = SmallDisk::mount(support::path_in(&dir, "disk"), "64k");
    let trace = disk.0.join("full.lttrace");
    let pidfile = support::path_in(&dir, "pid");
    // The command outlives any sensible session: only locktrace's error can end it. It takes
    // pthread mutexes in new pairs (new chains: facts that fill the disk; an idle kernel's
    // recording grows too slowly), then waits.
    let output = support::locktrace()
        .args(["record", "-o"])
        .arg(&trace)
        .args(["--", "sh", "-c"])
        .arg(format!(
            "echo $$ > {0}.tmp && mv {0}.tmp {0} && exec {1} chains 100000",
            pidfile.display(),
            support::lockpatterns().display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("No space left"), "{stderr}");
    assert!(
        !trace.exists(),
        "an incomplete recording is not put in place"
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("the command ran")
        .trim()
        .parse()
        .unwrap();
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ")?.1.chars().next());
    assert!(
        matches!(state, None | Some('Z')),
        "the command still runs: {state:?}"
    );
}
