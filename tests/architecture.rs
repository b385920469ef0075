//! The shape of the code, as rules a change cannot quietly break:
//!
//! - dependencies point one way: lab → analysis core ← service, and the service binary links
//!   nothing of the lab (cohort generator, training, evaluation);
//! - the analysis core knows no HTTP, no FHIR and no database;
//! - inside each crate, no file imports a file that imports it back (no import circles);
//! - every source file reads in one sitting (at most 700 lines).
//!
//!     cargo test --release --test architecture

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Each crate's source folder, by package name.
const CRATES: [(&str, &str); 3] = [("neurocds", "src"), ("neurocds-analysis", "crates/analysis/src"), ("neurocds-lab", "crates/lab/src")];

// ---------------------------------------------------------------------------------------------
// Crates
// ---------------------------------------------------------------------------------------------

/// Every package `package` links, transitively, through normal (non-dev, non-build)
/// dependencies on this machine's platform, by `cargo tree`.
fn links(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "--offline", "--locked", "--edges", "normal", "--prefix", "none", "--format", "{p}", "--package", package, "--manifest-path"])
        .arg(workspace_root().join("Cargo.toml"))
        .output()
        .expect("run cargo tree");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let mut names: BTreeSet<String> = text.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect();
    names.remove(package);
    assert!(!names.is_empty(), "cargo tree listed nothing for {package}");
    names
}

#[test]
fn the_service_depends_on_the_core_and_never_on_the_lab() {
    let service = links("neurocds");
    assert!(service.contains("neurocds-analysis"), "the service runs the analysis core");
    assert!(!service.contains("neurocds-lab"), "the service must not link the lab");
    let lab = links("neurocds-lab");
    assert!(lab.contains("neurocds-analysis"), "the lab measures the core the service runs");
    assert!(!lab.contains("neurocds"), "the lab must not know the service");
}

#[test]
fn the_core_knows_no_http_no_fhir_and_no_database() {
    let core = links("neurocds-analysis");
    for forbidden in ["neurocds", "neurocds-lab", "actix-web", "reqwest", "hyper", "fhir-sdk", "diesel", "diesel-async", "jsonwebtoken"] {
        assert!(!core.contains(forbidden), "neurocds-analysis links {forbidden}");
    }
}

#[test]
fn the_service_binary_contains_no_lab_code() {
    let binary = std::fs::read(env!("CARGO_BIN_EXE_neurocds")).expect("the neurocds binary");
    let contains = |needle: &[u8]| binary.windows(needle.len()).any(|w| w == needle);
    // The control: symbols name their crate, so the core's name is in the binary.
    assert!(contains(b"neurocds_analysis"), "the binary's symbols should name the crates it links");
    assert!(!contains(b"neurocds_lab"), "the service binary links code from neurocds-lab");
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_source_file_reads_in_one_sitting() {
    let mut long = Vec::new();
    for dir in ["src", "crates", "tests", "benches"] {
        let mut files = Vec::new();
        rust_files(&workspace_root().join(dir), &mut files);
        for f in files {
            let lines = std::fs::read_to_string(&f).unwrap().lines().count();
            if lines > 700 {
                long.push(format!("{} ({lines} lines)", f.strip_prefix(workspace_root()).unwrap().display()));
            }
        }
    }
    assert!(long.is_empty(), "files over 700 lines: {long:?}");
}

// ---------------------------------------------------------------------------------------------
// Import circles
// ---------------------------------------------------------------------------------------------

/// A module path inside one crate (`["imaging", "preprocess"]`; the crate root is `[]`).
type ModPath = Vec<String>;

struct Module {
    /// The code, without comments and without the `#[cfg(test)]` tail.
    code: String,
    /// Items this module re-exports (`pub use a::b::C;` → `C` → `a::b::C`), resolved absolute.
    reexports: BTreeMap<String, ModPath>,
}

fn module_path(root: &Path, file: &Path) -> Option<ModPath> {
    let rel = file.strip_prefix(root).ok()?;
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop()?;
    match last.as_str() {
        "main.rs" if parts.is_empty() => None, // the binary's root: it reaches the library by name
        "lib.rs" | "mod.rs" => Some(parts),
        name => {
            parts.push(name.trim_end_matches(".rs").to_string());
            Some(parts)
        }
    }
}

/// Removes comments and string contents, and cuts the unit tests off (they may import freely).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '"' => {
                out.push('"');
                let mut escaped = false;
                for c in chars.by_ref() {
                    if !escaped && c == '"' {
                        break;
                    }
                    escaped = !escaped && c == '\\';
                }
                out.push('"');
            }
            _ => out.push(c),
        }
    }
    out
}

