//! Embeds the standard library (kpis/ and scripts/) into the binary, so that
//! `kpi init` writes a clean deployment from an installed `kpi` with no
//! repository beside it. Generates `$OUT_DIR/library.rs`: one
//! `(relative path, include_str!(absolute path))` per file.

use std::path::{Path, PathBuf};

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        if p.is_dir() {
            walk(root, &p, out);
        } else if name.ends_with(".toml") || name.ends_with(".rhai") {
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, p.clone()));
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let mut files = Vec::new();
    for dir in ["kpis", "scripts"] {
        println!("cargo:rerun-if-changed={dir}");
        walk(&root, &root.join(dir), &mut files);
    }
    let mut code = String::from(
        "/// The standard library: (path relative to the root, text).\npub static FILES: &[(&str, &str)] = &[\n",
    );
    for (rel, abs) in &files {
        code.push_str(&format!(
            "    ({rel:?}, include_str!({:?})),\n",
            abs.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("library.rs");
    std::fs::write(out, code).expect("write library.rs");
}
