//! The service files of `deploy/` checked against this command line: the systemd unit and
//! the Kubernetes DaemonSet must start `watch` of the kernel's locks with `--metrics`, and
//! the DaemonSet must expose and announce the port it serves.

use std::net::SocketAddr;

use clap::Parser;
use serde_norway::Value;

use crate::args::{Cli, Command};

const UNIT: &str = include_str!("../../../../deploy/locktrace.service");
const DAEMONSET: &str = include_str!("../../../../deploy/daemonset.yaml");

/// The metrics address of `argv`, which must parse as `watch` of the kernel's locks.
fn metrics_address(argv: &[&str]) -> SocketAddr {
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    match cli.command {
        Command::Watch {
            metrics: Some(addr),
            trace,
            ..
        } => {
            assert!(!trace.no_kernel, "{argv:?}: the kernel's locks are traced");
            addr
        }
        other => panic!("{argv:?} is not `watch --metrics`: {other:?}"),
    }
}

/// The value of the unit's `key=` setting.
fn setting(key: &str) -> &'static str {
    UNIT.lines()
        .find_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
}

#[test]
fn the_systemd_unit_starts_watch_with_metrics_and_the_bpf_capabilities() {
    let argv: Vec<&str> = setting("ExecStart").split_whitespace().collect();
    assert!(argv[0].ends_with("/locktrace"), "{argv:?}");
    assert_eq!(metrics_address(&argv).port(), 9464);
    assert_eq!(setting("Restart"), "on-failure");
    let capabilities: Vec<&str> = setting("CapabilityBoundingSet").split(' ').collect();
    for needed in ["CAP_BPF", "CAP_PERFMON", "CAP_SYSLOG"] {
        assert!(capabilities.contains(&needed), "{needed}: {capabilities:?}");
    }
    // It would take CAP_SYSLOG away again.
    assert!(!UNIT.contains("\nProtectKernelLogs="));
}

#[test]
fn the_daemonset_runs_watch_and_announces_its_metrics_port() {
    let doc: Value = serde_norway::from_str(DAEMONSET).expect("valid YAML");
    assert_eq!(doc["apiVersion"], "apps/v1");
    assert_eq!(doc["kind"], "DaemonSet");
    let template = &doc["spec"]["template"];
    assert_eq!(
        doc["spec"]["selector"]["matchLabels"],
        template["metadata"]["labels"]
    );
    let pod = &template["spec"];
    assert_eq!(pod["hostPID"], true, "locktrace must see host pids");

    let container = &pod["containers"][0];
    let argv: Vec<&str> = ["command", "args"]
        .iter()
        .flat_map(|key| container[*key].as_sequence().expect(key))
        .map(|word| word.as_str().expect("a string"))
        .collect();
    assert!(argv[0].ends_with("/locktrace"), "{argv:?}");
    let port = u64::from(metrics_address(&argv).port());
    assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(port));
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], port.to_string().as_str());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    let volumes: Vec<&Value> = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .map(|volume| &volume["name"])
        .collect();
    let mounts = container["volumeMounts"].as_sequence().expect("mounts");
    for mount in mounts {
        assert!(volumes.contains(&&mount["name"]), "no volume for {mount:?}");
    }
    let mounted: Vec<&str> = mounts
        .iter()
        .filter_map(|mount| mount["mountPath"].as_str())
        .collect();
    for needed in [
        "/sys/kernel/btf",
        "/sys/kernel/tracing",
        "/sys/kernel/debug",
    ] {
        assert!(mounted.contains(&needed), "{needed}: {mounted:?}");
    }
}
