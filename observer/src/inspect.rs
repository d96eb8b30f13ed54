//! `inspect`: sha256, ELF-ness and build-id of files given by path.

use std::path::Path;

use serde::Serialize;

use crate::error::Error;
use crate::hashing::{open_regular, HashCache};

/// What `inspect` reports for one file: `{"path","sha256","buildId","elf"}`, or
/// `{"path","error"}` when the file cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", untagged)]
pub enum FileReport {
    #[serde(rename_all = "camelCase")]
    Ok {
        path: String,
        sha256: String,
        build_id: Option<String>,
        elf: bool,
        /// Why an ELF file has no build-id (malformed or truncated headers).
        #[serde(skip_serializing_if = "Option::is_none")]
        elf_error: Option<String>,
    },
    Failed {
        path: String,
        error: String,
    },
}

impl FileReport {
    pub fn is_ok(&self) -> bool {
        matches!(self, FileReport::Ok { .. })
    }
}

/// Inspects the regular file at `path` (devices, FIFOs and directories are refused).
pub fn inspect_file(path: &Path, cache: &HashCache) -> FileReport {
    let shown = path.to_string_lossy().into_owned();
    let failed = |e: Error| FileReport::Failed {
        path: shown.clone(),
        error: e.to_string(),
    };
    let file = match open_regular(path) {
        Ok(file) => file,
        Err(e) => return failed(e),
    };
    let (elf, build_id, elf_error) = match cache.elf(&file, path) {
        Ok(info) => (info.is_elf, info.build_id, None),
        Err(Error::MalformedElf(why)) => (true, None, Some(why)),
        Err(e) => return failed(e),
    };
    match cache.sha256(&file, path) {
        Ok(hash) => FileReport::Ok {
            path: shown,
            sha256: hash.sha256,
            build_id,
            elf,
            elf_error,
        },
        Err(e) => failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_and_errors() {
        let cache = HashCache::new(8);
        let ok = inspect_file(Path::new("/bin/true"), &cache);
        let json = serde_json::to_value(&ok).unwrap();
        assert_eq!(json["elf"], true);
        assert_eq!(
            json["buildId"].as_str().map(str::to_string),
            crate::elf::tests::readelf_build_id(Path::new("/bin/true"))
        );
        assert_eq!(json["path"], "/bin/true");
        assert!(json.get("elfError").is_none());

        let text = serde_json::to_value(inspect_file(Path::new("/etc/hostname"), &cache)).unwrap();
        assert_eq!(text["elf"], false);
        assert!(text["buildId"].is_null());

        let missing = inspect_file(Path::new("/nonexistent"), &cache);
        assert!(!missing.is_ok());
        let json = serde_json::to_value(&missing).unwrap();
        assert!(json["error"].as_str().unwrap().contains("No such file"));
        assert!(json.get("sha256").is_none());

        let dir = serde_json::to_value(inspect_file(Path::new("/tmp"), &cache)).unwrap();
        assert!(dir["error"]
            .as_str()
            .unwrap()
            .contains("not a regular file"));
    }

    #[test]
    fn truncated_elf_keeps_its_hash_and_says_why_no_build_id() {
        let dir = crate::testutil::TempDir::new("inspect");
        let path = dir.join("truncated");
        let bytes = std::fs::read("/bin/true").unwrap();
        std::fs::write(&path, &bytes[..100]).unwrap();
        let json = serde_json::to_value(inspect_file(&path, &HashCache::new(8))).unwrap();
        assert_eq!(json["elf"], true);
        assert!(json["buildId"].is_null());
        assert!(json["elfError"].as_str().unwrap().contains("truncated"));
        assert_eq!(json["sha256"].as_str().unwrap().len(), 64);
    }
}
