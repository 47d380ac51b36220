//! Parses the command line, starts logging, runs the loop and maps errors to
//! exit codes.
//!
//! Exit codes: 0 for `--help`, `--version` and a clean stop (SIGTERM,
//! SIGINT); 2 for a command line that cannot run (one line on stderr, before
//! anything binds); 1 when the loop cannot start (port taken) or fails.

#![forbid(unsafe_code)]

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

    // UTC timestamps, no colours: kubectl logs is not a terminal.
    if let Err(error) = simple_logger::SimpleLogger::new()
        .with_level(config.log_level)
        .with_utc_timestamps()
        .init()
    {
        eprintln!("metrics-multiplexer-sidecar: cannot start logging: {error}");
        return ExitCode::FAILURE;
    }

    match multiplexer::event_loop::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("{error}");
            ExitCode::FAILURE
        }
    }
}
