//! Parses the command line, starts logging, runs the loop and maps errors to
//! exit codes.

fn main() {}
