//! The release binary built as the Dockerfile builds it (for this host's
//! musl target) is statically linked, stripped, and serves `/metrics` when it
//! is alone in an empty root directory, as in the `FROM scratch` image.
//!
//! The build uses its own target directory (`<target>/static`) so it does
//! not thrash the normal one; an LTO release build takes tens of seconds the
//! first time and is incremental afterwards. Running the binary in an empty
//! root needs `chroot` as root, or `unshare -r` (a user namespace) otherwise.
//! The test prints a `skipped: <why>` line and passes where it cannot run:
//! a host architecture the Dockerfile has no target for, or the host's musl
//! target not installed (`rustup target add <arch>-unknown-linux-musl`;
//! `.ci/run` tries, and says so when it cannot fetch it). Without a way to
//! change root it skips too, except with `CI=true`: CI runs as root.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{free_port, lines_of, skip, try_get, wait_until, Behaviour, Stub, BINARY};

/// Exactly the Dockerfile's build settings;
/// `the_dockerfile_builds_as_this_test_does` checks that the Dockerfile
/// still says the same.
const ENV: [(&str, &str); 3] = [
    ("CARGO_PROFILE_RELEASE_STRIP", "symbols"),
    ("CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER", "rust-lld"),
    ("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER", "rust-lld"),
];
const CARGO_ARGS: [&str; 4] = ["build", "--release", "--locked", "--target"];
const BINARY_NAME: &str = "metrics-multiplexer-sidecar";
/// BuildKit's `TARGETARCH` and the Rust target the Dockerfile builds for it.
const TARGETS: [(&str, &str); 2] = [
    ("amd64", "x86_64-unknown-linux-musl"),
    ("arm64", "aarch64-unknown-linux-musl"),
];

/// The Dockerfile's target for this host, if it has one.
fn host_target() -> Option<&'static str> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        _ => return None,
    };
    TARGETS
        .iter()
        .find(|(targetarch, _)| *targetarch == arch)
        .map(|(_, target)| *target)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Whether the standard library for `target` is installed in the sysroot
/// of the toolchain running these tests (the rustc beside cargo): an
/// installed target has its `libcore-*.rlib` in its target-libdir.
fn target_installed(target: &str) -> bool {
    let cargo = PathBuf::from(cargo());
    let rustc = match cargo.parent() {
        Some(dir) if dir.join("rustc").exists() => dir.join("rustc"),
        _ => PathBuf::from("rustc"),
    };
    let Ok(output) = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", target])
        .output()
    else {
        return false;
    };
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    output.status.success()
        && std::fs::read_dir(libdir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|entry| entry.file_name().to_string_lossy().starts_with("libcore-"))
        })
}

/// The target directory of this test binary: `<target>/debug/deps/<test>`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .expect("the test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

fn build_static_binary(target: &str) -> PathBuf {
    let target_dir = target_dir().join("static");
    let mut command = Command::new(cargo());
    command
        .args(CARGO_ARGS)
        .arg(target)
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // The outer cargo's settings must not leak into this build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .stdout(Stdio::null());
    for (name, value) in ENV {
        command.env(name, value);
    }
    let output = command.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "the static build failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    target_dir.join(target).join("release").join(BINARY_NAME)
}

/// ELF program header type of the dynamic loader's path.
const PT_INTERP: u32 = 3;
/// ELF program header type of the dynamic section.
const PT_DYNAMIC: u32 = 2;
/// Dynamic section tag naming a needed shared library.
const DT_NEEDED: u64 = 1;
/// Section header type of a symbol table (`strip` removes it).
const SHT_SYMTAB: u32 = 2;

