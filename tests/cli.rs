//! The command line of the real binary: `--help` and `--version` exit 0, and
//! every invalid command line exits 2 with exactly one line on stderr naming
//! the flag and the value, before anything binds.
//!
//! Valid command lines start the server; they are tested with it.

use std::process::{Command, Output};

use crate::util::BINARY;

fn sidecar(args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn help_exits_0_and_lists_every_flag() {
    for flag in ["--help", "-h"] {
        let output = sidecar(&[flag]);
        assert_eq!(output.status.code(), Some(0), "{flag}");
        assert!(output.stderr.is_empty(), "{flag}");
        let help = String::from_utf8(output.stdout).unwrap();
        for expected in [
            "-p, --endpoint",
            "-e, --export_to",
            "-n, --container_label",
            "-i, --scrape_interval",
            "-x, --exclude_containers",
            "-m, --container_to_port_map",
            "--scrape_timeout",
            "--max_body_bytes",
            "--log_level",
            "--help",
            "--version",
        ] {
            assert!(help.contains(expected), "{flag} lacks {expected}:\n{help}");
        }
    }
}

#[test]
fn version_exits_0_and_prints_the_version() {
    for flag in ["--version", "-V"] {
        let output = sidecar(&[flag]);
        assert_eq!(output.status.code(), Some(0), "{flag}");
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            format!(
                "metrics-multiplexer-sidecar {}\n",
                env!("CARGO_PKG_VERSION")
            )
        );
    }
}

#[test]
fn invalid_command_lines_exit_2_with_one_line_naming_flag_and_value() {
    // (arguments, text the line must contain: the flag, and the value if any)
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["-m/--container_to_port_map"]),
        (&["-m", "a:1", "--bogus"], &["\"--bogus\""]),
        (&["-m", "a:1", "stray"], &["\"stray\""]),
        (&["-m", "a:1", "-e"], &["-e"]),
        (&["-m", "a:1", "-e", "0"], &["-e", "\"0\""]),
        (
            &["-m", "a:1", "--export_to=65536"],
            &["--export_to", "\"65536\""],
        ),
        (&["-m", "a:1", "-e", "port"], &["-e", "\"port\""]),
        (&["-m", ":8080"], &["-m", "\":8080\""]),
        (&["-m", "a:1", "-m", "a:2"], &["-m", "\"a:2\""]),
        (&["-m", "app"], &["-m", "\"app\""]),
        (&["-m", "app:0"], &["-m", "\"app:0\""]),
        (&["-m", "App:80"], &["-m", "\"App:80\""]),
        (&["-mapp:13434"], &["-m", "\"app:13434\"", "export port"]),
        (&["-m", "a:1", "-n", "__x"], &["-n", "\"__x\""]),
        (
            &["-m", "a:1", "--container_label=a-b"],
            &["--container_label", "\"a-b\""],
        ),
        (&["-m", "a:1", "-p", "metrics"], &["-p", "\"metrics\""]),
        (&["-m", "a:1", "-i", "1s"], &["-i", "\"1s\""]),
        (
            &["-m", "a:1", "--scrape_timeout=0"],
            &["--scrape_timeout", "\"0\""],
        ),
        (
            &["-m", "a:1", "--max_body_bytes=0"],
            &["--max_body_bytes", "\"0\""],
        ),
        (
            &["-m", "a:1", "--log_level=loud"],
            &["--log_level", "\"loud\""],
        ),
        (&["-m", "a:1", "-x", "a b"], &["-x", "\"a b\""]),
        (&["-m", "a\nb:1"], &["-m", "\"a\\nb:1\""]),
    ];
    for (args, wanted) in cases {
        let output = sidecar(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.ends_with('\n'), "{args:?}: {stderr}");
        for text in *wanted {
            assert!(stderr.contains(text), "{args:?}: {stderr:?} lacks {text}");
        }
    }
}

#[test]
fn the_error_line_has_the_exact_form() {
    let output = sidecar(&["-m", "app:8080", "--export_to", "70000"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "metrics-multiplexer-sidecar: invalid value \"70000\" for --export_to: \
         a port is a number from 1 to 65535 (see --help)\n"
    );
}
