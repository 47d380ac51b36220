//! The release binary built as the Dockerfile builds it is statically
//! linked and serves `/metrics` when it is alone in an empty root directory,
//! as in the `FROM scratch` image.
//!
//! The build uses its own target directory (`<target>/static`) so it does
//! not thrash the normal one; an LTO release build takes tens of seconds the
//! first time and is incremental afterwards. Running the binary in an empty
//! root needs `chroot` as root, or `unshare -r` (a user namespace) otherwise;
//! without either the test is skipped loudly, unless `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{free_port, lines_of, try_get, wait_until, Behaviour, Stub, BINARY};

/// Exactly the Dockerfile's build; `static_binary_is_built_as_the_dockerfile_builds_it`
/// checks that the Dockerfile still says the same.
const RUSTFLAGS: &str = "-C target-feature=+crt-static";
const TARGET: &str = "x86_64-unknown-linux-gnu";
const CARGO_ARGS: [&str; 5] = ["build", "--release", "--locked", "--target", TARGET];
const BINARY_NAME: &str = "metrics-multiplexer-sidecar";

/// ELF program header type of the dynamic loader's path.
const PT_INTERP: u32 = 3;
/// ELF program header type of the dynamic section.
const PT_DYNAMIC: u32 = 2;
/// Dynamic section tag naming a needed shared library.
const DT_NEEDED: u64 = 1;

/// The target directory of this test binary: `<target>/debug/deps/<test>`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .expect("the test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

fn build_static_binary() -> PathBuf {
    let target_dir = target_dir().join("static");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .args(CARGO_ARGS)
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUSTFLAGS", RUSTFLAGS)
        // The outer cargo's settings must not leak into this build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .stdout(Stdio::null())
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "the static build failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    target_dir.join(TARGET).join("release").join(BINARY_NAME)
}

/// Why an ELF file is not a static executable.
#[derive(Debug, PartialEq, Eq)]
enum NotStatic {
    NotElf64,
    Truncated,
    HasInterpreter,
    NeedsLibraries(usize),
}

/// Reads the little-endian integer of `N` bytes at `offset`.
fn read_le<const N: usize>(bytes: &[u8], offset: usize) -> Result<u64, NotStatic> {
    let field = bytes.get(offset..offset + N).ok_or(NotStatic::Truncated)?;
    let mut value = [0u8; 8];
    value[..N].copy_from_slice(field);
    Ok(u64::from_le_bytes(value))
}

/// Checks an x86-64 ELF file has no `PT_INTERP` program header (nothing
/// asks for a dynamic loader) and no `DT_NEEDED` entry (no shared library
/// needed). A static PIE keeps a dynamic section for its own relocations,
/// so the section's presence alone says nothing.
fn check_static(elf: &[u8]) -> Result<(), NotStatic> {
    // ELF magic, ELFCLASS64, ELFDATA2LSB.
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err(NotStatic::NotElf64);
    }
    let program_headers = read_le::<8>(elf, 0x20)? as usize;
    let entry_size = read_le::<2>(elf, 0x36)? as usize;
    let count = read_le::<2>(elf, 0x38)? as usize;
    let mut needed = 0;
    for index in 0..count {
        let header = program_headers + index * entry_size;
        match read_le::<4>(elf, header)? as u32 {
            PT_INTERP => return Err(NotStatic::HasInterpreter),
            PT_DYNAMIC => {
                let offset = read_le::<8>(elf, header + 0x08)? as usize;
                let size = read_le::<8>(elf, header + 0x20)? as usize;
                for entry in (offset..offset + size).step_by(16) {
                    if read_le::<8>(elf, entry)? == DT_NEEDED {
                        needed += 1;
                    }
                }
            }
            _ => {}
        }
    }
    if needed > 0 {
        return Err(NotStatic::NeedsLibraries(needed));
    }
    Ok(())
}

#[test]
fn the_elf_check_tells_dynamic_from_static() {
    // The normal test build of the binary links glibc dynamically.
    let dynamic = std::fs::read(BINARY).unwrap();
    assert_eq!(check_static(&dynamic), Err(NotStatic::HasInterpreter));
    assert_eq!(check_static(b"#!/bin/sh\n"), Err(NotStatic::NotElf64));
    assert_eq!(check_static(&dynamic[..0x30]), Err(NotStatic::Truncated));
}

/// How to run a command with a given directory as its root.
enum Jail {
    Chroot,
    UserNamespace,
}

fn jail() -> Option<Jail> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        return Some(Jail::Chroot);
    }
    let unshare = Command::new("unshare")
        .args(["-r", "true"])
        .stderr(Stdio::null())
        .status()
        .ok()?;
    unshare.success().then_some(Jail::UserNamespace)
}

fn dockerfile() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap()
}

#[test]
fn the_dockerfile_builds_as_this_test_does() {
    let dockerfile = dockerfile();
    let expected = [
        format!("ENV RUSTFLAGS=\"{RUSTFLAGS}\""),
        format!("RUN cargo {}", CARGO_ARGS.join(" ")),
        format!("/src/target/{TARGET}/release/{BINARY_NAME} /{BINARY_NAME}"),
        "FROM scratch".to_string(),
        "USER 65534:65534".to_string(),
        "EXPOSE 13434".to_string(),
        format!("ENTRYPOINT [\"/{BINARY_NAME}\"]"),
    ];
    for line in expected {
        assert!(
            dockerfile.lines().any(|actual| actual.trim() == line
                || actual.trim().starts_with("COPY --from=builder") && actual.contains(&line)),
            "the Dockerfile lacks {line:?}"
        );
    }
}

#[test]
fn static_binary_serves_metrics_alone_in_an_empty_root() {
    let Some(jail) = jail() else {
        let message = "neither root (chroot) nor unshare -r is available";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        eprintln!("SKIPPED static_binary_serves_metrics_alone_in_an_empty_root: {message}");
        return;
    };
    let binary = build_static_binary();
    let elf = std::fs::read(&binary).unwrap();
    assert_eq!(check_static(&elf), Ok(()), "{}", binary.display());

    let root = std::env::temp_dir().join(format!("multiplexer-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir(&root).unwrap();
    std::fs::copy(&binary, root.join(BINARY_NAME)).unwrap();

    let stub = Stub::start(Behaviour::ContentLength(
        "# TYPE jailed_total counter\njailed_total 42\n".to_string(),
    ));
    let port = free_port();
    let mut command = match jail {
        Jail::Chroot => Command::new("chroot"),
        Jail::UserNamespace => {
            let mut command = Command::new("unshare");
            command.args(["-r", "chroot"]);
            command
        }
    };
    // chroot (and unshare without --fork) exec the binary: the child's pid
    // is the sidecar's.
    let mut child = command
        .arg(&root)
        .arg(format!("/{BINARY_NAME}"))
        .arg(format!("-mapp:{}", stub.port))
        .arg(format!("--export_to={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chroot runs");

    let mut last = String::new();
    let served = wait_until(Duration::from_secs(10), || {
        match try_get(port, "/metrics") {
            Ok(response) if response.status == 200 => {
                last = String::from_utf8_lossy(&response.body).into_owned();
                lines_of(&last, "container", "app") == ["jailed_total{container=\"app\"} 42"]
            }
            _ => false,
        }
    });
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    let mut status = None;
    wait_until(Duration::from_secs(5), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&root);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        served,
        "not served from the empty root; last:\n{last}\nstderr:\n{stderr}"
    );
    assert!(stopped);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");
}
