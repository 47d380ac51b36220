//! The command line (lexopt) and its validation into a `Config`.
//!
//! Two steps, as ripgrep does it: `parse_raw` turns the arguments into raw
//! strings, each remembering the flag spelling the user wrote; `validate`
//! turns those into a [`Config`] or the first [`ConfigError`] in a fixed order
//! (single-valued flags in the order of the help text, then every `-m` in
//! command-line order, then every `-x`).
//!
//! Invariants of a `Config` that parses:
//! - every port is in 1..=65535 and no container port equals `export_port`;
//! - container names are DNS-1123 labels (what Kubernetes enforces for
//!   container names), unique across `-m`; so they never need escaping;
//! - `endpoint` and every container path start with `/` and hold only visible
//!   ASCII, so they can be written into an HTTP request line as they are;
//! - `container_label` is a valid Prometheus label name that does not start
//!   with `__` and is not `le`, `quantile` or `reason`;
//! - `containers` keeps command-line order, minus the excluded names.
//!
//! A flag given twice keeps its last value (`-x` and `-m` accumulate).
//! Every long flag may be spelled with hyphens (`--export-to` for
//! `--export_to`): the seed's underscores stay the documented form, and the
//! usual spelling of other tools is not an error.

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use log::LevelFilter;

/// One container to scrape at `http://127.0.0.1:<port><path>` (or `[::1]`
/// where 127.0.0.1 refuses: `upstream::loopback`).
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub name: String,
    pub port: u16,
    /// From `-m <name>:<port>/<path>`, else `--endpoint`.
    pub path: String,
}

/// The validated command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Path served, and the default path scraped on each container.
    pub endpoint: String,
    /// Port the merged metrics are served on.
    pub export_port: u16,
    /// The address to serve on, from `-e <address>:<port>`; `None` (a bare
    /// port, the default) means every address, IPv6 and IPv4 alike.
    pub export_ip: Option<IpAddr>,
    /// Label name added to every sample.
    pub container_label: String,
    /// When containers are scraped: on a fixed cadence, or when asked.
    pub scrape_mode: ScrapeMode,
    /// The containers to scrape, in command-line order, minus the excluded ones.
    pub containers: Vec<Container>,
    /// Every name given to `-x`, deduplicated, in command-line order. Names
    /// that no `-m` maps are allowed (one `-x` list can serve many pods).
    pub excluded: Vec<String>,
    /// Bound on a whole scrape, connect to last body byte; never zero.
    pub scrape_timeout: Duration,
    /// Largest body accepted from one container.
    pub max_body_bytes: usize,
    pub log_level: LevelFilter,
}

/// When containers are scraped (`--scrape_interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrapeMode {
    /// Every container on a fixed cadence of this (non-zero) interval;
    /// requests are answered at once from the latest data.
    Every(Duration),
    /// `--scrape_interval=0`: nothing runs between requests; a request for
    /// the endpoint starts one round of scrapes.
    OnDemand,
}

impl ScrapeMode {
    fn from_interval(interval: Duration) -> ScrapeMode {
        if interval.is_zero() {
            ScrapeMode::OnDemand
        } else {
            ScrapeMode::Every(interval)
        }
    }
}

impl Config {
    /// What is valid but probably a mistake, one line each, for the log at
    /// start: two scraped containers on one port. The containers of a pod
    /// share one network namespace, so one port is one process: both would
    /// be served the same samples under two names (on the same path), or
    /// one of them is mapped to the wrong port.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (index, first) in self.containers.iter().enumerate() {
            for second in &self.containers[index + 1..] {
                if first.port != second.port {
                    continue;
                }
                let consequence = if first.path == second.path {
                    "the same samples are served twice, under both names"
                } else {
                    "one process serves both paths; if that is not meant, one port is wrong"
                };
                warnings.push(format!(
                    "containers {} and {} are both mapped to port {} (-m): {consequence}",
                    first.name, second.name, first.port
                ));
            }
        }
        warnings
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(Config),
    Help,
    Version,
}

pub const DEFAULT_ENDPOINT: &str = "/metrics";
pub const DEFAULT_EXPORT_PORT: u16 = 13434;
pub const DEFAULT_CONTAINER_LABEL: &str = "container";
pub const DEFAULT_SCRAPE_INTERVAL_MS: u64 = 200;
pub const DEFAULT_SCRAPE_TIMEOUT_MS: u64 = 5000;
/// 4 MiB: several bodies of this size plus the merged output stay well inside
/// the 32Mi memory limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Longest interval or timeout: one day. Beyond that a number is a typo
/// (seconds written as milliseconds the other way round), and a bound keeps
/// timer arithmetic far from overflow.
pub const MAX_MILLISECONDS: u64 = 24 * 60 * 60 * 1000;
/// Smallest body limit: 1 KiB. Below that not even a handful of samples fit.
pub const MIN_BODY_BYTES: usize = 1024;
/// Largest body limit: 256 MiB. Already eight times the pod's memory limit;
/// anything larger is a typo.
pub const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// `--version` output.
pub const VERSION: &str = concat!(env!("CARGO_PKG_NAME"), " ", env!("CARGO_PKG_VERSION"));

