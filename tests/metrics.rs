//! `locktrace watch --metrics ADDR`: scraped with a real HTTP client while a traced program
//! makes an AB-BA (root and BPF), and the addresses that stop it before tracing starts (no
//! BPF needed: the address is bound before anything is attached).

mod support;

use std::{
    net::TcpListener,
    process::{Child, Output, Stdio},
    time::{Duration, Instant},
};

/// A port nobody listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The value of `series` (a name with its labels, as rendered) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// An HTTP client that returns error statuses as responses.
fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// Kills locktrace if the test fails while it runs (its command dies with it).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn watch_serves_metrics_while_a_traced_program_makes_an_abba() {
    if !support::bpf_available("watch_serves_metrics_while_a_traced_program_makes_an_abba") {
        return;
    }
    let dir = support::tempdir();
    let log = support::path_in(&dir, "stderr");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut locktrace = Running(
        support::locktrace()
            .args(["watch", "--json", "--no-kernel", "--metrics", &addr, "--"])
            .arg(support::lockpatterns())
            .arg("abba-wait")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let stderr = || std::fs::read_to_string(&log).unwrap_or_default();
    let client = client();
    let url = format!("http://{addr}/metrics");

    // Served from before the probes attach until the session ends; the session publishes its
    // figures once a second.
    let deadline = Instant::now() + Duration::from_secs(120);
    let text = loop {
        if let Ok(mut response) = client.get(&url).call() {
            assert_eq!(response.status(), 200);
            assert_eq!(
                response.headers()["content-type"],
                "text/plain; version=0.0.4; charset=utf-8"
            );
            let text = response.body_mut().read_to_string().unwrap();
            let alerts = sample(
                &text,
                r#"locktrace_alerts_total{kind="circular_dependency"}"#,
            );
            if alerts == Some(1.0) {
                break text;
            }
        }
        assert!(
            locktrace.0.try_wait().unwrap().is_none(),
            "locktrace exited early: {}",
            stderr()
        );
        assert!(
            Instant::now() < deadline,
            "no circular dependency scraped in time: {}",
            stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    let value =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"));
    let lock_ops = value(r#"locktrace_lock_operations_total{operation="acquire"}"#)
        + value(r#"locktrace_lock_operations_total{operation="release"}"#);
    assert!(lock_ops >= 8.0, "two threads took two locks each:\n{text}");
    assert!(value("locktrace_classes") >= 2.0, "{text}");
    assert!(value("locktrace_dependencies") >= 2.0, "{text}");
    assert!(
        value(r#"locktrace_facts_total{kind="chain"}"#) >= 2.0,
        "{text}"
    );
    assert!(value("locktrace_probes_attached") > 0.0, "{text}");
    assert!(
        value("locktrace_session_start_time_seconds") > 1.7e9,
        "{text}"
    );
    assert_eq!(value(r#"locktrace_losses_total{reason="ring_full"}"#), 0.0);
    assert_eq!(
        value(r#"locktrace_suppressed_alerts_total{kind="circular_dependency"}"#),
        0.0
    );
    assert!(value("process_resident_memory_bytes") > 0.0, "{text}");
    assert!(value("process_cpu_seconds_total") > 0.0, "{text}");
    assert!(text.contains("\nlocktrace_info{version="), "{text}");

    let other = client.get(format!("http://{addr}/")).call().unwrap();
    assert_eq!(other.status(), 404);

    // Stopped as a service manager stops it: the session ends cleanly, and the alert it found
    // gives the alert status.
    unsafe { libc::kill(locktrace.0.id() as i32, libc::SIGTERM) };
    let status = locktrace.0.wait().unwrap();
    assert_eq!(status.code(), Some(2), "{}", stderr());
}

/// The one line of standard error, which must be a `locktrace: error:` line.
fn one_error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("locktrace: error: "), "{stderr}");
    lines[0].to_string()
}

#[test]
fn an_address_in_use_is_one_error_line_before_tracing() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    // `true` would run to its end in a moment if anything were attached: one line means
    // nothing was.
    let output = support::locktrace()
        .args(["watch", "--no-kernel", "--metrics", &addr, "--", "true"])
        .output()
        .unwrap();
    let line = one_error_line(&output);
    assert!(line.contains(&addr) && line.contains("in use"), "{line}");
}

#[test]
fn a_malformed_metrics_address_is_one_error_line() {
    for bad in [
        "nonsense",
        "127.0.0.1",
        "localhost:9464",
        "127.0.0.1:99999",
        "[::]",
    ] {
        let output = support::locktrace()
            .args(["watch", "--no-kernel", "--metrics", bad, "--", "true"])
            .output()
            .unwrap();
        let line = one_error_line(&output);
        assert!(line.contains("--metrics"), "{bad}: {line}");
    }
}

#[test]
fn record_does_not_serve_metrics() {
    let dir = support::tempdir();
    let output = support::locktrace()
        .args(["record", "--no-kernel", "--metrics", "127.0.0.1:0", "-o"])
        .arg(support::path_in(&dir, "t.lttrace"))
        .args(["--", "true"])
        .output()
        .unwrap();
    let line = one_error_line(&output);
    assert!(line.contains("--metrics"), "{line}");
    assert!(!support::path_in(&dir, "t.lttrace.partial").exists());
}
