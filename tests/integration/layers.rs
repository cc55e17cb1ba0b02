//! The crate's layering (README, "Layers"): a module may import only from the layers below
//! its own. The layers are read from README, the imports from the sources (`crate::x`,
//! `use crate::{x, y::z}`, `crate::Error`/`crate::Result` from `error`).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Module -> layer (0 = the top) from README's numbered list under "## Layers".
fn layers() -> BTreeMap<String, usize> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("\n## Layers")
        .nth(1)
        .expect("README has a '## Layers' section");
    let section = section.split("\n## ").next().unwrap();
    let mut map = BTreeMap::new();
    let mut layer = 0;
    for line in section.lines() {
        let Some((num, rest)) = line.split_once(". ") else {
            continue;
        };
        if num.trim().parse::<usize>().is_err() {
            continue;
        }
        let names = rest.split(" — ").next().unwrap();
        for name in names.split(',') {
            let name = name.trim().trim_matches('`');
            assert!(
                map.insert(name.to_string(), layer).is_none(),
                "'{name}' twice in README's layers"
            );
        }
        layer += 1;
    }
    assert!(layer > 5, "README's layer list not found");
    map
}

/// The top-level module a source file belongs to (`src/x.rs`, `src/x/...` -> `x`).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root().join("src")).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_string())
}

/// The crate modules `source` refers to.
fn imports(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    let code: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `supernet_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            // The first identifier of every item at the group's top level.
            let (mut depth, mut start) = (0usize, true);
            let mut ident = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_alphanumeric() || c == '_') => ident.push(c),
                    _ if start && !ident.is_empty() => {
                        found.push(std::mem::take(&mut ident));
                        start = false;
                    }
                    _ => {}
                }
            }
            if !ident.is_empty() {
                found.push(ident);
            }
        } else {
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(ident);
        }
    }
    found
        .into_iter()
        .map(|m| match m.as_str() {
            "Error" | "Result" => "error".to_string(),
            _ => m,
        })
        .collect()
}

/// The imports of `module`'s `source` that point to its own layer or above.
fn violations(layers: &BTreeMap<String, usize>, module: &str, source: &str) -> Vec<String> {
    let own = layers[module];
    imports(source)
        .into_iter()
        .filter(|m| m != module)
        .filter(|m| match layers.get(m) {
            Some(&l) => l <= own,
            None => true,
        })
        .map(|m| format!("{module} -> {m}"))
        .collect()
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn modules_import_only_from_lower_layers() {
    let layers = layers();
    let mut files = Vec::new();
    sources(&root().join("src"), &mut files);
    let mut bad = Vec::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        assert!(
            layers.contains_key(&module),
            "module '{module}' ({}) is missing from README's layers",
            file.display()
        );
        let text = std::fs::read_to_string(file).unwrap();
        for v in violations(&layers, &module, &text) {
            bad.push(format!("{v}  ({})", file.display()));
        }
    }
    bad.sort();
    bad.dedup();
    assert!(
        bad.is_empty(),
        "imports against the layering:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_layer_check_rejects_the_old_back_edges() {
    let layers = layers();
    // The back-edges of the crate before the layering (module, a line it had).
    for (module, line) in [
        (
            "derive",
            "let data = crate::plot::data::RunData::load(dir)?;",
        ),
        (
            "supernet",
            "out.extend(crate::plot::data::softmax(&betas));",
        ),
        (
            "search",
            "let p = crate::memory::predict(exe, cfg, input, batch)?;",
        ),
        (
            "search",
            "let g = crate::sample::uniform_genotype(&space, &mut rng);",
        ),
        (
            "run",
            "use crate::search::{checkpoint, CONFIG_FILE, RUN_FILE};",
        ),
        (
            "train",
            "use crate::search::{checkpoint, parse_device, stop_flag};",
        ),
        ("sample", "use crate::inspect::Summary;"),
        ("model", "use crate::search::load_trained;"),
        ("error", "    Data(#[from] crate::data::DataError),"),
        ("record", "use crate::{run::RunDir, Error};"),
    ] {
        assert!(
            !violations(&layers, module, line).is_empty(),
            "the check lets {module} have: {line}"
        );
    }
    assert!(violations(&layers, "cli", "use crate::{search::SearchConfig, Error};").is_empty());
}