/// `--help` output.
pub const HELP: &str = concat!(
    env!("CARGO_PKG_NAME"),
    " ",
    env!("CARGO_PKG_VERSION"),
    "
Scrapes the Prometheus metrics of every container in a pod on loopback,
labels every sample with its container and serves them merged on one port.

USAGE:
    metrics-multiplexer-sidecar -m <container>:<port>[/<path>]... [OPTIONS]

Every option takes its value as --flag=value, --flag value, -f value or -fvalue.
Long flags may be written with hyphens: --export-to is --export_to.

OPTIONS:
    -m, --container_to_port_map <container>:<port>[/<path>]
            A container to scrape on 127.0.0.1:<port> (or [::1]:<port> where
            127.0.0.1 refuses), at <path> if given, else at --endpoint. Repeatable; at least one is required.
            Container names are DNS-1123 labels (a-z, 0-9, '-', at most 63).
    -x, --exclude_containers <name>[,<name>...]
            Containers not to scrape (comma list, repeatable).
            [default: \"\"]
    -p, --endpoint <path>
            Path served, and the path scraped on each container.
            [default: /metrics]
    -e, --export_to <port> | <IPv4>:<port> | [<IPv6>]:<port>
            Where the merged metrics are served. A port alone listens on every
            address, IPv6 and IPv4 (IPv4 only where the host has no IPv6);
            with an address, on that address only: 0.0.0.0:13434 is every
            IPv4 address, [::]:13434 every IPv6 one, [::1]:13434 loopback.
            [default: 13434]
    -n, --container_label <name>
            Label name added to every sample. A label of that name already on
            a sample is renamed exported_<name>.
            [default: container]
    -i, --scrape_interval <ms>
            Milliseconds between two scrapes of each container, up to 86400000.
            Requests are answered at once from data at most this old.
            0 scrapes on demand: each request scrapes every container once
            (requests arriving meanwhile share that round) and is answered
            when all replied or --scrape_timeout (or Prometheus' own timeout
            header) passed; nothing runs between requests. Choose it when the
            containers are costly to scrape or Prometheus scrapes rarely.
            [default: 200]
        --scrape_timeout <ms>
            Milliseconds a whole scrape may take, from 1 to 86400000.
            [default: 5000]
        --max_body_bytes <bytes>
            Largest body accepted from one container, in bytes, or with a
            Ki or Mi suffix (512Ki, 8Mi); from 1Ki to 256Mi.
            [default: 4Mi]
        --log_level <level>
            One of error, warn, info, debug, trace, off. Logs go to stderr.
            [default: info]
    -h, --help
            Print this help and exit.
    -V, --version
            Print the version and exit.

Invalid input exits with status 2 and one line on stderr.
"
);

/// A command line that cannot run: one line naming the flag and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The flag as the user wrote it (`-e`, `--export_to`), or its long form
    /// when the error is about a flag that is absent.
    flag: String,
    /// The offending value, if there is one.
    value: String,
    problem: Problem,
}

/// What is wrong; [`ConfigError`] adds the flag and the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// With the known long flag it is probably a typo of, if any.
    UnknownFlag {
        did_you_mean: Option<&'static str>,
    },
    MissingValue,
    /// A value was attached (`--help=x`) to a flag that takes none.
    UnexpectedValue,
    /// A bare argument that belongs to no flag.
    StrayArgument,
    NotUtf8,
    /// `-m` was never given.
    NoContainers,
    Port,
    /// `-e` with a colon that is not `<IPv4>:<port>` or `[<IPv6>]:<port>`.
    ExportAddress,
    MissingColon,
    EmptyContainerName,
    ContainerName,
    DuplicateContainer,
    ContainerPortIsExportPort(u16),
    LabelName,
    ReservedLabelName,
    /// A label name that would collide with labels the output needs.
    ClashingLabelName,
    PathWithoutSlash,
    EndpointCharacter,
    PathCharacter,
    Interval,
    Timeout,
    BodyBytes,
    LogLevel,
}

impl ConfigError {
    fn new(flag: impl Into<String>, value: impl Into<String>, problem: Problem) -> Self {
        ConfigError {
            flag: flag.into(),
            value: value.into(),
            problem,
        }
    }

    pub fn flag(&self) -> &str {
        &self.flag
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    pub fn problem(&self) -> Problem {
        self.problem
    }
}

impl fmt::Display for ConfigError {
    // Values are written with `{:?}`: quoted, and a newline or control
    // character in them cannot break the one-line promise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (flag, value) = (&self.flag, &self.value);
        let explanation = match self.problem {
            Problem::UnknownFlag { did_you_mean: None } => {
                return write!(f, "unknown flag {flag:?}")
            }
            Problem::UnknownFlag {
                did_you_mean: Some(known),
            } => return write!(f, "unknown flag {flag:?} (did you mean --{known}?)"),
            Problem::MissingValue => return write!(f, "missing value for {flag}"),
            Problem::UnexpectedValue => {
                return write!(f, "{flag} takes no value, got {value:?}")
            }
            Problem::StrayArgument => {
                return write!(
                    f,
                    "unexpected argument {value:?}: every value follows its flag, as in -m app:8080"
                )
            }
            Problem::NoContainers => {
                return write!(
                    f,
                    "missing {flag}: give at least one <container>:<port> to scrape"
                )
            }
            Problem::ContainerPortIsExportPort(port) => {
                return write!(
                    f,
                    "invalid value {value:?} for {flag}: container port {port} is also the export port (-e, --export_to)"
                )
            }
            Problem::NotUtf8 => "not valid UTF-8",
            Problem::Port => "a port is a number from 1 to 65535",
            Problem::ExportAddress => {
                "expected <port>, <IPv4>:<port> or [<IPv6>]:<port> (13434, 0.0.0.0:13434, [::1]:13434); host names are not resolved"
            }
            Problem::MissingColon => "expected <container>:<port> or <container>:<port>/<path>",
            Problem::EmptyContainerName => "the container name before ':' is empty",
            Problem::ContainerName => {
                "a container name is a DNS-1123 label: at most 63 characters from a-z, 0-9 and '-', starting and ending with a letter or digit"
            }
            Problem::DuplicateContainer => "this container is already mapped by an earlier -m",
            Problem::LabelName => "a label name matches [a-zA-Z_][a-zA-Z0-9_]*",
            Problem::ReservedLabelName => "label names starting with __ are reserved for Prometheus",
            Problem::ClashingLabelName => {
                "le, quantile and reason are taken by histograms, summaries and multiplexer_scrape_failures_total"
            }
            Problem::PathWithoutSlash => "a path starts with '/'",
            Problem::EndpointCharacter => {
                "the endpoint holds only visible ASCII characters, without '?' or '#'"
            }
            Problem::PathCharacter => "a path holds only visible ASCII characters, without '#'",
            Problem::Interval => "expected whole milliseconds from 0 (on demand) to 86400000",
            Problem::Timeout => "expected whole milliseconds from 1 to 86400000",
            Problem::BodyBytes => {
                "expected bytes from 1024 to 268435456, optionally with a Ki or Mi suffix (from 1Ki to 256Mi)"
            }
            Problem::LogLevel => "expected one of error, warn, info, debug, trace, off",
        };
        write!(f, "invalid value {value:?} for {flag}: {explanation}")
    }
}