/// The `use` declarations of `code`: (is `pub`, the tree's text), and the code without them.
fn use_declarations(code: &str) -> (Vec<(bool, String)>, String) {
    let mut uses = Vec::new();
    let mut rest = String::new();
    let mut i = 0;
    let bytes = code.as_bytes();
    while i < code.len() {
        let at_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if at_word && code[i..].starts_with("use ") {
            let end = code[i..].find(';').map_or(code.len(), |e| i + e);
            let before = rest.trim_end();
            let public = before.ends_with("pub") || before.ends_with("pub(crate)") || before.ends_with("pub(super)");
            uses.push((public, code[i + 4..end].to_string()));
            i = end + 1;
        } else {
            let ch = code[i..].chars().next().unwrap();
            rest.push(ch);
            i += ch.len_utf8();
        }
    }
    (uses, rest)
}

/// Expands a use tree (`crate::{a::{self, B}, c::D as E}`) into (path, local name) pairs.
fn expand(text: &str) -> Vec<(Vec<String>, String)> {
    fn tokens(s: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut word = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_alphanumeric() || c == '_' || c == '*' {
                word.push(c);
                continue;
            }
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            match c {
                '{' | '}' | ',' => out.push(c.to_string()),
                ':' if chars.peek() == Some(&':') => {
                    chars.next();
                }
                _ => {}
            }
        }
        if !word.is_empty() {
            out.push(word);
        }
        out
    }
    fn tree(t: &[String], i: &mut usize, prefix: Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
        let mut path = prefix;
        while *i < t.len() {
            match t[*i].as_str() {
                "{" => {
                    *i += 1;
                    while *i < t.len() && t[*i] != "}" {
                        tree(t, i, path.clone(), out);
                        if *i < t.len() && t[*i] == "," {
                            *i += 1;
                        }
                    }
                    *i += 1;
                    return;
                }
                "," | "}" => break,
                "as" => {
                    *i += 1;
                    let alias = t.get(*i).cloned().unwrap_or_default();
                    *i += 1;
                    if path.last().is_some_and(|s| s == "self") {
                        path.pop();
                    }
                    out.push((path, alias));
                    return;
                }
                word => {
                    path.push(word.to_string());
                    *i += 1;
                }
            }
        }
        if path.last().is_some_and(|s| s == "self") {
            path.pop();
        }
        let name = path.last().cloned().unwrap_or_default();
        out.push((path, name));
    }
    let t = tokens(text);
    let mut out = Vec::new();
    let mut i = 0;
    tree(&t, &mut i, Vec::new(), &mut out);
    out
}

