//! What ships beside the code: the declared minimum Rust version holds for
//! every locked dependency, and the example Kubernetes manifests in
//! `deploy/` are valid and meet Pod Security "restricted".
//!
//! The manifests are judged by PyPI's `kubernetes-validate` (the API's own
//! OpenAPI schemas, strict: unknown fields fail) and read through Python's
//! PyYAML (which it depends on) for the checks it does not make: the Pod
//! Security "restricted" rules, the sidecar's arguments (parsed by the real
//! `config` module), and the PodMonitor, whose custom resource schema the
//! validator does not have. Without `kubernetes-validate` those tests print
//! a `skipped:` line and pass, unless `CI=true`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use multiplexer::config::{self, Command as Parsed};
use serde_json::{json, Value};

use crate::util::skip;

/// `1.80` or `1.67.1` as comparable numbers (a missing patch is 0).
fn version(text: &str) -> (u64, u64, u64) {
    let mut parts = text.split('.').map(|part| part.parse::<u64>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// The host triple of the rustc beside `cargo` (`rustc -vV`'s `host:`).
fn host_triple(cargo: &str) -> String {
    let rustc = match Path::new(cargo).parent() {
        Some(dir) if dir.join("rustc").exists() => dir.join("rustc"),
        _ => "rustc".into(),
    };
    let output = Command::new(rustc).arg("-vV").output().expect("rustc runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names its host")
        .to_string()
}

#[test]
fn every_locked_dependency_builds_on_the_declared_rust_version() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    // This host's packages only: they are downloaded already (the tests were
    // built from them), so the check needs no network.
    let output = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host_triple(&cargo)])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo metadata failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let declared = env!("CARGO_PKG_RUST_VERSION");
    assert!(!declared.is_empty(), "Cargo.toml declares no rust-version");
    // Every package of the lock file this host builds, dev-dependencies
    // included (the tests build on the declared version too). Packages that
    // declare no rust-version are covered only by building with it.
    let mut checked = 0;
    let mut too_new = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        let Some(needs) = package["rust_version"].as_str() else {
            continue;
        };
        checked += 1;
        if version(needs) > version(declared) {
            too_new.push(format!(
                "{} {} needs Rust {needs}",
                package["name"].as_str().unwrap(),
                package["version"].as_str().unwrap()
            ));
        }
    }
    assert!(
        checked > 10,
        "only {checked} packages declare a rust-version"
    );
    assert!(
        too_new.is_empty(),
        "Cargo.toml declares rust-version {declared}, but Cargo.lock holds:\n{}",
        too_new.join("\n")
    );
}

#[test]
fn version_order() {
    assert!(version("1.88.0") > version("1.80"));
    assert!(version("1.80") == version("1.80.0"));
    assert!(version("1.67.1") < version("1.80"));
    assert!(version("2.0") > version("1.99.9"));
}

// ---------------------------------------------------------------------------
// The example manifests.

const MANIFESTS: [&str; 3] = [
    "deploy/deployment.yaml",
    "deploy/native-sidecar-job.yaml",
    "deploy/podmonitor.yaml",
];
const SIDECAR: &str = "metrics-multiplexer";
/// The oldest Kubernetes with native sidecars on by default, and the
/// validator's newest.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.29.0", "latest"];

fn repository_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Whether `kubernetes-validate` runs; if not, prints why (fails with CI=true).
fn validator_present(test: &str) -> bool {
    let found = Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        let why = "kubernetes-validate not found (pip install kubernetes-validate)";
        skip(test, why, false);
    }
    found
}

/// Runs `kubernetes-validate --strict` on `path`; its status and output.
fn kubernetes_validate(path: &Path, version: &str) -> (bool, String) {
    let mut command = Command::new("kubernetes-validate");
    command.arg("--strict");
    if version != "latest" {
        command.args(["-k", version]);
    }
    let output = command
        .arg(path)
        .output()
        .expect("kubernetes-validate runs");
    let text = String::from_utf8_lossy(&[output.stdout, output.stderr].concat()).into_owned();
    (output.status.success(), text)
}

/// Every YAML document of `path`, as JSON, through PyYAML's safe loader
/// (anchors and flow style resolved as Kubernetes resolves them).
fn documents(path: &Path) -> Vec<Value> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml\n\
             json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], sys.stdout)",
        ])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "reading {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The pod spec of a workload, with its kind and name.