impl std::error::Error for ConfigError {}

/// Parses the arguments after the program name.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, ConfigError> {
    match parse_raw(args)? {
        Parsed::Help => Ok(Command::Help),
        Parsed::Version => Ok(Command::Version),
        Parsed::Run(raw) => validate(&raw).map(Command::Run),
    }
}

/// A value and the flag spelling it came with.
#[derive(Debug, Default, Clone, PartialEq)]
struct RawValue {
    flag: String,
    value: String,
}

/// The command line before validation: strings only.
#[derive(Debug, Default, Clone, PartialEq)]
struct RawArgs {
    endpoint: Option<RawValue>,
    export_to: Option<RawValue>,
    container_label: Option<RawValue>,
    scrape_interval: Option<RawValue>,
    scrape_timeout: Option<RawValue>,
    max_body_bytes: Option<RawValue>,
    log_level: Option<RawValue>,
    container_to_port_map: Vec<RawValue>,
    exclude_containers: Vec<RawValue>,
}

#[derive(Debug)]
enum Parsed {
    Run(Box<RawArgs>),
    Help,
    Version,
}

/// Step one: lexopt to strings. `--help` and `--version` win as soon as they
/// are seen; an error before them is still reported.
fn parse_raw(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, ConfigError> {
    use lexopt::Arg::{Long, Short, Value};

    let mut parser = lexopt::Parser::from_args(args);
    let mut raw = RawArgs::default();
    while let Some(arg) = parser.next().map_err(from_lexopt)? {
        let flag = match arg {
            Short(c) => format!("-{c}"),
            Long(name) => format!("--{name}"),
            Value(value) => {
                return Err(ConfigError::new(
                    "",
                    value.to_string_lossy(),
                    Problem::StrayArgument,
                ))
            }
        };
        // Hyphens are the common spelling of long flags elsewhere; accept
        // them for every long flag, keeping what was written for messages.
        let normalised;
        let arg = match arg {
            Long(name) if name.contains('-') => {
                normalised = name.replace('-', "_");
                Long(normalised.as_str())
            }
            other => other,
        };
        let slot: &mut Option<RawValue> = match arg {
            Short('h') | Long("help") => {
                reject_attached_value(&mut parser, &flag)?;
                return Ok(Parsed::Help);
            }
            Short('V') | Long("version") => {
                reject_attached_value(&mut parser, &flag)?;
                return Ok(Parsed::Version);
            }
            Short('m') | Long("container_to_port_map") => {
                let value = take_value(&mut parser, &flag)?;
                raw.container_to_port_map.push(value);
                continue;
            }
            Short('x') | Long("exclude_containers") => {
                let value = take_value(&mut parser, &flag)?;
                raw.exclude_containers.push(value);
                continue;
            }
            Short('p') | Long("endpoint") => &mut raw.endpoint,
            Short('e') | Long("export_to") => &mut raw.export_to,
            Short('n') | Long("container_label") => &mut raw.container_label,
            Short('i') | Long("scrape_interval") => &mut raw.scrape_interval,
            Long("scrape_timeout") => &mut raw.scrape_timeout,
            Long("max_body_bytes") => &mut raw.max_body_bytes,
            Long("log_level") => &mut raw.log_level,
            Long(name) => {
                let did_you_mean = closest_long_flag(name);
                return Err(ConfigError::new(
                    flag,
                    "",
                    Problem::UnknownFlag { did_you_mean },
                ));
            }
            Short(_) | Value(_) => {
                return Err(ConfigError::new(
                    flag,
                    "",
                    Problem::UnknownFlag { did_you_mean: None },
                ))
            }
        };
        *slot = Some(take_value(&mut parser, &flag)?);
    }
    Ok(Parsed::Run(Box::new(raw)))
}

/// `--help=yes` is a mistake worth reporting, not a request for help.
fn reject_attached_value(parser: &mut lexopt::Parser, flag: &str) -> Result<(), ConfigError> {
    match parser.optional_value() {
        None => Ok(()),
        Some(value) => Err(ConfigError::new(
            flag,
            value.to_string_lossy(),
            Problem::UnexpectedValue,
        )),
    }
}

fn take_value(parser: &mut lexopt::Parser, flag: &str) -> Result<RawValue, ConfigError> {
    let value = parser.value().map_err(from_lexopt)?;
    match value.into_string() {
        Ok(value) => Ok(RawValue {
            flag: flag.to_string(),
            value,
        }),
        Err(value) => Err(ConfigError::new(
            flag,
            value.to_string_lossy(),
            Problem::NotUtf8,
        )),
    }
}

fn from_lexopt(error: lexopt::Error) -> ConfigError {
    match error {
        lexopt::Error::MissingValue { option } => {
            ConfigError::new(option.unwrap_or_default(), "", Problem::MissingValue)
        }
        lexopt::Error::UnexpectedOption(flag) => {
            ConfigError::new(flag, "", Problem::UnknownFlag { did_you_mean: None })
        }
        lexopt::Error::UnexpectedArgument(value) => {
            ConfigError::new("", value.to_string_lossy(), Problem::StrayArgument)
        }
        lexopt::Error::UnexpectedValue { option, value } => {
            ConfigError::new(option, value.to_string_lossy(), Problem::UnexpectedValue)
        }
        // Only `ValueExt` and `Custom` produce the rest, and we use neither;
        // map them to something truthful rather than panic.
        lexopt::Error::NonUnicodeValue(value) => {
            ConfigError::new("", value.to_string_lossy(), Problem::NotUtf8)
        }
        lexopt::Error::ParsingFailed { value, .. } => {
            ConfigError::new("", value, Problem::StrayArgument)
        }
        other => ConfigError::new("", other.to_string(), Problem::StrayArgument),
    }
}

/// Step two: strings to a `Config`.
fn validate(raw: &RawArgs) -> Result<Config, ConfigError> {
    let endpoint = match &raw.endpoint {
        Some(given) => validate_endpoint(given)?,
        None => DEFAULT_ENDPOINT.to_string(),
    };
    let (export_ip, export_port) = match &raw.export_to {
        Some(given) => parse_export_to(given)?,
        None => (None, DEFAULT_EXPORT_PORT),
    };
    let container_label = match &raw.container_label {
        Some(given) => validate_label_name(given)?,
        None => DEFAULT_CONTAINER_LABEL.to_string(),
    };
    let scrape_mode = ScrapeMode::from_interval(match &raw.scrape_interval {
        Some(given) => parse_milliseconds(&given.value, 0)
            .ok_or_else(|| ConfigError::new(&given.flag, &given.value, Problem::Interval))?,
        None => Duration::from_millis(DEFAULT_SCRAPE_INTERVAL_MS),
    });
    let scrape_timeout = match &raw.scrape_timeout {
        Some(given) => parse_milliseconds(&given.value, 1)
            .ok_or_else(|| ConfigError::new(&given.flag, &given.value, Problem::Timeout))?,
        None => Duration::from_millis(DEFAULT_SCRAPE_TIMEOUT_MS),
    };
    let max_body_bytes = match &raw.max_body_bytes {
        Some(given) => parse_body_bytes(&given.value)
            .ok_or_else(|| ConfigError::new(&given.flag, &given.value, Problem::BodyBytes))?,
        None => DEFAULT_MAX_BODY_BYTES,
    };
    let log_level = match &raw.log_level {
        Some(given) => parse_log_level(&given.value)
            .ok_or_else(|| ConfigError::new(&given.flag, &given.value, Problem::LogLevel))?,
        None => LevelFilter::Info,
    };

    let mut mapped: Vec<Container> = Vec::with_capacity(raw.container_to_port_map.len());
    for given in &raw.container_to_port_map {
        let container = parse_container(given, &endpoint)?;
        if mapped.iter().any(|known| known.name == container.name) {
            return Err(ConfigError::new(
                &given.flag,
                &given.value,
                Problem::DuplicateContainer,
            ));
        }
        if container.port == export_port {
            return Err(ConfigError::new(
                &given.flag,
                &given.value,
                Problem::ContainerPortIsExportPort(export_port),
            ));
        }
        mapped.push(container);
    }
    if mapped.is_empty() {
        return Err(ConfigError::new(
            "-m/--container_to_port_map",
            "",
            Problem::NoContainers,
        ));
    }

    let mut excluded: Vec<String> = Vec::new();
    for given in &raw.exclude_containers {
        // Spaces after commas ("a, b") are a common way to write a list in
        // YAML; they cannot be part of a container name, so drop them.
        for name in given.value.split(',').map(str::trim) {
            if name.is_empty() {
                continue; // the documented default is "", and "a,,b" is harmless
            }
            if !is_dns1123_label(name) {
                return Err(ConfigError::new(
                    &given.flag,
                    &given.value,
                    Problem::ContainerName,
                ));
            }
            if !excluded.iter().any(|known| known == name) {
                excluded.push(name.to_string());
            }
        }
    }
    let containers = mapped
        .into_iter()
        .filter(|container| !excluded.contains(&container.name))
        .collect();

    Ok(Config {
        endpoint,
        export_port,
        export_ip,
        container_label,
        scrape_mode,
        containers,
        excluded,
        scrape_timeout,
        max_body_bytes,
        log_level,
    })
}

/// Digits only (no sign, no spaces), 1..=65535.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => None,
        Ok(port) => Some(port),
    }
}

