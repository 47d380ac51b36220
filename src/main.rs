//! Parses the command line, starts logging, runs the loop and maps errors to
//! exit codes.
//!
//! Exit codes: 0 for `--help`, `--version` and a clean stop (SIGTERM,
//! SIGINT); 2 for a command line that cannot run (one line on stderr, before
//! anything binds); 1 when the loop cannot start (port taken) or fails.

// One call into the C library is allowed, below; nothing else.
#![deny(unsafe_code)]

use std::process::ExitCode;

use multiplexer::config::{self, Command};

/// Bad command line, as in getopt tradition and ripgrep.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let config = match config::parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{}", config::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("{}", config::VERSION);
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("metrics-multiplexer-sidecar: {error} (see --help)");
            return ExitCode::from(EXIT_USAGE);
        }
    };

    keep_large_buffers_in_their_own_mappings();

    // UTC timestamps, no colours: kubectl logs is not a terminal.
    if let Err(error) = simple_logger::SimpleLogger::new()
        .with_level(config.log_level)
        .with_utc_timestamps()
        .init()
    {
        eprintln!("metrics-multiplexer-sidecar: cannot start logging: {error}");
        return ExitCode::FAILURE;
    }

    // Which build runs, first: a log read during a rollout says which
    // version wrote it (multiplexer_build_info says it to Prometheus).
    log::info!("{} starting", config::VERSION);
    for warning in config.warnings() {
        log::warn!("{warning}");
    }

    match multiplexer::event_loop::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// glibc raises its mmap threshold to the size of the largest buffer freed
/// (up to 32 MiB); after that, body-sized buffers come from the heap, whose
/// freed middle is never given back. Measured on a pod at its memory budget:
/// 3 to 8 MiB of resident memory that the memory model does not count. A
/// fixed threshold keeps every buffer of 128 KiB or more in a mapping of its
/// own, returned to the system when freed, and a trim threshold of 64 KiB
/// gives back the top of the heap sooner (2 to 4 MiB more on the same pod).
/// musl (the static binary of the image) maps large buffers by itself.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn keep_large_buffers_in_their_own_mappings() {
    extern "C" {
        fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
    }
    /// `M_TRIM_THRESHOLD` and `M_MMAP_THRESHOLD` in glibc's `malloc.h`.
    const M_TRIM_THRESHOLD: std::ffi::c_int = -1;
    const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
    // SAFETY: mallopt only sets allocator parameters; called before any
    // other thread exists (there are none) and with valid values.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 128 * 1024);
        mallopt(M_TRIM_THRESHOLD, 64 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_large_buffers_in_their_own_mappings() {}