/// `path` as written in module `from`, made absolute; `None` for other crates.
fn absolute(from: &ModPath, path: &[String], modules: &BTreeMap<ModPath, Module>) -> Option<ModPath> {
    let (mut base, mut rest) = match path.first()?.as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (from.clone(), &path[1..]),
        "super" => (from.clone(), path),
        first => {
            let mut child = from.clone();
            child.push(first.to_string());
            if !modules.contains_key(&child) {
                return None; // another crate, or an item of this module
            }
            (from.clone(), path)
        }
    };
    while rest.first().is_some_and(|s| s == "super") {
        base.pop()?;
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The module file an absolute path lands in, following re-exports of facade modules.
fn resolve(path: &ModPath, modules: &BTreeMap<ModPath, Module>, depth: usize) -> Option<ModPath> {
    let module = (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains_key(p))?;
    if depth < 8
        && let Some(item) = path.get(module.len())
        && let Some(target) = modules[&module].reexports.get(item)
    {
        let mut target = target.clone();
        target.extend(path[module.len() + 1..].iter().cloned());
        return resolve(&target, modules, depth + 1).or(Some(module));
    }
    Some(module)
}

/// Module → the modules it imports, within one crate.
fn import_graph(root: &Path) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let mut modules: BTreeMap<ModPath, Module> = files
        .into_iter()
        .filter_map(|f| {
            let path = module_path(root, &f)?;
            let code = code_of(&std::fs::read_to_string(&f).unwrap());
            Some((path, Module { code, reexports: BTreeMap::new() }))
        })
        .collect();
    let keys: Vec<ModPath> = modules.keys().cloned().collect();
    for key in &keys {
        let (uses, _) = use_declarations(&modules[key].code);
        let mut reexports = BTreeMap::new();
        for (_, tree) in uses.iter().filter(|(public, _)| *public) {
            for (path, name) in expand(tree) {
                if let Some(abs) = absolute(key, &path, &modules) {
                    reexports.insert(name, abs);
                }
            }
        }
        modules.get_mut(key).unwrap().reexports = reexports;
    }
    let mut graph = BTreeMap::new();
    for key in &keys {
        let (uses, rest) = use_declarations(&modules[key].code);
        let mut paths: Vec<Vec<String>> = Vec::new();
        for (public, tree) in &uses {
            for (path, _) in expand(tree) {
                // A facade re-exporting its own children does not depend on them.
                let facade = *public && absolute(key, &path, &modules).is_some_and(|a| a.len() > key.len() && a.starts_with(key));
                if !facade {
                    paths.push(path);
                }
            }
        }
        // Paths written in the code: `crate::a::b`, `super::c`, `child::f`.
        let words: Vec<&str> = rest.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).collect();
        for w in words {
            if w.contains("::") {
                paths.push(w.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect());
            }
        }
        let mut targets = BTreeSet::new();
        for p in paths {
            if let Some(abs) = absolute(key, &p, &modules)
                && let Some(target) = resolve(&abs, &modules, 0)
                && &target != key
            {
                targets.insert(target);
            }
        }
        graph.insert(key.clone(), targets);
    }
    graph
}

/// The strongly connected components with more than one module (Tarjan).
fn circles(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        found: Vec<Vec<ModPath>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a ModPath) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let Some((w, _)) = self.graph.get_key_value(w) else { continue };
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut t = Tarjan { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on_stack: BTreeSet::new(), found: Vec::new() };
    for v in graph.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.found
}

fn show(m: &ModPath) -> String {
    if m.is_empty() { "crate".into() } else { m.join("::") }
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let mut report = Vec::new();
    for (name, dir) in CRATES {
        let graph = import_graph(&workspace_root().join(dir));
        assert!(graph.len() > 3, "{name}: found no modules in {dir}");
        for circle in circles(&graph) {
            let members: Vec<String> = circle.iter().map(show).collect();
            let edges: Vec<String> = circle
                .iter()
                .flat_map(|from| graph[from].iter().filter(|to| circle.contains(to)).map(move |to| format!("{} → {}", show(from), show(to))))
                .collect();
            report.push(format!("{name}: {}\n    ({})", members.join(" ↔ "), edges.join(", ")));
        }
    }
    assert!(report.is_empty(), "import circles:\n{}", report.join("\n"));
}

#[test]
fn the_circle_finder_finds_a_circle() {
    // The checker itself: two modules that import each other, one through a facade.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod c;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "mod b;\npub use b::B;\n").unwrap();
    std::fs::write(src.join("a/b.rs"), "use crate::c::C;\npub struct B(C);\n").unwrap();
    std::fs::write(src.join("c.rs"), "// use crate::a::B; (a comment is not an import)\npub struct C;\npub fn f(_: crate::a::B) {}\n").unwrap();
    let found = circles(&import_graph(src));
    assert_eq!(found, vec![vec![vec!["a".to_string(), "b".to_string()], vec!["c".to_string()]]]);
    std::fs::write(src.join("c.rs"), "// use crate::a::B;\npub struct C;\n").unwrap();
    assert!(circles(&import_graph(src)).is_empty());
}