/// Why an ELF file is not a static executable.
#[derive(Debug, PartialEq, Eq)]
enum NotStatic {
    NotElf64,
    Truncated,
    HasInterpreter,
    NeedsLibraries(usize),
    HasSymbolTable,
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

/// Checks an ELF file has no symbol table section (what stripping removes;
/// the dynamic symbols a static PIE keeps are another section type).
fn check_stripped(elf: &[u8]) -> Result<(), NotStatic> {
    let section_headers = read_le::<8>(elf, 0x28)? as usize;
    let entry_size = read_le::<2>(elf, 0x3a)? as usize;
    let count = read_le::<2>(elf, 0x3c)? as usize;
    for index in 0..count {
        if read_le::<4>(elf, section_headers + index * entry_size + 4)? as u32 == SHT_SYMTAB {
            return Err(NotStatic::HasSymbolTable);
        }
    }
    Ok(())
}

#[test]
fn the_elf_checks_tell_dynamic_from_static_and_stripped() {
    // The normal test build of the binary links the C library dynamically
    // and keeps its symbols.
    let dynamic = std::fs::read(BINARY).unwrap();
    assert_eq!(check_static(&dynamic), Err(NotStatic::HasInterpreter));
    assert_eq!(check_stripped(&dynamic), Err(NotStatic::HasSymbolTable));
    assert_eq!(check_static(b"#!/bin/sh\n"), Err(NotStatic::NotElf64));
    assert_eq!(check_static(&dynamic[..0x30]), Err(NotStatic::Truncated));
    assert_eq!(check_stripped(&dynamic[..0x30]), Err(NotStatic::Truncated));
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

/// The Dockerfile's lines, with `\` continuations joined and spaces collapsed.
fn dockerfile_instructions() -> Vec<String> {
    dockerfile()
        .replace("\\\n", " ")
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

#[test]
fn the_dockerfile_builds_as_this_test_does() {
    let instructions = dockerfile_instructions();
    let has = |wanted: &str| instructions.iter().any(|line| line.contains(wanted));
    let mut expected: Vec<String> = ENV
        .iter()
        .map(|(name, value)| format!("ENV {name}={value}"))
        .collect();
    expected.extend([
        // Cross-compiled on the build machine for BuildKit's TARGETARCH.
        "FROM --platform=$BUILDPLATFORM ".to_string(),
        "ARG TARGETARCH".to_string(),
        format!("cargo {} \"$target\"", CARGO_ARGS.join(" ")),
        format!("cp \"target/$target/release/{BINARY_NAME}\" /{BINARY_NAME}"),
        "FROM scratch".to_string(),
        format!("COPY --from=builder /{BINARY_NAME} /{BINARY_NAME}"),
        "USER 65534:65534".to_string(),
        "EXPOSE 13434".to_string(),
        format!("ENTRYPOINT [\"/{BINARY_NAME}\"]"),
    ]);
    for (targetarch, target) in TARGETS {
        expected.push(format!("{targetarch}) target={target} ;;"));
    }
    for line in expected {
        assert!(has(&line), "the Dockerfile lacks {line:?}");
    }
    // Every file the build copies passes .dockerignore.
    let ignore =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore"))
            .unwrap();
    for copied in [
        "COPY Cargo.toml Cargo.lock ./",
        "COPY .cargo ./.cargo",
        "COPY src ./src",
    ] {
        assert!(has(copied), "the Dockerfile lacks {copied:?}");
    }
    for kept in ["!Cargo.toml", "!Cargo.lock", "!.cargo/", "!src/"] {
        assert!(
            ignore.lines().any(|line| line.trim() == kept),
            ".dockerignore lacks {kept}"
        );
    }
}

#[test]
fn static_binary_serves_metrics_alone_in_an_empty_root() {
    const TEST: &str = "static_binary_serves_metrics_alone_in_an_empty_root";
    let Some(target) = host_target() else {
        let arch = std::env::consts::ARCH;
        skip(
            TEST,
            &format!("the Dockerfile builds no image for {arch}"),
            true,
        );
        return;
    };
    if !target_installed(target) {
        let why = format!("the {target} target is not installed (rustup target add {target})");
        skip(TEST, &why, true);
        return;
    }
    let Some(jail) = jail() else {
        skip(
            TEST,
            "neither root (chroot) nor unshare -r is available",
            false,
        );
        return;
    };
    let binary = build_static_binary(target);
    let elf = std::fs::read(&binary).unwrap();
    assert_eq!(check_static(&elf), Ok(()), "{}", binary.display());
    assert_eq!(check_stripped(&elf), Ok(()), "{}", binary.display());
    // The README quotes this size.
    let _ = writeln!(
        std::io::stderr(),
        "{TEST}: the {target} binary, static and stripped, is {} bytes",
        elf.len()
    );

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
