//! The module graph follows ARCHITECTURE.md's layering: every `crate::X` reference in `src/`
//! points to a strictly lower layer, so there are no cycles and no arrows against the picture
//! (lower layers never reach app, bot or web). A new top-level module must be given a layer here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layer of each top-level module; an import must go to a strictly lower number.
const LAYERS: &[(&str, u8)] = &[
    ("domain", 0),
    ("clock", 1),
    ("config", 1),
    ("ports", 2),
    ("ta", 2),
    ("chart", 2),
    ("store", 3),
    ("texts", 3),
    ("market", 4),
    ("risk", 4),
    ("oms", 5),
    ("agents", 5),
    ("mcp", 6),
    ("backtest", 7),
    ("bot", 8),
    ("web", 8),
    ("jobs", 8),
    ("app", 9),
    ("metrics", 1),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/agents/meta.rs` -> "agents", `src/clock.rs` -> "clock").
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// Top-level modules named after `crate::` in code (comments skipped), including grouped uses
/// such as `use crate::{a::X, b::Y}`.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::X, b}`: every first segment inside the braces (nested braces skipped).
            let mut depth = 1;
            let mut item = String::new();
            let mut at_start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => {
                        at_start = true;
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 1 && at_start {
                    if c.is_alphanumeric() || c == '_' {
                        item.push(c);
                    } else if !item.is_empty() {
                        out.insert(std::mem::take(&mut item));
                        at_start = false;
                    }
                }
            }
            if at_start && !item.is_empty() {
                out.insert(item);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layers: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(&own) = layers.get(module.as_str()) else {
            problems.push(format!(
                "{}: module `{module}` has no layer: add it to LAYERS in tests/layers.rs and to ARCHITECTURE.md",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read file");
        for target in referenced(&text) {
            if target == module {
                continue;
            }
            match layers.get(target.as_str()) {
                Some(&t) if t < own => {}
                Some(&t) => problems.push(format!(
                    "{}: `{module}` (layer {own}) imports `{target}` (layer {t}): imports must point to a lower layer",
                    file.display()
                )),
                None => problems.push(format!(
                    "{}: `{module}` imports `{target}`, which has no layer in tests/layers.rs",
                    file.display()
                )),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_reference_scanner_sees_grouped_and_plain_paths() {
    let text = "use crate::{ports::{Reply, Alert}, domain::X};\n// use crate::app::Nope;\nlet x = crate::store::Store::new();";
    let got = referenced(text);
    let want: BTreeSet<String> = ["ports", "domain", "store"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, want);
}