/// `-e`: a bare port (the seed's form: every address), or a socket address
/// as Rust and most tools write it, `<IPv4>:<port>` or `[<IPv6>]:<port>`.
/// No host names: nothing here resolves names (the image has no resolver
/// configuration), and an address is what a bind needs.
fn parse_export_to(given: &RawValue) -> Result<(Option<IpAddr>, u16), ConfigError> {
    let error = |problem| ConfigError::new(&given.flag, &given.value, problem);
    if !given.value.contains(':') {
        return Ok((
            None,
            parse_port(&given.value).ok_or_else(|| error(Problem::Port))?,
        ));
    }
    // The port after the last colon is checked with the same rule as a bare
    // port, so `[::1]:0` and `0.0.0.0:+80` say what is wrong with them.
    let (_, port) = given.value.rsplit_once(':').unwrap_or_default();
    let address: SocketAddr = given.value.parse().map_err(|_| match parse_port(port) {
        None if given.value.starts_with('[') || given.value.contains('.') => error(Problem::Port),
        _ => error(Problem::ExportAddress),
    })?;
    if address.port() == 0 {
        return Err(error(Problem::Port));
    }
    Ok((Some(address.ip()), address.port()))
}

/// Every long flag, as `--help` writes it.
const LONG_FLAGS: [&str; 11] = [
    "container_to_port_map",
    "exclude_containers",
    "endpoint",
    "export_to",
    "container_label",
    "scrape_interval",
    "scrape_timeout",
    "max_body_bytes",
    "log_level",
    "help",
    "version",
];

/// The long flag `name` (already with underscores for hyphens) is most
/// likely a typo of: the nearest by edit distance, if at most 2 edits and
/// fewer than a third of its length away.
fn closest_long_flag(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    LONG_FLAGS
        .iter()
        .map(|known| (edit_distance(&name, known), *known))
        .filter(|(distance, known)| *distance <= 2 && *distance * 3 < known.len())
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

/// Levenshtein distance over bytes; flag names are short ASCII.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, &x) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, &y) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(x != y);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Digits only, `min..=MAX_MILLISECONDS`.
fn parse_milliseconds(text: &str, min: u64) -> Option<Duration> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis: u64 = text.parse().ok()?;
    (min..=MAX_MILLISECONDS)
        .contains(&millis)
        .then(|| Duration::from_millis(millis))
}

