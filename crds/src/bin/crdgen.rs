//! Writes the CRD YAML generated from the Rust types: `crdgen [DIR]...` (default: this crate's
//! dir). `make crds` writes crds/ and the Helm chart's charts/zastava/crds/.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let mut dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    }
    for dir in &dirs {
        std::fs::create_dir_all(dir)?;
        for (name, yaml) in zastava_crds::crd_manifests() {
            let path = dir.join(name);
            std::fs::write(&path, yaml)?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
