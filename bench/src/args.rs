//! The bench binaries' tiny command lines: `--name value`, `--name=value`
//! and bare `--switch`, every name declared up front so typos fail loudly.

use std::str::FromStr;

pub struct Args {
    values: Vec<(String, String)>,
    switches: Vec<String>,
}

impl Args {
    /// Parses `arguments` (without the program name).
    pub fn parse(
        arguments: impl IntoIterator<Item = String>,
        with_value: &[&str],
        switches: &[&str],
    ) -> Result<Args, String> {
        let mut args = Args {
            values: Vec::new(),
            switches: Vec::new(),
        };
        let mut arguments = arguments.into_iter();
        while let Some(argument) = arguments.next() {
            let Some(flag) = argument.strip_prefix("--") else {
                return Err(format!("unexpected argument {argument:?}"));
            };
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name.to_string(), Some(value.to_string())),
                None => (flag.to_string(), None),
            };
            if switches.contains(&name.as_str()) && inline.is_none() {
                args.switches.push(name);
            } else if with_value.contains(&name.as_str()) {
                let value = match inline {
                    Some(value) => value,
                    None => arguments
                        .next()
                        .ok_or_else(|| format!("--{name} needs a value"))?,
                };
                args.values.push((name, value));
            } else {
                return Err(format!("unknown flag --{name}"));
            }
        }
        Ok(args)
    }

    pub fn from_env(with_value: &[&str], switches: &[&str]) -> Result<Args, String> {
        Args::parse(std::env::args().skip(1), with_value, switches)
    }

    /// The last value given for `name`.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(flag, _)| flag == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|flag| flag == name)
    }

    /// The value of `name` parsed, or `default` when absent.
    pub fn parsed_or<T: FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.value(name) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| format!("--{name}: cannot parse {text:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &[&str]) -> Result<Args, String> {
        Args::parse(
            line.iter().map(|s| s.to_string()),
            &["port", "seconds"],
            &["chunked"],
        )
    }

    #[test]
    fn forms_and_errors() {
        let args = parse(&["--port", "9", "--seconds=3", "--chunked"]).unwrap();
        assert_eq!(args.value("port"), Some("9"));
        assert_eq!(args.parsed_or("seconds", 1u64), Ok(3));
        assert_eq!(args.parsed_or("missing", 7u64), Ok(7));
        assert!(args.switch("chunked"));
        assert_eq!(parse(&["--nope"]).err().unwrap(), "unknown flag --nope");
        assert_eq!(parse(&["--port"]).err().unwrap(), "--port needs a value");
        assert_eq!(parse(&["x"]).err().unwrap(), "unexpected argument \"x\"");
        assert_eq!(
            parse(&["--port=x"]).unwrap().parsed_or("port", 0u16),
            Err("--port: cannot parse \"x\"".to_string())
        );
    }
}
