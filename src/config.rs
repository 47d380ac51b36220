//! The command line (lexopt) and its validation into a `Config`.
