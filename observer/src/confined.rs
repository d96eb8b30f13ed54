//! The one way the observer opens files inside a container's root filesystem (or any
//! directory a container controls, such as its writable layer): resolution can never leave
//! the root, whatever the container does to its files meanwhile.
//!
//! - [`Root::open`] takes the root itself, following symlinks to it (`/proc/<pid>/root` is a
//!   magic link to the container's `/`; that one hop is the observer's own path).
//! - Everything below it is opened with `openat2(2)` and `RESOLVE_IN_ROOT |
//!   RESOLVE_NO_MAGICLINKS`: the kernel resolves `..` and absolute symlinks against the root,
//!   and refuses `/proc/.../fd/N`-style links. Where the kernel has no `openat2` (`ENOSYS`,
//!   Linux < 5.6, or a seccomp profile older than it answering `EPERM`), a walk does the
//!   same: one component at a time from a held directory, each opened `O_PATH|O_NOFOLLOW`,
//!   symlinks read (`readlinkat`) and resolved by the walk, `..` popping the walk's own stack
//!   of directories, never the kernel's. [`Root::resolve`] is that walk, for callers that
//!   need the path a name resolves to (the entry tracer's `symlink` steps).
//! - Files are opened `O_RDONLY|O_NONBLOCK|O_NOCTTY|O_CLOEXEC` and `fstat`ed: anything but a
//!   regular file or a directory (a FIFO, a socket, a device) is refused, never read, so a
//!   read cannot block. [`Root::open_resolved`] also checks that the opened file is the one
//!   the walk found (device and inode).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{fstat, openat, openat2, readlinkat, Dir, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::limits::{MAX_SYMLINK_HOPS, MAX_WALK_COMPONENTS};

/// How every file inside a root is opened for reading.
const READ: OFlags = OFlags::RDONLY
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);
/// How the walk holds each component: a handle that reads nothing and follows nothing.
const PATH: OFlags = OFlags::PATH.union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);
/// `openat2` answers `EAGAIN` when a rename raced a `..` it resolved; tried this many times.
const EAGAIN_RETRIES: usize = 8;

/// What a file is, from `fstat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device: never read.
    Other,
}

/// `fstat` of an opened file (or of a walk's handle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

impl Meta {
    // `stat`'s field types differ between architectures.
    #[allow(clippy::useless_conversion)]
    fn of(fd: impl AsFd) -> io::Result<Meta> {
        let st = fstat(fd)?;
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        };
        Ok(Meta {
            kind,
            mode: Mode::from_raw_mode(st.st_mode).bits() & 0o7777,
            dev: u64::from(st.st_dev),
            ino: u64::from(st.st_ino),
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: i64::from(st.st_mtime),
        })
    }

    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }

    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    /// A regular file with an execute bit.
    pub fn is_executable(&self) -> bool {
        self.is_file() && self.mode & 0o111 != 0
    }

    /// The (major, minor) numbers of the device holding the file, as `/proc/<pid>/maps`
    /// shows them.
    pub fn dev_major_minor(&self) -> (u32, u32) {
        (rustix::fs::major(self.dev), rustix::fs::minor(self.dev))
    }
}

/// An opened regular file or directory inside a root.
#[derive(Debug)]
pub struct Opened {
    pub file: File,
    pub meta: Meta,
}

/// A path resolved inside a root by the walk: no symlink left in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Absolute, inside the root (`/` for the root itself).
    pub path: String,
    /// What the walk found there (the handle was `O_PATH`: nothing was opened for reading).
    pub meta: Meta,
}

/// Why something was not opened although it exists: it is not a regular file or directory
/// (or not the kind asked for), or it changed between the walk and the open.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("not a regular file (a FIFO, socket or device is never read)")]
    NotFileOrDir,
    #[error("not a regular file")]
    NotFile,
    #[error("changed while it was opened")]
    Changed,
}

fn refused(why: Refused) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why)
}

/// Whether `err` is a refusal of this module (a FIFO, a socket, a device, a directory where
/// a file was asked for, or a file that changed), as opposed to an error of the kernel.
pub fn is_refused(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<Refused>())
}

/// A directory files are opened under, never outside it.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    /// Tests use the walk where `openat2` exists too.
    walk_only: bool,
}

