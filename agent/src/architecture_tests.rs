//! The module order of ARCHITECTURE.md ("Module order"), checked against the code: every
//! `crate::` path in a module's non-test code must name a module of an earlier tier. So the
//! data flows one way, no two modules depend on each other, and the document stays true.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The tiers as ARCHITECTURE.md lists them: the lines of the ```text block after the
/// heading "## Module order", each `N. module module ...` (anything after ` -- ` is prose).
fn documented_tiers() -> Vec<Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ARCHITECTURE.md");
    let text = std::fs::read_to_string(&path).expect("ARCHITECTURE.md beside the workspace");
    let section = text
        .split("\n## Module order")
        .nth(1)
        .expect("ARCHITECTURE.md has a \"## Module order\" section");
    let block = section
        .split("```text\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the module order is a ```text block");
    block
        .lines()
        .filter_map(|line| {
            let (_, modules) = line.split_once(". ")?;
            let modules = modules.split(" -- ").next().unwrap_or_default();
            Some(modules.split_whitespace().map(String::from).collect())
        })
        .collect()
}

/// The crate's top-level modules as lib.rs declares them (`pub mod x;` / `mod x;`, test
/// modules left out).
fn declared_modules() -> Vec<String> {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("lib.rs");
    let mut test_only = false;
    let mut modules = Vec::new();
    for line in lib.lines().map(str::trim) {
        if line == "#[cfg(test)]" {
            test_only = true;
            continue;
        }
        let name = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
            .and_then(|rest| rest.strip_suffix(';'));
        if let Some(name) = name
            && !test_only
        {
            modules.push(name.to_string());
        }
        test_only = false;
    }
    modules
}

/// The module a source file belongs to: `src/store/handle.rs` is `store`.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let first = file.strip_prefix(src).ok()?.components().next()?;
    let name = first.as_os_str().to_str()?;
    Some(name.strip_suffix(".rs").unwrap_or(name).to_string())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code a module ships: up to its `#[cfg(test)] mod tests` (tests may reach anywhere),
/// without comments.
fn shipped_code(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod tests"))
        {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        code.push_str(line.split(" // ").next().unwrap_or_default());
        code.push('\n');
    }
    code
}

/// The top-level modules `code` names through `crate::`: `crate::store::Handle`,
/// `use crate::{config::Config, model::{A, B}}` (each item of a group).
fn crate_modules_named(code: &str) -> Vec<String> {
    let mut named = Vec::new();
    let identifier = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        // `gridwatch_crate::` or `$crate::` are not this crate's paths.
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start && depth == 1 => {
                        named.push(identifier(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            named.push(identifier(rest));
        }
    }
    named.retain(|m| !m.is_empty() && m != "self");
    named
}

#[test]
fn every_module_imports_only_modules_of_earlier_tiers() {
    let tiers = documented_tiers();
    let tier_of: HashMap<&str, usize> = tiers
        .iter()
        .enumerate()
        .flat_map(|(i, tier)| tier.iter().map(move |m| (m.as_str(), i)))
        .collect();
    let declared = declared_modules();
    let unlisted: Vec<&String> = declared
        .iter()
        .filter(|m| !tier_of.contains_key(m.as_str()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "modules missing from ARCHITECTURE.md's module order: {unlisted:?}"
    );
    let stale: Vec<&str> = tier_of
        .keys()
        .filter(|m| !declared.iter().any(|d| d == *m))
        .copied()
        .collect();
    assert!(
        stale.is_empty(),
        "ARCHITECTURE.md's module order lists modules lib.rs does not declare: {stale:?}"
    );

    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        // The crate root, the binary and test-only files are not stages.
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if matches!(module.as_str(), "lib" | "main")
            || name == "tests.rs"
            || name.ends_with("_tests.rs")
        {
            continue;
        }
        let Some(&tier) = tier_of.get(module.as_str()) else {
            continue;
        };
        let code = shipped_code(&std::fs::read_to_string(file).expect("readable source"));
        for named in crate_modules_named(&code) {
            if named == module {
                continue;
            }
            match tier_of.get(named.as_str()) {
                Some(&other) if other < tier => {}
                Some(&other) => violations.push(format!(
                    "{} (tier {}) uses crate::{named} (tier {})",
                    file.strip_prefix(&src).unwrap_or(file).display(),
                    tier + 1,
                    other + 1
                )),
                None => violations.push(format!(
                    "{} uses crate::{named}, which is not a listed module",
                    file.strip_prefix(&src).unwrap_or(file).display()
                )),
            }
        }
    }
    violations.sort();
    violations.dedup();
    assert!(
        violations.is_empty(),
        "imports against ARCHITECTURE.md's module order (a module may use only modules of \
         earlier tiers):\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn the_import_reader_sees_grouped_and_nested_paths_and_skips_tests_and_comments() {
    let code = shipped_code(
        "use crate::{assets::AssetError, config::{A, B}, detect};\n\
         // crate::web in a comment\n\
         let x = crate::store::Handle::open(); // crate::daemon after code\n\
         macro_rules! m { () => { $crate::publish::x } }\n\
         #[cfg(test)]\n\
         mod tests { use crate::cmds; }\n",
    );
    assert_eq!(
        crate_modules_named(&code),
        ["assets", "config", "detect", "store"]
    );
}