fn pod_specs(documents: &[Value]) -> Vec<(String, &Value)> {
    documents
        .iter()
        .filter_map(|document| {
            let kind = document["kind"].as_str()?;
            let spec = match kind {
                "Pod" => &document["spec"],
                _ => &document["spec"]["template"]["spec"],
            };
            spec.is_object().then(|| {
                (
                    format!(
                        "{kind}/{}",
                        document["metadata"]["name"].as_str().unwrap_or("")
                    ),
                    spec,
                )
            })
        })
        .collect()
}

fn all_containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |list| spec[list].as_array().into_iter().flatten())
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// The Pod Security Standards' "restricted" profile (which includes
/// "baseline"), as written in Kubernetes' documentation
/// (concepts/security/pod-security-standards) for the fields a pod spec of
/// these examples can hold. Returns one line per violation.
fn restricted_violations(spec: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    let pod = &spec["securityContext"];
    // Baseline: host namespaces.
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec[field] == json!(true) {
            violations.push(format!("{field} is true"));
        }
    }
    // Restricted: volume types.
    const VOLUMES: [&str; 8] = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        let name = volume["name"].as_str().unwrap_or("?");
        let kinds: Vec<&String> = volume
            .as_object()
            .into_iter()
            .flat_map(|fields| fields.keys())
            .filter(|key| *key != "name")
            .collect();
        if kinds.iter().any(|kind| !VOLUMES.contains(&kind.as_str())) {
            violations.push(format!("volume {name} is of type {kinds:?}"));
        }
    }
    // Baseline: unsafe sysctls (none of these examples sets any).
    if !spec["securityContext"]["sysctls"].is_null() {
        violations.push("sysctls are set".to_string());
    }
    let pod_non_root = pod["runAsNonRoot"] == json!(true);
    let pod_seccomp = pod["seccompProfile"]["type"].as_str();
    if pod["runAsUser"] == json!(0) {
        violations.push("pod runAsUser is 0".to_string());
    }
    if let Some(kind) = pod_seccomp {
        if !matches!(kind, "RuntimeDefault" | "Localhost") {
            violations.push(format!("pod seccompProfile is {kind}"));
        }
    }
    for container in all_containers(spec) {
        let name = container["name"].as_str().unwrap_or("?");
        let context = &container["securityContext"];
        // Baseline.
        if context["privileged"] == json!(true) {
            violations.push(format!("{name}: privileged"));
        }
        if container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|port| !matches!(port["hostPort"].as_u64(), None | Some(0)))
        {
            violations.push(format!("{name}: hostPort"));
        }
        if !matches!(context["procMount"].as_str(), None | Some("Default")) {
            violations.push(format!("{name}: procMount"));
        }
        // Restricted.
        if context["allowPrivilegeEscalation"] != json!(false) {
            violations.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        let non_root = match context["runAsNonRoot"].as_bool() {
            Some(value) => value,
            None => pod_non_root,
        };
        if !non_root {
            violations.push(format!("{name}: runAsNonRoot is not true"));
        }
        if context["runAsUser"] == json!(0) {
            violations.push(format!("{name}: runAsUser is 0"));
        }
        match context["seccompProfile"]["type"].as_str().or(pod_seccomp) {
            Some("RuntimeDefault" | "Localhost") => {}
            other => violations.push(format!("{name}: seccompProfile is {other:?}")),
        }
        if !strings(&context["capabilities"]["drop"]).contains(&"ALL") {
            violations.push(format!("{name}: capabilities do not drop ALL"));
        }
        for added in strings(&context["capabilities"]["add"]) {
            if added != "NET_BIND_SERVICE" {
                violations.push(format!("{name}: adds capability {added}"));
            }
        }
    }
    violations
}

#[test]
fn manifests_pass_the_kubernetes_schema_validator() {
    const TEST: &str = "manifests_pass_the_kubernetes_schema_validator";
    if !validator_present(TEST) {
        return;
    }
    for manifest in MANIFESTS {
        let path = repository_file(manifest);
        let workloads = pod_specs(&documents(&path)).len();
        for version in KUBERNETES_VERSIONS {
            let (valid, output) = kubernetes_validate(&path, version);
            assert!(valid, "{manifest} on Kubernetes {version}:\n{output}");
            // Every workload was checked, not skipped for want of a schema.
            assert_eq!(
                output.matches("passed for resource").count(),
                workloads,
                "{manifest} on Kubernetes {version}:\n{output}"
            );
        }
    }
    // The validator is strict: a misspelled field fails.
    let manifest = std::fs::read_to_string(repository_file(MANIFESTS[0])).unwrap();
    let misspelled = manifest.replace("allowPrivilegeEscalation", "allowPrivilegeEscalaton");
    let path =
        std::env::temp_dir().join(format!("multiplexer-manifest-{}.yaml", std::process::id()));
    std::fs::write(&path, misspelled).unwrap();
    let (valid, output) = kubernetes_validate(&path, "latest");
    let _ = std::fs::remove_file(&path);
    assert!(
        !valid && output.contains("allowPrivilegeEscalaton"),
        "{output}"
    );
}