impl Root {
    /// Takes the directory at `path` (a host path the observer chose, followed if it is a
    /// symlink) as the root.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd,
            walk_only: false,
        })
    }

    #[cfg(test)]
    pub(crate) fn open_walk_only(path: &Path) -> io::Result<Root> {
        Ok(Root {
            walk_only: true,
            ..Root::open(path)?
        })
    }

    /// Opens `path` (inside the root: absolute paths start from the root, `..` stops there,
    /// symlinks resolve inside it) for reading: a regular file or a directory.
    pub fn open_any(&self, path: &str) -> io::Result<Opened> {
        let fd = if self.walk_only {
            self.open_by_walk(path)?
        } else {
            match self.open_by_kernel(path) {
                Err(Errno::NOSYS | Errno::PERM) => self.open_by_walk(path)?,
                other => other?,
            }
        };
        let meta = Meta::of(&fd)?;
        if !matches!(meta.kind, Kind::File | Kind::Dir) {
            return Err(refused(Refused::NotFileOrDir));
        }
        Ok(Opened {
            file: File::from(fd),
            meta,
        })
    }

    /// Opens the regular file at `path` (see [`Root::open_any`]); anything else is refused.
    pub fn open_file(&self, path: &str) -> io::Result<Opened> {
        let opened = self.open_any(path)?;
        if !opened.meta.is_file() {
            return Err(refused(match opened.meta.kind {
                Kind::Dir => Refused::NotFile,
                _ => Refused::NotFileOrDir,
            }));
        }
        Ok(opened)
    }

    /// Opens what [`Root::resolve`] found, refusing it if it is no longer that file (same
    /// device and inode).
    pub fn open_resolved(&self, resolved: &Resolved) -> io::Result<Opened> {
        let opened = self.open_any(&resolved.path)?;
        if (opened.meta.dev, opened.meta.ino) != (resolved.meta.dev, resolved.meta.ino) {
            return Err(refused(Refused::Changed));
        }
        Ok(opened)
    }

    /// Resolves `path` inside the root, following every symlink (also a last component that
    /// is one), without opening anything for reading.
    pub fn resolve(&self, path: &str) -> io::Result<Resolved> {
        let walk = self.walk(path, true)?;
        Ok(Resolved {
            path: walk.path(),
            meta: walk.meta,
        })
    }

    /// What is at `path` itself: a last component that is a symlink is not followed (those
    /// before it are, inside the root).
    pub fn lstat(&self, path: &str) -> io::Result<Meta> {
        Ok(self.walk(path, false)?.meta)
    }

    /// The names in the directory at `path` (UTF-8 ones: others cannot be named by a
    /// script or a path in a report anyway), at most `limit` of them; and whether there
    /// were more.
    pub fn read_dir(&self, path: &str, limit: usize) -> io::Result<(Vec<String>, bool)> {
        let opened = self.open_any(path)?;
        if !opened.meta.is_dir() {
            return Err(io::Error::from(io::ErrorKind::NotADirectory));
        }
        let mut dir = Dir::new(OwnedFd::from(opened.file))?;
        let mut names = Vec::new();
        let mut more = false;
        while let Some(entry) = dir.read() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            if names.len() == limit {
                more = true;
                break;
            }
            names.push(name.to_string());
        }
        Ok((names, more))
    }

    fn open_by_kernel(&self, path: &str) -> Result<OwnedFd, Errno> {
        let relative = relative(path);
        let mut tries = 0;
        loop {
            match openat2(
                &self.fd,
                relative,
                READ,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Err(Errno::AGAIN) if tries < EAGAIN_RETRIES => tries += 1,
                other => return other,
            }
        }
    }

    fn open_by_walk(&self, path: &str) -> io::Result<OwnedFd> {
        let walk = self.walk(path, true)?;
        let fd = match &walk.leaf {
            Some((name, _)) => openat(
                walk.dir(&self.fd),
                name.as_str(),
                READ | OFlags::NOFOLLOW,
                Mode::empty(),
            )?,
            None => openat(
                walk.dir(&self.fd),
                ".",
                READ | OFlags::DIRECTORY,
                Mode::empty(),
            )?,
        };
        if let Ok(meta) = Meta::of(&fd) {
            if (meta.dev, meta.ino) != (walk.meta.dev, walk.meta.ino) {
                return Err(refused(Refused::Changed));
            }
        }
        Ok(fd)
    }

    /// Resolves `path` one component at a time from the root (see the module's doc).
    fn walk(&self, path: &str, follow_last: bool) -> io::Result<Walk> {
        let mut walk = Walk {
            dirs: Vec::new(),
            leaf: None,
            meta: Meta::of(&self.fd)?,
        };
        let mut todo: Vec<String> = components(path).rev().map(str::to_string).collect();
        let mut hops = 0;
        let mut seen = 0usize;
        while let Some(name) = todo.pop() {
            seen += 1;
            if seen > MAX_WALK_COMPONENTS {
                return Err(Errno::NAMETOOLONG.into());
            }
            if walk.leaf.is_some() {
                // `file/x`, `file/..`: as the kernel, a file is no directory.
                return Err(Errno::NOTDIR.into());
            }
            match name.as_str() {
                "." => continue,
                ".." => {
                    walk.dirs.pop();
                    walk.meta = Meta::of(walk.dir(&self.fd))?;
                    continue;
                }
                _ => {}
            }
            let fd = openat(walk.dir(&self.fd), name.as_str(), PATH, Mode::empty())?;
            let meta = Meta::of(&fd)?;
            match meta.kind {
                Kind::Symlink if follow_last || !todo.is_empty() => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(Errno::LOOP.into());
                    }
                    let target = readlinkat(&fd, "", Vec::new())?;
                    let target = target.to_str().map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            "a symbolic link target is not UTF-8",
                        )
                    })?;
                    if target.starts_with('/') {
                        walk.dirs.clear();
                    }
                    todo.extend(components(target).rev().map(str::to_string));
                    walk.meta = Meta::of(walk.dir(&self.fd))?;
                }
                Kind::Dir => {
                    walk.dirs.push((name, fd));
                    walk.meta = meta;
                }
                _ => {
                    walk.leaf = Some((name, fd));
                    walk.meta = meta;
                }
            }
        }
        Ok(walk)
    }
}

