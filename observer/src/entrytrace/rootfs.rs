//! The container's root filesystem as the tracer sees it: paths resolved and files read only
//! through [`confined::Root`], directory listings for `run-parts`, and the lexical path helpers
//! (`absolute`, `join`, `basename`).

use std::io::{self, Read};
use std::path::Path;

use crate::confined::{self, Root};

#[derive(Debug, thiserror::Error)]
pub(super) enum ResolveError {
    #[error("not found")]
    NotFound,
    #[error("a path component is not a directory")]
    NotADirectory,
    #[error("too many levels of symbolic links")]
    Loop,
    #[error("{0}")]
    Io(io::Error),
}

/// A path resolved inside the root: no symlinks left in it.
pub(super) type Resolved = confined::Resolved;

/// The container's root filesystem: every lookup and every read goes through
/// [`confined::Root`], so nothing outside the root is ever read, whatever the container does
/// to its files while it is traced; FIFOs, sockets and devices are never opened for reading.
pub(super) struct Rootfs {
    root: Result<Root, String>,
}

impl Rootfs {
    pub(super) fn new(root: &Path) -> Rootfs {
        Rootfs {
            root: Root::open(root).map_err(|e| format!("{}: {e}", root.display())),
        }
    }

    fn root(&self) -> Result<&Root, ResolveError> {
        self.root
            .as_ref()
            .map_err(|e| ResolveError::Io(io::Error::other(e.clone())))
    }

    /// Resolves `path` (absolute, inside the container) the way the kernel would with the
    /// root as `/`: `..` stops at the root and absolute symlink targets start over from it.
    pub(super) fn resolve(&self, path: &str) -> Result<Resolved, ResolveError> {
        self.root()?.resolve(path).map_err(io_error)
    }

    /// The first `limit` bytes of a resolved regular file, if it is still that file.
    pub(super) fn read(&self, file: &Resolved, limit: u64) -> io::Result<Vec<u8>> {
        let root = self.root().map_err(|e| io::Error::other(e.to_string()))?;
        let opened = root.open_resolved(file)?;
        if !opened.meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let mut data = Vec::new();
        opened.file.take(limit).read_to_end(&mut data)?;
        Ok(data)
    }

    /// The UTF-8 names in a directory (others cannot be run by name from a script anyway),
    /// at most `limit` of them read; and whether there were more.
    pub(super) fn list(
        &self,
        dir: &str,
        limit: usize,
    ) -> Result<(Vec<String>, bool), ResolveError> {
        let root = self.root()?;
        let dir = root.resolve(dir).map_err(io_error)?;
        if !dir.meta.is_dir() {
            return Err(ResolveError::NotADirectory);
        }
        root.read_dir(&dir.path, limit).map_err(io_error)
    }
}

fn io_error(e: io::Error) -> ResolveError {
    const ELOOP: i32 = 40;
    match e.kind() {
        io::ErrorKind::NotFound => ResolveError::NotFound,
        io::ErrorKind::NotADirectory => ResolveError::NotADirectory,
        _ if e.raw_os_error() == Some(ELOOP) => ResolveError::Loop,
        _ => ResolveError::Io(e),
    }
}

fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

pub(super) fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `path` made absolute against `cwd` and normalized lexically; `None` when it is relative and
/// the working directory is not known.
pub(super) fn absolute(path: &str, cwd: Option<&str>) -> Option<String> {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", cwd?)
    };
    let mut out: Vec<&str> = Vec::new();
    for c in components(&joined) {
        match c {
            "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(c),
        }
    }
    Some(format!("/{}", out.join("/")))
}

pub(super) fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entrytrace::tests::{write, ELF};
    use crate::testutil::TempDir;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolve_stays_inside_the_root() {
        let root = TempDir::new("entrytrace-resolve");
        let r = root.path();
        write(r, "/bin/busybox", ELF, 0o755);
        symlink("/bin/busybox", r.join("bin/sh")).unwrap();
        symlink("../../../../../../etc", r.join("bin/up")).unwrap();
        symlink("loop", r.join("bin/loop")).unwrap();
        fs::create_dir_all(r.join("usr")).unwrap();
        symlink("../bin", r.join("usr/bin")).unwrap();
        let fs = Rootfs::new(r);
        assert_eq!(fs.resolve("/bin/sh").unwrap().path, "/bin/busybox");
        assert_eq!(fs.resolve("/usr/bin/sh").unwrap().path, "/bin/busybox");
        assert_eq!(
            fs.resolve("/usr/bin/../bin/sh").unwrap().path,
            "/bin/busybox"
        );
        // `..` stops at the root: /etc of the root, which does not exist there.
        assert!(matches!(
            fs.resolve("/bin/up/passwd"),
            Err(ResolveError::NotFound)
        ));
        assert!(matches!(fs.resolve("/bin/loop"), Err(ResolveError::Loop)));
        assert!(matches!(
            fs.resolve("/bin/busybox/x"),
            Err(ResolveError::NotADirectory)
        ));
    }
}