/// `<digits>` or `<digits>Ki` or `<digits>Mi`, within the documented bounds.
fn parse_body_bytes(text: &str) -> Option<usize> {
    let (digits, unit) = if let Some(digits) = text.strip_suffix("Ki") {
        (digits, 1024)
    } else if let Some(digits) = text.strip_suffix("Mi") {
        (digits, 1024 * 1024)
    } else {
        (text, 1)
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bytes = digits.parse::<usize>().ok()?.checked_mul(unit)?;
    (MIN_BODY_BYTES..=MAX_BODY_BYTES)
        .contains(&bytes)
        .then_some(bytes)
}

/// Exactly the names the help lists, lower case as written there.
fn parse_log_level(text: &str) -> Option<LevelFilter> {
    match text {
        "error" => Some(LevelFilter::Error),
        "warn" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        "off" => Some(LevelFilter::Off),
        _ => None,
    }
}

/// A label name per the exposition format: `[a-zA-Z_][a-zA-Z0-9_]*`; names
/// starting with `__` are reserved for Prometheus' internal use.
fn validate_label_name(given: &RawValue) -> Result<String, ConfigError> {
    let name = given.value.as_str();
    let error = |problem| ConfigError::new(&given.flag, &given.value, problem);
    let mut bytes = name.bytes();
    let first_ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_');
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(error(Problem::LabelName));
    }
    if name.starts_with("__") {
        return Err(error(Problem::ReservedLabelName));
    }
    // `le` and `quantile` carry bucket and quantile bounds: renaming the
    // upstream's to exported_le would break every histogram and summary.
    // `reason` is already a label of multiplexer_scrape_failures_total.
    if matches!(name, "le" | "quantile" | "reason") {
        return Err(error(Problem::ClashingLabelName));
    }
    Ok(name.to_string())
}

/// The endpoint is both served and scraped. The server ignores query
/// strings, so one in the endpoint could never match: reject `?` and `#`.
fn validate_endpoint(given: &RawValue) -> Result<String, ConfigError> {
    let path = given.value.as_str();
    if !path.starts_with('/') {
        return Err(ConfigError::new(
            &given.flag,
            &given.value,
            Problem::PathWithoutSlash,
        ));
    }
    if !path.bytes().all(|b| is_path_byte(b) && b != b'?') {
        return Err(ConfigError::new(
            &given.flag,
            &given.value,
            Problem::EndpointCharacter,
        ));
    }
    Ok(path.to_string())
}

/// RFC 9112 section 3.2: the request-target is visible ASCII; a space or a
/// control character would break the request line. A fragment (`#`) is
/// never sent. A query (`?format=prometheus`, as Consul wants) is kept.
fn is_path_byte(b: u8) -> bool {
    b.is_ascii_graphic() && b != b'#'
}

/// `<name>:<port>` or `<name>:<port>/<path>`.
fn parse_container(given: &RawValue, endpoint: &str) -> Result<Container, ConfigError> {
    let error = |problem| ConfigError::new(&given.flag, &given.value, problem);
    let (name, rest) = given
        .value
        .split_once(':')
        .ok_or_else(|| error(Problem::MissingColon))?;
    if name.is_empty() {
        return Err(error(Problem::EmptyContainerName));
    }
    if !is_dns1123_label(name) {
        return Err(error(Problem::ContainerName));
    }
    let (port, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, endpoint),
    };
    let port = parse_port(port).ok_or_else(|| error(Problem::Port))?;
    if !path.bytes().all(is_path_byte) {
        return Err(error(Problem::PathCharacter));
    }
    Ok(Container {
        name: name.to_string(),
        port,
        path: path.to_string(),
    })
}