/// Where a walk is: the directories below the root it went through (each held open), and
/// the last component when that is not a directory.
struct Walk {
    dirs: Vec<(String, OwnedFd)>,
    leaf: Option<(String, OwnedFd)>,
    /// Of the leaf, else of the last directory (or the root).
    meta: Meta,
}

impl Walk {
    /// The directory the walk is in (the leaf's parent).
    fn dir<'a>(&'a self, root: &'a OwnedFd) -> BorrowedFd<'a> {
        self.dirs.last().map_or(root.as_fd(), |(_, fd)| fd.as_fd())
    }

    fn path(&self) -> String {
        let names: Vec<&str> = self
            .dirs
            .iter()
            .chain(&self.leaf)
            .map(|(name, _)| name.as_str())
            .collect();
        format!("/{}", names.join("/"))
    }
}

fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

/// `path` relative to the root (`openat2` resolves absolute paths against the root too with
/// `RESOLVE_IN_ROOT`, but an empty path would be an error).
fn relative(path: &str) -> &str {
    match path.trim_start_matches('/') {
        "" => ".",
        rest => rest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::fs;
    use std::io::Read;
    use std::os::unix::fs::symlink;
    use std::time::{Duration, Instant};

    /// A root with files, symlinks that try to leave it, a FIFO, a socket; and next to it a
    /// file that must never be read through it.
    fn layout(name: &str) -> (TempDir, std::path::PathBuf) {
        let tmp = TempDir::new(name);
        let r = tmp.join("root");
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::create_dir_all(r.join("bin")).unwrap();
        fs::write(r.join("etc/passwd"), "inside\n").unwrap();
        fs::write(tmp.join("secret"), "outside\n").unwrap();
        fs::write(r.join("bin/busybox"), "\x7fELF").unwrap();
        symlink("/bin/busybox", r.join("bin/sh")).unwrap();
        symlink("../../../../../../../../etc/passwd", r.join("bin/up")).unwrap();
        symlink(tmp.join("secret"), r.join("bin/abs")).unwrap();
        symlink("../secret", r.join("rel")).unwrap();
        symlink("/proc/self/root/etc/passwd", r.join("magic")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.join("fifo"),
            FileType::Fifo,
            Mode::from_bits_truncate(0o644),
            0,
        )
        .unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(r.join("socket")).unwrap();
        (tmp, r)
    }

    fn read(root: &Root, path: &str) -> io::Result<String> {
        let mut text = String::new();
        root.open_file(path)?.file.read_to_string(&mut text)?;
        Ok(text)
    }

    fn both(name: &str, check: impl Fn(&Root)) {
        let (_tmp, r) = layout(name);
        check(&Root::open(&r).unwrap());
        check(&Root::open_walk_only(&r).unwrap());
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        both("confined-links", |root| {
            assert_eq!(read(root, "/etc/passwd").unwrap(), "inside\n");
            assert_eq!(read(root, "etc/../etc/./passwd").unwrap(), "inside\n");
            // `..` stops at the root: the root's own /etc/passwd.
            assert_eq!(read(root, "/bin/up").unwrap(), "inside\n");
            assert_eq!(read(root, "/../../etc/passwd").unwrap(), "inside\n");
            // An absolute target is a path inside the root, where it does not exist.
            let e = read(root, "/bin/abs").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
            let e = read(root, "/rel").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
            assert_eq!(read(root, "/bin/sh").unwrap(), "\x7fELF");
            // Through the container's /proc (magic links) never.
            assert!(read(root, "/magic").is_err());
            assert!(read(root, "/loop").is_err());
            let e = read(root, "/etc/passwd/x").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotADirectory, "{e}");
        });
    }

    #[test]
    fn fifos_sockets_and_directories_are_refused_without_blocking() {
        both("confined-kinds", |root| {
            let started = Instant::now();
            for path in ["/fifo", "/etc"] {
                let e = root.open_file(path).unwrap_err();
                assert!(is_refused(&e), "{path}: {e}");
            }
            // The kernel itself refuses to open a socket (ENXIO).
            assert!(root.open_file("/socket").is_err());
            let e = root.open_any("/fifo").unwrap_err();
            assert!(e.to_string().contains("FIFO"), "{e}");
            assert!(root.open_any("/socket").is_err());
            assert!(root.open_any("/etc").unwrap().meta.is_dir());
            assert!(root.open_any("/").unwrap().meta.is_dir());
            assert!(started.elapsed() < Duration::from_secs(5));
        });
    }

    #[test]
    fn resolve_names_the_path_inside_the_root() {
        both("confined-resolve", |root| {
            let r = root.resolve("/bin/sh").unwrap();
            assert_eq!(r.path, "/bin/busybox");
            assert!(r.meta.is_file());
            assert_eq!(root.resolve("/bin/up").unwrap().path, "/etc/passwd");
            assert_eq!(root.resolve("/").unwrap().path, "/");
            assert_eq!(root.resolve("/bin/..").unwrap().path, "/");
            assert_eq!(root.lstat("/bin/sh").unwrap().kind, Kind::Symlink);
            assert_eq!(root.lstat("/fifo").unwrap().kind, Kind::Other);
            let opened = root.open_resolved(&r).unwrap();
            assert!(opened.meta.is_file());
            // A file replaced since it was resolved is not opened as the resolved one.
            let passwd = root.resolve("/etc/passwd").unwrap();
            let stale = Resolved {
                path: "/bin/busybox".to_string(),
                meta: passwd.meta,
            };
            assert!(is_refused(&root.open_resolved(&stale).unwrap_err()));
        });
    }

    #[test]
    fn read_dir_is_capped() {
        both("confined-dir", |root| {
            let (mut names, more) = root.read_dir("/", 100).unwrap();
            names.sort();
            assert_eq!(
                names,
                ["bin", "etc", "fifo", "loop", "magic", "rel", "socket"]
            );
            assert!(!more);
            let (names, more) = root.read_dir("/", 2).unwrap();
            assert_eq!(names.len(), 2);
            assert!(more);
            // Through a symlink, inside the root.
            let (names, _) = root.read_dir("/bin/../etc", 10).unwrap();
            assert_eq!(names, ["passwd"]);
        });
    }
}