#[test]
fn manifests_meet_pod_security_restricted() {
    const TEST: &str = "manifests_meet_pod_security_restricted";
    if !validator_present(TEST) {
        return;
    }
    let mut workloads = 0;
    for manifest in MANIFESTS {
        let documents = documents(&repository_file(manifest));
        for (name, spec) in pod_specs(&documents) {
            workloads += 1;
            assert_eq!(
                restricted_violations(spec),
                Vec::<String>::new(),
                "{manifest}: {name}"
            );
            let sidecar = all_containers(spec)
                .find(|container| container["name"] == SIDECAR)
                .unwrap_or_else(|| panic!("{manifest}: {name} has no {SIDECAR} container"));
            // Beyond "restricted": nothing writes to the sidecar's root
            // filesystem, and it lives in the 2m CPU / 32Mi budget.
            assert_eq!(
                sidecar["securityContext"]["readOnlyRootFilesystem"],
                json!(true)
            );
            assert_eq!(
                sidecar["resources"]["requests"],
                json!({"cpu": "2m", "memory": "32Mi"})
            );
            assert_eq!(sidecar["resources"]["limits"]["memory"], json!("32Mi"));
        }
    }
    assert_eq!(workloads, MANIFESTS.len());
}

#[test]
fn each_restricted_rule_catches_its_violation() {
    const TEST: &str = "each_restricted_rule_catches_its_violation";
    if !validator_present(TEST) {
        return;
    }
    let documents = documents(&repository_file(MANIFESTS[0]));
    let (_, spec) = pod_specs(&documents).remove(0);
    let spec = spec.clone();
    type Edit = fn(&mut Value);
    let cases: &[(&str, Edit, &str)] = &[
        (
            "host network",
            |s| s["hostNetwork"] = json!(true),
            "hostNetwork is true",
        ),
        (
            "host path",
            |s| s["volumes"] = json!([{"name": "h", "hostPath": {"path": "/"}}]),
            "volume h is of type [\"hostPath\"]",
        ),
        (
            "no pod runAsNonRoot",
            |s| s["securityContext"]["runAsNonRoot"] = json!(false),
            "app: runAsNonRoot is not true",
        ),
        (
            "root user",
            |s| s["containers"][0]["securityContext"]["runAsUser"] = json!(0),
            "app: runAsUser is 0",
        ),
        (
            "no seccomp",
            |s| s["securityContext"]["seccompProfile"] = Value::Null,
            "app: seccompProfile is None",
        ),
        (
            "unconfined",
            |s| {
                s["containers"][2]["securityContext"]["seccompProfile"] =
                    json!({"type": "Unconfined"})
            },
            "metrics-multiplexer: seccompProfile is Some(\"Unconfined\")",
        ),
        (
            "escalation",
            |s| s["containers"][2]["securityContext"]["allowPrivilegeEscalation"] = json!(true),
            "metrics-multiplexer: allowPrivilegeEscalation is not false",
        ),
        (
            "capabilities kept",
            |s| {
                s["containers"][2]["securityContext"]["capabilities"] = json!({"drop": ["NET_RAW"]})
            },
            "metrics-multiplexer: capabilities do not drop ALL",
        ),
        (
            "capability added",
            |s| s["containers"][2]["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"]),
            "metrics-multiplexer: adds capability SYS_ADMIN",
        ),
        (
            "privileged",
            |s| s["containers"][1]["securityContext"]["privileged"] = json!(true),
            "envoy: privileged",
        ),
        (
            "host port",
            |s| s["containers"][2]["ports"][0]["hostPort"] = json!(13434),
            "metrics-multiplexer: hostPort",
        ),
    ];
    for (what, edit, expected) in cases {
        let mut edited = spec.clone();
        edit(&mut edited);
        let violations = restricted_violations(&edited);
        assert!(
            violations.iter().any(|line| line == expected),
            "{what}: {violations:?}"
        );
    }
}

