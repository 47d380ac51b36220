//! What every runner in `src/bin` shares: how it exits, the processes it
//! measures (started quiet, waited for, killed however a measurement ends,
//! on loopback ports nobody else holds), and the head of the markdown
//! tables it writes.

use std::ffi::OsStr;
use std::io;
use std::net::TcpListener;
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cgroup::Cgroup;
use crate::load::Client;

/// A runner's exit: success, or its error on stderr after its name and
/// exit code 2.
pub fn exit(program: &str, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{program}: {message}");
            ExitCode::from(2)
        }
    }
}

/// A child process killed (and reaped) when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nobody listens on (bound, then released).
pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// The command with no standard input and its output thrown away: a
/// measured process writes nowhere the runner reads.
pub fn quiet(command: &mut Command) -> &mut Command {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
}

/// A command that starts `program`, inside `cgroup` where there is one: a
/// shell moves itself in, then becomes the program, so every byte the
/// program is charged counts there.
pub fn command_in(cgroup: Option<&Cgroup>, program: impl AsRef<OsStr>) -> Command {
    match cgroup {
        Some(cgroup) => {
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg(format!("{} exec \"$0\" \"$@\"", cgroup.enter_then()))
                .arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Retries `attempt` every 20 ms for up to 10 s.
pub fn wait_for<T>(what: &str, mut attempt: impl FnMut() -> io::Result<T>) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(error) if Instant::now() > deadline => {
                return Err(format!("{what} not ready after 10 s: {error}"))
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Waits (up to 10 s) until the sidecar on `port` answers `/healthz` with 200.
pub fn wait_healthy(port: u16) -> Result<(), String> {
    wait_for(&format!("sidecar on port {port}"), || {
        let reply = Client::connect(port, "/healthz")?.get()?;
        if reply.status == 200 {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "/healthz answered {}",
                reply.status
            )))
        }
    })
}

/// The head of a markdown table: the column names, then the rule under them.
pub fn table_head(columns: &[&str]) -> String {
    format!(
        "| {} |\n|{}\n",
        columns.join(" | "),
        " --- |".repeat(columns.len())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_head_has_a_rule_cell_per_column() {
        assert_eq!(table_head(&["a", "b c"]), "| a | b c |\n| --- | --- |\n");
    }
}
