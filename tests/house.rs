//! The walls between the rooms of `src/` (`src/lib.rs` says what each
//! owns): arrows run one way, `event_loop` -> `serve` -> `scrape` ->
//! `exposition`, and `config` and `timer` name no other room. The loop's
//! child rooms (`src/event_loop/*.rs`) name nothing of each other: what they
//! share stands in `src/event_loop.rs`.
//!
//! A file that names a room it may not (`crate::serve` inside
//! `src/scrape/`, say) fails here with its path and line. Comments are not
//! read: a doc link is no import.

use std::fs;
use std::path::{Path, PathBuf};

/// The rooms each room may not name.
const WALLS: [(&str, &[&str]); 5] = [
    (
        "exposition",
        &["scrape", "serve", "event_loop", "config", "timer"],
    ),
    ("scrape", &["serve", "event_loop"]),
    ("serve", &["event_loop"]),
    (
        "config",
        &["scrape", "serve", "event_loop", "exposition", "timer"],
    ),
    (
        "timer",
        &["scrape", "serve", "event_loop", "exposition", "config"],
    ),
];

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The room of a file: its first folder under `src/`, or its name there
/// without `.rs` (`src/event_loop.rs` is the loop's room).
fn room(relative: &Path) -> String {
    let first = relative.components().next().unwrap().as_os_str();
    first.to_str().unwrap().trim_end_matches(".rs").to_string()
}

/// Every `crate::NAME` a line names, grouped imports (`crate::{a, b::c}`)
/// included.
fn crate_names(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let preceded_by_word = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_word {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                names.push(name);
            }
        } else {
            names.push(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    names
}

fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
}

#[test]
fn no_room_names_a_room_above_it_or_beside_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    files.sort();
    let mut breaches = Vec::new();
    let mut read = 0;
    for path in &files {
        let relative = path.strip_prefix(&src).unwrap();
        let from = room(relative);
        let Some((_, walls)) = WALLS.iter().find(|(name, _)| *name == from) else {
            continue;
        };
        read += 1;
        let text = fs::read_to_string(path).unwrap();
        for (number, line) in code_lines(&text) {
            for name in crate_names(line) {
                if walls.contains(&name.as_str()) {
                    breaches.push(format!(
                        "src/{}:{number}: {from} names {name}: {}",
                        relative.display(),
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(read >= 20, "only {read} files of the walled rooms read");
    assert!(breaches.is_empty(), "{}", breaches.join("\n"));
}

#[test]
fn the_loops_child_rooms_name_nothing_of_each_other() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/event_loop");
    let mut files = Vec::new();
    source_files(&dir, &mut files);
    files.sort();
    let children: Vec<String> = files
        .iter()
        .map(|path| path.file_stem().unwrap().to_str().unwrap().to_string())
        .collect();
    assert!(children.len() >= 4, "{children:?}");
    let mut breaches = Vec::new();
    for (path, child) in files.iter().zip(&children) {
        let text = fs::read_to_string(path).unwrap();
        for (number, line) in code_lines(&text) {
            for sibling in children.iter().filter(|other| *other != child) {
                let named = [
                    format!("super::{sibling}"),
                    format!("crate::event_loop::{sibling}"),
                ];
                if named.iter().any(|path| line.contains(path.as_str())) {
                    breaches.push(format!(
                        "src/event_loop/{child}.rs:{number}: names {sibling}: {}",
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(breaches.is_empty(), "{}", breaches.join("\n"));
}

#[test]
fn a_grouped_import_names_each_of_its_rooms() {
    assert_eq!(
        crate_names("use crate::{serve::output, scrape};"),
        ["serve", "scrape"]
    );
    assert_eq!(crate_names("let x = crate::timer::now();"), ["timer"]);
    assert!(crate_names("use othercrate::serve;").is_empty());
}