/// The sidecar's arguments in `spec`, parsed by the real command line.
fn sidecar_config(spec: &Value) -> config::Config {
    let sidecar = all_containers(spec)
        .find(|container| container["name"] == SIDECAR)
        .expect("a sidecar container");
    let args: Vec<OsString> = strings(&sidecar["args"])
        .into_iter()
        .map(OsString::from)
        .collect();
    match config::parse_args(args) {
        Ok(Parsed::Run(config)) => config,
        other => panic!("the sidecar's args do not run: {other:?}"),
    }
}

#[test]
fn manifests_map_containers_that_exist_on_ports_they_declare() {
    const TEST: &str = "manifests_map_containers_that_exist_on_ports_they_declare";
    if !validator_present(TEST) {
        return;
    }
    for manifest in MANIFESTS {
        let documents = documents(&repository_file(manifest));
        for (name, spec) in pod_specs(&documents) {
            let config = sidecar_config(spec);
            assert!(!config.containers.is_empty(), "{manifest}: {name}");
            for mapped in &config.containers {
                let container = all_containers(spec)
                    .find(|container| container["name"] == mapped.name.as_str())
                    .unwrap_or_else(|| {
                        panic!("{manifest}: {name}: -m {} names no container", mapped.name)
                    });
                assert_ne!(mapped.name, SIDECAR, "{manifest}");
                // A declared port, if any, is the mapped one.
                let declared: Vec<u64> = container["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|port| port["containerPort"].as_u64())
                    .collect();
                assert!(
                    declared.is_empty() || declared.contains(&u64::from(mapped.port)),
                    "{manifest}: {name}: {} declares {declared:?}, -m says {}",
                    mapped.name,
                    mapped.port
                );
            }
            let sidecar = all_containers(spec).find(|c| c["name"] == SIDECAR).unwrap();
            assert_eq!(
                sidecar["ports"][0]["containerPort"],
                json!(config.export_port),
                "{manifest}: {name}"
            );
        }
    }
}

/// The fields of a PodMonitor endpoint these examples may use, from the
/// Prometheus Operator's API reference (monitoring.coreos.com/v1
/// PodMetricsEndpoint); the validator has no schema for the custom resource.
const POD_METRICS_ENDPOINT_FIELDS: [&str; 6] = [
    "port",
    "path",
    "interval",
    "scrapeTimeout",
    "relabelings",
    "honorLabels",
];

#[test]
fn the_podmonitor_scrapes_the_sidecar_and_keeps_its_container_label() {
    const TEST: &str = "the_podmonitor_scrapes_the_sidecar_and_keeps_its_container_label";
    if !validator_present(TEST) {
        return;
    }
    let documents = documents(&repository_file("deploy/podmonitor.yaml"));
    let monitor = documents
        .iter()
        .find(|document| document["kind"] == "PodMonitor")
        .expect("a PodMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let (_, spec) = pod_specs(&documents).remove(0);
    let deployment = documents
        .iter()
        .find(|document| document["kind"] == "Deployment")
        .unwrap();
    // It selects the Deployment's pods.
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(&pod_labels[key], value, "selector {key}");
    }
    let config = sidecar_config(spec);
    let sidecar = all_containers(spec).find(|c| c["name"] == SIDECAR).unwrap();
    let endpoints = monitor["spec"]["podMetricsEndpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    let endpoint = &endpoints[0];
    for field in endpoint.as_object().unwrap().keys() {
        assert!(
            POD_METRICS_ENDPOINT_FIELDS.contains(&field.as_str()),
            "{field}"
        );
    }
    // It scrapes the sidecar's named port at the sidecar's endpoint.
    assert_eq!(endpoint["port"], sidecar["ports"][0]["name"]);
    assert_eq!(endpoint["path"], json!(config.endpoint));
    // The operator's `container` target label would rename the sidecar's
    // label to exported_<label> (honorLabels false): it is dropped.
    assert_ne!(endpoint["honorLabels"], json!(true));
    let relabelings = endpoint["relabelings"].as_array().unwrap();
    assert!(
        relabelings
            .iter()
            .any(|rule| rule["action"] == "labeldrop"
                && rule["regex"] == json!(config.container_label)),
        "{relabelings:?}"
    );
}