/// Kubernetes container names (RFC 1123 label): 1 to 63 characters of
/// `[a-z0-9-]`, starting and ending with a letter or digit. Enforcing it here
/// means a typo fails at start, and names never need escaping in label values.
fn is_dns1123_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let is_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (1..=63).contains(&bytes.len())
        && bytes.first().is_some_and(is_alnum)
        && bytes.last().is_some_and(is_alnum)
        && bytes.iter().all(|b| is_alnum(b) || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &[&str]) -> Vec<OsString> {
        line.iter().map(OsString::from).collect()
    }

    fn run(line: &[&str]) -> Config {
        match parse_args(args(line)) {
            Ok(Command::Run(config)) => config,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn error(line: &[&str]) -> String {
        match parse_args(args(line)) {
            Err(error) => error.to_string(),
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn container(name: &str, port: u16, path: &str) -> Container {
        Container {
            name: name.to_string(),
            port,
            path: path.to_string(),
        }
    }

    /// The configuration of `-m app:8080` with every default.
    fn defaults() -> Config {
        Config {
            endpoint: "/metrics".to_string(),
            export_port: 13434,
            export_ip: None,
            container_label: "container".to_string(),
            scrape_mode: ScrapeMode::Every(Duration::from_millis(200)),
            containers: vec![container("app", 8080, "/metrics")],
            excluded: vec![],
            scrape_timeout: Duration::from_millis(5000),
            max_body_bytes: 4 * 1024 * 1024,
            log_level: LevelFilter::Info,
        }
    }

    #[test]
    fn defaults_with_one_container() {
        assert_eq!(run(&["-m", "app:8080"]), defaults());
    }

    #[test]
    fn every_form_of_every_flag() {
        type Edit = fn(&mut Config);
        let endpoint: Edit = |c| {
            c.endpoint = "/stats".to_string();
            c.containers[0].path = "/stats".to_string();
        };
        let export: Edit = |c| c.export_port = 9000;
        let loopback_v6: Edit = |c| {
            c.export_port = 9000;
            c.export_ip = Some("::1".parse().unwrap());
        };
        let any_v4: Edit = |c| {
            c.export_port = 9000;
            c.export_ip = Some("0.0.0.0".parse().unwrap());
        };
        let any_v6: Edit = |c| {
            c.export_port = 9000;
            c.export_ip = Some("::".parse().unwrap());
        };
        let loopback_v4: Edit = |c| {
            c.export_port = 9000;
            c.export_ip = Some("127.0.0.1".parse().unwrap());
        };
        let label: Edit = |c| c.container_label = "source_container".to_string();
        let interval: Edit = |c| c.scrape_mode = ScrapeMode::Every(Duration::from_millis(1000));
        let on_demand: Edit = |c| c.scrape_mode = ScrapeMode::OnDemand;
        let timeout: Edit = |c| c.scrape_timeout = Duration::from_millis(750);
        let body_bytes: Edit = |c| c.max_body_bytes = 2048;
        let body_ki: Edit = |c| c.max_body_bytes = 512 * 1024;
        let body_mi: Edit = |c| c.max_body_bytes = 8 * 1024 * 1024;
        let debug: Edit = |c| c.log_level = LevelFilter::Debug;
        let off: Edit = |c| c.log_level = LevelFilter::Off;
        let no_change: Edit = |_| {};
        let cases: &[(&[&str], Edit)] = &[
            (&["-p", "/stats"], endpoint),
            (&["-p/stats"], endpoint),
            (&["-p=/stats"], endpoint),
            (&["--endpoint", "/stats"], endpoint),
            (&["--endpoint=/stats"], endpoint),
            (&["-e", "9000"], export),
            (&["-e9000"], export),
            (&["-e=9000"], export),
            (&["--export_to", "9000"], export),
            (&["--export_to=9000"], export),
            (&["-e", "1", "-e", "9000"], export), // the last one wins
            (&["-e", "[::1]:9000"], loopback_v6),
            (&["-e[::]:9000"], any_v6),
            (&["--export_to=0.0.0.0:9000"], any_v4),
            (&["--export_to", "127.0.0.1:9000"], loopback_v4),
            (&["-e", "[::1]:1", "-e", "9000"], export), // a bare port: every address
            // Hyphenated long flags, every one of them.
            (&["--export-to", "9000"], export),
            (&["--export-to=[::1]:9000"], loopback_v6),
            (&["--container-label=source_container"], label),
            (&["--scrape-interval", "1000"], interval),
            (&["--scrape-timeout=750"], timeout),
            (&["--max-body-bytes=512Ki"], body_ki),
            (&["--log-level", "debug"], debug),
            (&["--exclude-containers", "other"], |c| {
                c.excluded = vec!["other".to_string()]
            }),
            (&["-n", "source_container"], label),
            (&["-nsource_container"], label),
            (&["--container_label", "source_container"], label),
            (&["--container_label=source_container"], label),
            (&["-i", "1000"], interval),
            (&["-i1000"], interval),
            (&["--scrape_interval", "1000"], interval),
            (&["--scrape_interval=1000"], interval),
            (&["-i", "0"], on_demand),
            (&["--scrape_timeout", "750"], timeout),
            (&["--scrape_timeout=750"], timeout),
            (&["--max_body_bytes", "2048"], body_bytes),
            (&["--max_body_bytes=512Ki"], body_ki),
            (&["--max_body_bytes=8Mi"], body_mi),
            (&["--log_level", "debug"], debug),
            (&["--log_level=off"], off),
            (&["-x", ""], no_change),
            (&["-x", "other"], |c| c.excluded = vec!["other".to_string()]),
        ];
        for (extra, edit) in cases {
            let mut line = vec!["-m", "app:8080"];
            line.extend_from_slice(extra);
            let mut expected = defaults();
            edit(&mut expected);
            assert_eq!(run(&line), expected, "{line:?}");
        }
    }

    #[test]
    fn container_forms_keep_command_line_order() {
        let config = run(&[
            "-m",
            "app:8080",
            "-menvoy:9901/stats/prometheus",
            "--container_to_port_map",
            "consul:8500/v1/agent/metrics?format=prometheus",
            "--container_to_port_map=log-exporter:9100",
            "-m=z9:1",
            "-p",
            "/m",
        ]);
        assert_eq!(
            config.containers,
            vec![
                container("app", 8080, "/m"),
                container("envoy", 9901, "/stats/prometheus"),
                container("consul", 8500, "/v1/agent/metrics?format=prometheus"),
                container("log-exporter", 9100, "/m"),
                container("z9", 1, "/m"),
            ]
        );
    }

    #[test]
    fn excluded_containers_are_removed() {
        let config = run(&[
            "-m", "a:1", "-m", "b:2", "-m", "c:3", "-m", "d:4", "-x", "a, c", "-x", "c,", "-x",
            "ghost",
        ]);
        assert_eq!(
            config.containers,
            vec![container("b", 2, "/metrics"), container("d", 4, "/metrics")]
        );
        assert_eq!(config.excluded, vec!["a", "c", "ghost"]);
    }

    #[test]
    fn every_container_excluded_is_allowed() {
        let config = run(&["-m", "a:1", "--exclude_containers=a"]);
        assert!(config.containers.is_empty());
    }

    #[test]
    fn help_and_version() {
        let cases: &[(&[&str], Command)] = &[
            (&["--help"], Command::Help),
            (&["-h"], Command::Help),
            (&["-m", "app:8080", "--help"], Command::Help),
            (&["--help", "--bogus"], Command::Help),
            (&["-e", "0", "--help"], Command::Help), // validation comes after
            (&["--version"], Command::Version),
            (&["--container-to-port-map=a:1", "--help"], Command::Help),
            (&["-V"], Command::Version),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_args(args(line)).as_ref(), Ok(expected), "{line:?}");
        }
    }

    #[test]
    fn help_lists_every_flag_and_default() {
        for text in [
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
            "[default: /metrics]",
            "[default: 13434]",
            "[default: container]",
            "[default: 200]",
            "[default: \"\"]",
            "[default: 5000]",
            "[default: 4Mi]",
            "[default: info]",
        ] {
            assert!(HELP.contains(text), "{text}");
        }
    }

    #[test]
    fn invalid_inputs_give_exact_messages() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "missing -m/--container_to_port_map: give at least one <container>:<port> to scrape"),
            (&["-x", "a"], "missing -m/--container_to_port_map: give at least one <container>:<port> to scrape"),
            (&["-m", "a:1", "--bogus"], "unknown flag \"--bogus\""),
            (&["-m", "a:1", "--bogus=1"], "unknown flag \"--bogus\""),
            (&["-m", "a:1", "-z"], "unknown flag \"-z\""),
            (&["-m", "a:1", "--export-too=1"], "unknown flag \"--export-too\" (did you mean --export_to?)"),
            (&["-m", "a:1", "--scrape-intervall=1"], "unknown flag \"--scrape-intervall\" (did you mean --scrape_interval?)"),
            (&["-m", "a:1", "--Log_Level=info"], "unknown flag \"--Log_Level\" (did you mean --log_level?)"),
            (&["-m", "a:1", "--port=1"], "unknown flag \"--port\""),
            (&["-m", "a:1", "--export-to"], "missing value for --export-to"),
            (&["-m", "a:1", "-e"], "missing value for -e"),
            (&["-m", "a:1", "--export_to"], "missing value for --export_to"),
            (&["-m"], "missing value for -m"),
            (&["-m", "a:1", "--help=yes"], "--help takes no value, got \"yes\""),
            (&["-m", "a:1", "stray"], "unexpected argument \"stray\": every value follows its flag, as in -m app:8080"),
            (&["-m", "a:1", "--", "-e"], "unexpected argument \"-e\": every value follows its flag, as in -m app:8080"),
            // ports
            (&["-m", "a:1", "-e", "0"], "invalid value \"0\" for -e: a port is a number from 1 to 65535"),
            (&["-m", "a:1", "--export_to=65536"], "invalid value \"65536\" for --export_to: a port is a number from 1 to 65535"),
            (&["-m", "a:1", "-e", "http"], "invalid value \"http\" for -e: a port is a number from 1 to 65535"),
            (&["-m", "a:1", "-e", "+80"], "invalid value \"+80\" for -e: a port is a number from 1 to 65535"),
            (&["-m", "a:1", "-e", ""], "invalid value \"\" for -e: a port is a number from 1 to 65535"),
            (&["-m", "a:1", "-e", "[::1]:0"], "invalid value \"[::1]:0\" for -e: a port is a number from 1 to 65535"),
            (&["-m", "a:1", "-e", "0.0.0.0:65536"], "invalid value \"0.0.0.0:65536\" for -e: a port is a number from 1 to 65535"),
            (&["-m", "a:1", "-e", "[::1]:"], "invalid value \"[::1]:\" for -e: a port is a number from 1 to 65535"),
            (&["-m", "a:1", "-e", "::1:9000"], "invalid value \"::1:9000\" for -e: expected <port>, <IPv4>:<port> or [<IPv6>]:<port> (13434, 0.0.0.0:13434, [::1]:13434); host names are not resolved"),
            (&["-m", "a:1", "-e", "localhost:9000"], "invalid value \"localhost:9000\" for -e: expected <port>, <IPv4>:<port> or [<IPv6>]:<port> (13434, 0.0.0.0:13434, [::1]:13434); host names are not resolved"),
            (&["-m", "a:1", "-e", "[::1]9000"], "invalid value \"[::1]9000\" for -e: a port is a number from 1 to 65535"),
            (&["-m", "a:1", "-e", "300.0.0.1:9000"], "invalid value \"300.0.0.1:9000\" for -e: expected <port>, <IPv4>:<port> or [<IPv6>]:<port> (13434, 0.0.0.0:13434, [::1]:13434); host names are not resolved"),
            (&["-e", "[::1]:9000", "-m", "a:9000"], "invalid value \"a:9000\" for -m: container port 9000 is also the export port (-e, --export_to)"),
            (&["-m", "a:0"], "invalid value \"a:0\" for -m: a port is a number from 1 to 65535"),
            (&["-m", "a:70000"], "invalid value \"a:70000\" for -m: a port is a number from 1 to 65535"),
            (&["-m", "a:"], "invalid value \"a:\" for -m: a port is a number from 1 to 65535"),
            (&["-m", "a:80metrics"], "invalid value \"a:80metrics\" for -m: a port is a number from 1 to 65535"),
            (&["--container_to_port_map=a:x/m"], "invalid value \"a:x/m\" for --container_to_port_map: a port is a number from 1 to 65535"),
            (&["-m", "a:13434"], "invalid value \"a:13434\" for -m: container port 13434 is also the export port (-e, --export_to)"),
            (&["-e", "9000", "-m", "a:9000/x"], "invalid value \"a:9000/x\" for -m: container port 9000 is also the export port (-e, --export_to)"),
            // container names
            (&["-m", "a"], "invalid value \"a\" for -m: expected <container>:<port> or <container>:<port>/<path>"),
            (&["-m", ""], "invalid value \"\" for -m: expected <container>:<port> or <container>:<port>/<path>"),
            (&["-m", ":8080"], "invalid value \":8080\" for -m: the container name before ':' is empty"),
            (&["-m", "App:8080"], "invalid value \"App:8080\" for -m: a container name is a DNS-1123 label: at most 63 characters from a-z, 0-9 and '-', starting and ending with a letter or digit"),
            (&["-m", "my_app:8080"], "invalid value \"my_app:8080\" for -m: a container name is a DNS-1123 label: at most 63 characters from a-z, 0-9 and '-', starting and ending with a letter or digit"),
            (&["-m", "-app:8080"], "invalid value \"-app:8080\" for -m: a container name is a DNS-1123 label: at most 63 characters from a-z, 0-9 and '-', starting and ending with a letter or digit"),
            (&["-m", "a\"\n:1"], "invalid value \"a\\\"\\n:1\" for -m: a container name is a DNS-1123 label: at most 63 characters from a-z, 0-9 and '-', starting and ending with a letter or digit"),
            (&["-m", "a:1", "-m", "b:2", "-ma:3"], "invalid value \"a:3\" for -m: this container is already mapped by an earlier -m"),
            (&["-m", "a:1", "-x", "a,B"], "invalid value \"a,B\" for -x: a container name is a DNS-1123 label: at most 63 characters from a-z, 0-9 and '-', starting and ending with a letter or digit"),
            // paths
            (&["-m", "a:1", "-p", "metrics"], "invalid value \"metrics\" for -p: a path starts with '/'"),
            (&["-m", "a:1", "--endpoint="], "invalid value \"\" for --endpoint: a path starts with '/'"),
            (&["-m", "a:1", "-p", "/metrics?x=1"], "invalid value \"/metrics?x=1\" for -p: the endpoint holds only visible ASCII characters, without '?' or '#'"),
            (&["-m", "a:1", "-p", "/a b"], "invalid value \"/a b\" for -p: the endpoint holds only visible ASCII characters, without '?' or '#'"),
            (&["-m", "a:1/a\r\nHost: x"], "invalid value \"a:1/a\\r\\nHost: x\" for -m: a path holds only visible ASCII characters, without '#'"),
            (&["-m", "a:1/a#b"], "invalid value \"a:1/a#b\" for -m: a path holds only visible ASCII characters, without '#'"),
            // label names
            (&["-m", "a:1", "-n", ""], "invalid value \"\" for -n: a label name matches [a-zA-Z_][a-zA-Z0-9_]*"),
            (&["-m", "a:1", "-n", "1st"], "invalid value \"1st\" for -n: a label name matches [a-zA-Z_][a-zA-Z0-9_]*"),
            (&["-m", "a:1", "-n", "pod-container"], "invalid value \"pod-container\" for -n: a label name matches [a-zA-Z_][a-zA-Z0-9_]*"),
            (&["-m", "a:1", "--container_label=__name__"], "invalid value \"__name__\" for --container_label: label names starting with __ are reserved for Prometheus"),
            (&["-m", "a:1", "-n", "le"], "invalid value \"le\" for -n: le, quantile and reason are taken by histograms, summaries and multiplexer_scrape_failures_total"),
            (&["-m", "a:1", "-n", "reason"], "invalid value \"reason\" for -n: le, quantile and reason are taken by histograms, summaries and multiplexer_scrape_failures_total"),
            // durations, sizes, levels
            (&["-m", "a:1", "-i", "fast"], "invalid value \"fast\" for -i: expected whole milliseconds from 0 (on demand) to 86400000"),
            (&["-m", "a:1", "-i", "-1"], "invalid value \"-1\" for -i: expected whole milliseconds from 0 (on demand) to 86400000"),
            (&["-m", "a:1", "-i", "1.5"], "invalid value \"1.5\" for -i: expected whole milliseconds from 0 (on demand) to 86400000"),
            (&["-m", "a:1", "--scrape_interval=86400001"], "invalid value \"86400001\" for --scrape_interval: expected whole milliseconds from 0 (on demand) to 86400000"),
            (&["-m", "a:1", "--scrape_timeout=0"], "invalid value \"0\" for --scrape_timeout: expected whole milliseconds from 1 to 86400000"),
            (&["-m", "a:1", "--scrape_timeout", "5s"], "invalid value \"5s\" for --scrape_timeout: expected whole milliseconds from 1 to 86400000"),
            (&["-m", "a:1", "--max_body_bytes=0"], "invalid value \"0\" for --max_body_bytes: expected bytes from 1024 to 268435456, optionally with a Ki or Mi suffix (from 1Ki to 256Mi)"),
            (&["-m", "a:1", "--max_body_bytes=1023"], "invalid value \"1023\" for --max_body_bytes: expected bytes from 1024 to 268435456, optionally with a Ki or Mi suffix (from 1Ki to 256Mi)"),
            (&["-m", "a:1", "--max_body_bytes=257Mi"], "invalid value \"257Mi\" for --max_body_bytes: expected bytes from 1024 to 268435456, optionally with a Ki or Mi suffix (from 1Ki to 256Mi)"),
            (&["-m", "a:1", "--max_body_bytes=4MB"], "invalid value \"4MB\" for --max_body_bytes: expected bytes from 1024 to 268435456, optionally with a Ki or Mi suffix (from 1Ki to 256Mi)"),
            (&["-m", "a:1", "--max_body_bytes=Mi"], "invalid value \"Mi\" for --max_body_bytes: expected bytes from 1024 to 268435456, optionally with a Ki or Mi suffix (from 1Ki to 256Mi)"),
            (&["-m", "a:1", "--max_body_bytes=99999999999999999999Mi"], "invalid value \"99999999999999999999Mi\" for --max_body_bytes: expected bytes from 1024 to 268435456, optionally with a Ki or Mi suffix (from 1Ki to 256Mi)"),
            (&["-m", "a:1", "--log_level=verbose"], "invalid value \"verbose\" for --log_level: expected one of error, warn, info, debug, trace, off"),
            (&["-m", "a:1", "--log_level=INFO"], "invalid value \"INFO\" for --log_level: expected one of error, warn, info, debug, trace, off"),
        ];
        for (line, expected) in cases {
            assert_eq!(error(line), *expected, "{line:?}");
        }
    }

    #[test]
    fn every_message_is_one_line() {
        let line = args(&["-m", "a\nb:1"]);
        let message = parse_args(line).unwrap_err().to_string();
        assert!(!message.contains('\n'), "{message}");
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_value_is_an_error() {
        use std::os::unix::ffi::OsStringExt;
        let line = vec![
            OsString::from("-m"),
            OsString::from_vec(b"a\xff:1".to_vec()),
        ];
        assert_eq!(
            parse_args(line).unwrap_err().to_string(),
            "invalid value \"a\u{fffd}:1\" for -m: not valid UTF-8"
        );
    }

    #[test]
    fn two_containers_on_one_port_are_a_warning() {
        let warnings = |line: &[&str]| run(line).warnings();
        assert_eq!(warnings(&["-m", "a:1", "-m", "b:2"]), Vec::<String>::new());
        assert_eq!(
            warnings(&["-m", "a:1", "-m", "b:2", "-m", "c:1"]),
            ["containers a and c are both mapped to port 1 (-m): the same samples are served twice, under both names"]
        );
        assert_eq!(
            warnings(&["-m", "envoy:9901/stats/prometheus", "-m", "envoy-raw:9901/stats"]),
            ["containers envoy and envoy-raw are both mapped to port 9901 (-m): one process serves both paths; if that is not meant, one port is wrong"]
        );
        // An excluded container is not scraped: nothing to warn about.
        assert_eq!(
            warnings(&["-m", "a:1", "-m", "c:1", "-x", "c"]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn typos_of_long_flags_are_recognised() {
        for (typo, expected) in [
            ("export_t", Some("export_to")),
            ("exportto", Some("export_to")),
            ("endpiont", Some("endpoint")),
            ("containers", None),
            ("help_me", None),
            ("x", None),
        ] {
            assert_eq!(closest_long_flag(typo), expected, "{typo}");
        }
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn longest_container_name_is_63_characters() {
        let ok = format!("{}:1", "a".repeat(63));
        let too_long = format!("{}:1", "a".repeat(64));
        assert_eq!(run(&["-m", &ok]).containers[0].name.len(), 63);
        assert_eq!(
            parse_args(args(&["-m", &too_long])).unwrap_err().problem(),
            Problem::ContainerName
        );
    }
}
