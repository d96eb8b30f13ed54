//! `/proc/<pid>/maps` → the set of files a process has mapped (its executable and DSOs).
//!
//! Hand-written rather than `procfs::process::MemoryMaps`, which (0.18) keeps the ` (deleted)`
//! suffix inside the path, trims trailing blanks that belong to a file name, fails the whole
//! file on one odd line, and panics on a file named like `/SYSVab` (it slices `[5..13]` of any
//! path starting with `/SYSV`) — a file a container can create and map to crash the observer.
//!
//! Line format (fs/proc/task_mmu.c `show_map_vma`):
//! `start-end perms offset major:minor inode<padding>name` where the name is empty for
//! anonymous memory, `[heap]`/`[stack]`/`[vdso]`/`[vvar]`/`[anon:…]` for pseudo mappings,
//! `anon_inode:…` for anonymous-inode files, and otherwise a path as the reader sees it, with
//! `\n` escaped as `\012` and ` (deleted)` appended once the file is unlinked.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::limits;

const DELETED_SUFFIX: &[u8] = b" (deleted)";

/// Access rights of one mapping (`rwxp` / `rwxs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub shared: bool,
}

/// What a mapping's name column denotes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapName {
    /// Anonymous memory (no name).
    Anonymous,
    /// A bracketed kernel name without brackets: `heap`, `stack`, `vdso`, `vvar`,
    /// `vsyscall`, `anon:<name>`, `stack:<tid>`, `uprobes`, ...
    Pseudo(String),
    /// `anon_inode:<name>` (eventfd, perf events, GPU buffers, ...), prefix removed.
    AnonInode(String),
    /// A SysV shared memory segment `/SYSV<key>` (always shown as deleted).
    SysvShm { key: u32 },
    /// Shared anonymous memory (`/dev/zero (deleted)`, `/anon_hugepage (deleted)`).
    SharedAnonymous,
    /// A `memfd_create(2)` file: `/memfd:<name>`; the name is kept without the prefix.
    Memfd(String),
    /// A file path (as seen from the process's root), unescaped, without ` (deleted)`.
    File(PathBuf),
}

/// One line of a maps file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapLine {
    pub start: u64,
    pub end: u64,
    pub perms: Perms,
    pub offset: u64,
    /// Device (major, minor) of the mapped inode.
    pub dev: (u32, u32),
    pub inode: u64,
    pub name: MapName,
    /// The name ended in ` (deleted)`: the file was unlinked after it was mapped.
    pub deleted: bool,
}

impl MapLine {
    /// The entry of this mapping under `/proc/<pid>/map_files/` (`%lx-%lx`, unpadded).
    pub fn map_files_name(&self) -> String {
        format!("{:x}-{:x}", self.start, self.end)
    }
}

/// What kind of file a [`MappedFile`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A file with a path in the process's filesystem.
    Regular,
    /// A `memfd_create(2)` file: exists only in memory, readable only via `map_files`.
    Memfd,
}

/// A file mapped by the process, once per distinct (path, device, inode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedFile {
    /// Path inside the process's root (for memfds: `/memfd:<name>`), without ` (deleted)`.
    pub path: PathBuf,
    pub kind: FileKind,
    /// Device (major, minor) from the maps line.
    pub dev: (u32, u32),
    pub inode: u64,
    /// The kernel reported the file as deleted (memfds always are).
    pub deleted: bool,
    /// At least one mapping of the file is executable: code (a DSO, the executable, JIT
    /// output), as opposed to data such as locale archives.
    pub executable: bool,
    /// The `map_files` entry name of the first mapping of the file.
    pub map_files_name: String,
}

/// The parsed maps file: its mapped files in order of first appearance (address order), and
/// what could not be parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessMaps {
    pub files: Vec<MappedFile>,
    pub warnings: Vec<String>,
    /// Lines read (parsed or not).
    pub lines: usize,
    /// A cap ([`MapsCaps`]) left lines unread or skipped: `files` is what the lines read list.
    pub partial: bool,
}

/// Why a maps line did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError(pub String);

/// How much of a maps file is read (defaults: [`crate::limits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapsCaps {
    pub max_bytes: u64,
    pub max_lines: usize,
    pub max_line_bytes: usize,
}

impl Default for MapsCaps {
    fn default() -> Self {
        MapsCaps {
            max_bytes: limits::MAX_MAPS_BYTES,
            max_lines: limits::MAX_MAPS_LINES,
            max_line_bytes: limits::MAX_MAPS_LINE_BYTES,
        }
    }
}

/// Warnings about unparsable lines kept (each quotes its line); the rest are counted.
const MAX_LINE_WARNINGS: usize = 16;

/// Parses a whole maps file (as bytes: paths need not be UTF-8). Lines that do not parse are
/// reported in `warnings` and skipped; they never fail the rest.
pub fn parse_maps(text: &[u8]) -> ProcessMaps {
    let mut maps = Builder::default();
    // A text of one newline is one (empty) line, as the streaming reader counts it (found by
    // fuzzing the two against each other).
    if !text.is_empty() {
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        for raw in text.split(|&b| b == b'\n') {
            maps.line(raw);
        }
    }
    maps.finish()
}

/// Reads and parses a maps file as it streams from `reader`, within `caps`: at most
/// `max_bytes` are read and `max_lines` parsed, and a line longer than `max_line_bytes` is
/// skipped without being held; what a cap left out makes the result `partial`, with a
/// warning saying which cap.
pub fn read_maps<R: Read>(mut reader: R, caps: &MapsCaps) -> io::Result<ProcessMaps> {
    let mut maps = Builder::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::new();
    // The line being read is longer than `max_line_bytes`: skipped, not held.
    let mut long = false;
    let mut skipped = 0usize;
    let mut total = 0u64;
    let mut capped = None;
    'read: loop {
        let left = caps.max_bytes.saturating_sub(total);
        // Once `max_bytes` are read, one byte more tells whether there was more.
        let want = match usize::try_from(left) {
            Ok(0) => 1,
            Ok(left) => left.min(buf.len()),
            Err(_) => buf.len(),
        };
        let n = read_some(&mut reader, &mut buf[..want])?;
        if n == 0 {
            break;
        }
        if left == 0 {
            capped = Some(format!("more than {} bytes", caps.max_bytes));
            break;
        }
        total += n as u64;
        for chunk in buf[..n].split_inclusive(|&b| b == b'\n') {
            if maps.lines >= caps.max_lines {
                capped = Some(format!("more than {} lines", caps.max_lines));
                break 'read;
            }
            let (bytes, ends) = match chunk.strip_suffix(b"\n") {
                Some(bytes) => (bytes, true),
                None => (chunk, false),
            };
            if !long && line.len() + bytes.len() > caps.max_line_bytes {
                long = true;
                line.clear();
            }
            if !long {
                line.extend_from_slice(bytes);
            }
            if ends {
                if long {
                    skipped += 1;
                    maps.lines += 1;
                    long = false;
                } else {
                    maps.line(&line);
                    line.clear();
                }
            }
        }
    }
    // A last line without its newline: whole if the file ended there, cut short if a cap did.
    if capped.is_none() {
        if long {
            skipped += 1;
            maps.lines += 1;
        } else if !line.is_empty() {
            maps.line(&line);
        }
    }
    let mut out = maps.finish();
    if skipped > 0 {
        out.partial = true;
        out.warnings.push(format!(
            "maps: {skipped} line(s) longer than {} bytes skipped (cap)",
            caps.max_line_bytes
        ));
    }
    if let Some(why) = capped {
        out.partial = true;
        out.warnings.push(format!(
            "maps: {why}: only the first {} lines are read (cap)",
            out.lines
        ));
    }
    Ok(out)
}

fn read_some<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[derive(Default)]
struct Builder {
    out: ProcessMaps,
    index: HashMap<(PathBuf, (u32, u32), u64), usize>,
    lines: usize,
    unparsed: usize,
}

impl Builder {
    fn line(&mut self, raw: &[u8]) {
        self.lines += 1;
        let n = self.lines;
        if raw.is_empty() {
            return;
        }
        let line = match parse_line(raw) {
            Ok(line) => line,
            Err(LineError(reason)) => {
                self.unparsed += 1;
                if self.out.warnings.len() < MAX_LINE_WARNINGS {
                    self.out.warnings.push(format!(
                        "maps line {n}: {reason}: {:?}",
                        String::from_utf8_lossy(&raw[..raw.len().min(256)])
                    ));
                }
                return;
            }
        };
        let (path, kind) = match &line.name {
            MapName::File(path) => (path.clone(), FileKind::Regular),
            MapName::Memfd(name) => (PathBuf::from(format!("/memfd:{name}")), FileKind::Memfd),
            _ => return,
        };
        let key = (path, line.dev, line.inode);
        match self.index.get(&key) {
            Some(&i) => {
                let file = &mut self.out.files[i];
                file.executable |= line.perms.exec;
                file.deleted |= line.deleted;
            }
            None => {
                self.index.insert(key.clone(), self.out.files.len());
                self.out.files.push(MappedFile {
                    path: key.0,
                    kind,
                    dev: line.dev,
                    inode: line.inode,
                    deleted: line.deleted,
                    executable: line.perms.exec,
                    map_files_name: line.map_files_name(),
                });
            }
        }
    }

    fn finish(mut self) -> ProcessMaps {
        let unlisted = self.unparsed.saturating_sub(MAX_LINE_WARNINGS);
        if unlisted > 0 {
            self.out
                .warnings
                .push(format!("maps: {unlisted} more lines did not parse"));
        }
        self.out.lines = self.lines;
        self.out
    }
}

/// Parses one maps line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<MapLine, LineError> {
    let mut rest = line;
    let range = next_field(&mut rest).ok_or_else(|| err("missing address range"))?;
    let perms = next_field(&mut rest).ok_or_else(|| err("missing permissions"))?;
    let offset = next_field(&mut rest).ok_or_else(|| err("missing offset"))?;
    let dev = next_field(&mut rest).ok_or_else(|| err("missing device"))?;
    let inode = next_field(&mut rest).ok_or_else(|| err("missing inode"))?;

    let (start, end) = split_pair(range, b'-').ok_or_else(|| err("bad address range"))?;
    let start = parse_hex_u64(start).ok_or_else(|| err("bad start address"))?;
    let end = parse_hex_u64(end).ok_or_else(|| err("bad end address"))?;
    let perms = parse_perms(perms).ok_or_else(|| err("bad permissions"))?;
    let offset = parse_hex_u64(offset).ok_or_else(|| err("bad offset"))?;
    let (major, minor) = split_pair(dev, b':').ok_or_else(|| err("bad device"))?;
    let major = parse_hex_u32(major).ok_or_else(|| err("bad device major"))?;
    let minor = parse_hex_u32(minor).ok_or_else(|| err("bad device minor"))?;
    let inode = std::str::from_utf8(inode)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| err("bad inode"))?;

    // The name follows padding blanks; a real path starts with '/', pseudo names never with a
    // blank, so only leading blanks are padding. Trailing blanks belong to the name.
    let name = trim_leading_blanks(rest);
    let name = name.strip_suffix(b"\r").unwrap_or(name);
    let (name, deleted) = match name.strip_suffix(DELETED_SUFFIX) {
        Some(stripped) if stripped.first() == Some(&b'/') => (stripped, true),
        _ => (name, false),
    };
    Ok(MapLine {
        start,
        end,
        perms,
        offset,
        dev: (major, minor),
        inode,
        name: classify(name, deleted),
        deleted,
    })
}

fn classify(name: &[u8], deleted: bool) -> MapName {
    if name.is_empty() {
        return MapName::Anonymous;
    }
    if name.first() == Some(&b'[') && name.last() == Some(&b']') && name.len() >= 2 {
        return MapName::Pseudo(String::from_utf8_lossy(&name[1..name.len() - 1]).into_owned());
    }
    if let Some(rest) = name.strip_prefix(b"anon_inode:") {
        return MapName::AnonInode(String::from_utf8_lossy(rest).into_owned());
    }
    if name.first() != Some(&b'/') {
        // Some other kernel-generated name (not a path).
        return MapName::Pseudo(String::from_utf8_lossy(name).into_owned());
    }
    if deleted {
        if let Some(hex) = name.strip_prefix(b"/SYSV") {
            if hex.len() == 8 {
                if let Some(key) = parse_hex_u32(hex) {
                    return MapName::SysvShm { key };
                }
            }
        }
        if name == b"/dev/zero" || name == b"/anon_hugepage" {
            return MapName::SharedAnonymous;
        }
        if let Some(rest) = name.strip_prefix(b"/memfd:") {
            return MapName::Memfd(String::from_utf8_lossy(&unescape(rest)).into_owned());
        }
    }
    MapName::File(PathBuf::from(OsStr::from_bytes(&unescape(name))))
}

/// Undoes the kernel's escaping of `\n` as `\012` in maps paths (`seq_file_path(m, f, "\n")`).
fn unescape(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        if name[i..].starts_with(b"\\012") {
            out.push(b'\n');
            i += 4;
        } else {
            out.push(name[i]);
            i += 1;
        }
    }
    out
}

fn err(reason: &str) -> LineError {
    LineError(reason.to_string())
}

fn trim_leading_blanks(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// Takes the next blank-separated field, leaving `rest` just after the one separator.
fn next_field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let s = trim_leading_blanks(rest);
    if s.is_empty() {
        return None;
    }
    let end = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
    let field = &s[..end];
    *rest = if end < s.len() {
        &s[end + 1..]
    } else {
        &s[end..]
    };
    Some(field)
}

fn split_pair(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&b| b == sep)?;
    Some((&s[..i], &s[i + 1..]))
}

fn parse_hex_u64(s: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

fn parse_hex_u32(s: &[u8]) -> Option<u32> {
    u32::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

fn parse_perms(s: &[u8]) -> Option<Perms> {
    let [r, w, x, p] = s else { return None };
    Some(Perms {
        read: flag(*r, b'r')?,
        write: flag(*w, b'w')?,
        exec: flag(*x, b'x')?,
        shared: match p {
            b's' => true,
            b'p' => false,
            _ => return None,
        },
    })
}

fn flag(c: u8, set: u8) -> Option<bool> {
    match c {
        b'-' => Some(false),
        c if c == set => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real-looking maps file of a shell in a container: executable, libc, loader, locale
    /// data, heap/stack/vdso/vvar, anonymous maps, a deleted library, a path with spaces, a
    /// memfd (JIT), an anon_inode mapping, SysV shm, shared anonymous memory, thread stacks
    /// and named anonymous memory.
    const MAPS: &str = "\
00400000-00401000 r--p 00000000 00:2f 1048663                            /usr/local/bin/app
00401000-00452000 r-xp 00001000 00:2f 1048663                            /usr/local/bin/app
55cf7f887000-55cf7f8a8000 rw-p 00000000 00:00 0                          [heap]
7faec7bf6000-7faec7c18000 rw-p 00000000 00:00 0 
7faec7c18000-7faec7c6f000 r--p 00000000 fe:00 316534                     /usr/lib/locale/C.utf8/LC_CTYPE
7faec7c7b000-7faec7ca1000 r--p 00000000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6
7faec7ca1000-7faec7df7000 r-xp 00026000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6
7faec7df7000-7faec7e4a000 r--p 0017c000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6
7faec7e4a000-7faec7e4e000 r--p 001cf000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6
7faec7e4e000-7faec7e50000 rw-p 001d3000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6
7faec7e50000-7faec7e5d000 rw-p 00000000 00:00 0 
7faec8000000-7faec8021000 r-xp 00000000 fe:00 400001                     /opt/my app/lib plugin.so (deleted)
7faec8021000-7faec8022000 rw-p 00021000 fe:00 400001                     /opt/my app/lib plugin.so (deleted)
7faec8100000-7faec8200000 r-xs 00000000 00:01 2071                       /memfd:jit-code (deleted)
7faec8200000-7faec8300000 rw-s 00000000 00:01 2071                       /memfd:jit-code (deleted)
7faec8300000-7faec8301000 rw-s 00000000 00:0f 1060                       anon_inode:[eventfd]
7faec8301000-7faec8302000 rw-s 00000000 00:0f 1061                       anon_inode:i915.gem
7faec8400000-7faec8500000 rw-s 00000000 00:01 32770                      /SYSV0000162e (deleted)
7faec8500000-7faec8600000 rw-s 00000000 00:01 2080                       /dev/zero (deleted)
7faec8600000-7faec8601000 rw-p 00000000 00:00 0                          [anon:scudo:primary]
7faec8601000-7faec8602000 rw-p 00000000 00:00 0                          [stack:4242]
7faec8700000-7faec8701000 r-xp 00000000 fe:00 400002                     /weird\\012name.so
7faec8800000-7faec8801000 r-xp 00000000 fe:00 400003                     /SYSVab
7faec8900000-7faec8901000 r-xp 00000000 fe:00 400004                     /trailing blank 
7faec8e5e000-7faec8e65000 r--s 00000000 fe:00 325745                     /usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache
7faec8e68000-7faec8e6c000 r--p 00000000 00:00 0                          [vvar]
7faec8e6c000-7faec8e6e000 r-xp 00000000 00:00 0                          [vdso]
7faec8e6e000-7faec8e6f000 r--p 00000000 fe:00 326276                     /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
7faec8e6f000-7faec8e94000 r-xp 00001000 fe:00 326276                     /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
7ffd1c5f2000-7ffd1c613000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    fn paths(maps: &ProcessMaps) -> Vec<String> {
        maps.files
            .iter()
            .map(|f| f.path.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn lists_each_mapped_file_once_in_address_order() {
        let maps = parse_maps(MAPS.as_bytes());
        assert!(maps.warnings.is_empty(), "{:?}", maps.warnings);
        assert_eq!(
            paths(&maps),
            [
                "/usr/local/bin/app",
                "/usr/lib/locale/C.utf8/LC_CTYPE",
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                "/opt/my app/lib plugin.so",
                "/memfd:jit-code",
                "/weird\nname.so",
                "/SYSVab",
                "/trailing blank ",
                "/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache",
                "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            ]
        );
    }

    #[test]
    fn keeps_inode_device_and_first_range() {
        let maps = parse_maps(MAPS.as_bytes());
        let libc = &maps.files[2];
        assert_eq!(libc.inode, 326279);
        assert_eq!(libc.dev, (0xfe, 0));
        assert_eq!(libc.kind, FileKind::Regular);
        assert!(libc.executable && !libc.deleted);
        assert_eq!(libc.map_files_name, "7faec7c7b000-7faec7ca1000");
        // maps pads addresses to 8 digits, map_files does not.
        let app = &maps.files[0];
        assert_eq!((app.dev, app.inode), ((0, 0x2f), 1048663));
        assert_eq!(app.map_files_name, "400000-401000");
    }

    #[test]
    fn deleted_files_are_flagged_and_stripped() {
        let maps = parse_maps(MAPS.as_bytes());
        let plugin = &maps.files[3];
        assert_eq!(plugin.path, PathBuf::from("/opt/my app/lib plugin.so"));
        assert!(plugin.deleted && plugin.executable);
        let memfd = &maps.files[4];
        assert_eq!(memfd.kind, FileKind::Memfd);
        assert!(memfd.deleted && memfd.executable);
        assert_eq!(memfd.inode, 2071);
    }

    #[test]
    fn data_files_are_not_executable() {
        let maps = parse_maps(MAPS.as_bytes());
        let executable: Vec<bool> = maps.files.iter().map(|f| f.executable).collect();
        assert_eq!(
            executable,
            [true, false, true, true, true, true, true, true, false, true]
        );
    }

    #[test]
    fn classifies_pseudo_mappings() {
        let names: Vec<MapName> = MAPS
            .lines()
            .map(|l| parse_line(l.as_bytes()).unwrap().name)
            .collect();
        assert!(names.contains(&MapName::Anonymous));
        for pseudo in [
            "heap",
            "stack",
            "vdso",
            "vvar",
            "vsyscall",
            "anon:scudo:primary",
            "stack:4242",
        ] {
            assert!(names.contains(&MapName::Pseudo(pseudo.into())), "{pseudo}");
        }
        assert!(names.contains(&MapName::AnonInode("[eventfd]".into())));
        assert!(names.contains(&MapName::AnonInode("i915.gem".into())));
        assert!(names.contains(&MapName::SysvShm { key: 0x162e }));
        assert!(names.contains(&MapName::SharedAnonymous));
        assert!(names.contains(&MapName::Memfd("jit-code".into())));
    }

    #[test]
    fn parses_every_field_of_a_line() {
        let line = parse_line(
            b"7faec7e5e000-7faec7e65000 r--s 0017c000 fe:01 325745                     /a b",
        )
        .unwrap();
        assert_eq!(
            line,
            MapLine {
                start: 0x7faec7e5e000,
                end: 0x7faec7e65000,
                perms: Perms {
                    read: true,
                    write: false,
                    exec: false,
                    shared: true
                },
                offset: 0x17c000,
                dev: (0xfe, 1),
                inode: 325745,
                name: MapName::File("/a b".into()),
                deleted: false,
            }
        );
    }

    #[test]
    fn anonymous_line_without_trailing_blank_parses() {
        let line = parse_line(b"7faec7bf6000-7faec7c18000 rw-p 00000000 00:00 0").unwrap();
        assert_eq!(line.name, MapName::Anonymous);
    }

    #[test]
    fn non_utf8_paths_survive() {
        let mut raw = b"7f00-7f01 r-xp 00000000 08:01 77 /lib/caf\xe9.so".to_vec();
        let maps = parse_maps(&raw);
        assert_eq!(
            maps.files[0].path.as_os_str().as_bytes(),
            b"/lib/caf\xe9.so"
        );
        raw.extend_from_slice(b" (deleted)\n");
        assert!(parse_maps(&raw).files[0].deleted);
    }

    #[test]
    fn bad_lines_become_warnings_not_failures() {
        let text = b"garbage\n\
            7f00-7f01 r-xp 00000000 08:01 77 /lib/a.so\n\
            7f00-7f01 rwzp 00000000 08:01 78 /lib/b.so\n\
            7f00 r-xp 00000000 08:01 79 /lib/c.so\n\
            7f00-7f01 r-xp 00000000 0801 80 /lib/d.so\n\
            7f00-7f01 r-xp 00000000 08:01 -1 /lib/e.so\n\
            7f00-7f01 r-xp 00000000\n\
            \xff\xfe\n";
        let maps = parse_maps(text);
        assert_eq!(paths(&maps), ["/lib/a.so"]);
        assert_eq!(maps.warnings.len(), 7, "{:?}", maps.warnings);
        assert!(maps.warnings[0].starts_with("maps line 1: missing permissions"));
    }

    #[test]
    fn same_path_with_a_new_inode_is_a_different_file() {
        // A library replaced on disk and loaded again: the old copy shows as deleted.
        let text = b"7f00-7f01 r-xp 00000000 08:01 77 /lib/a.so (deleted)\n\
                     7f10-7f11 r-xp 00000000 08:01 99 /lib/a.so\n";
        let maps = parse_maps(text);
        assert_eq!(maps.files.len(), 2);
        assert!(maps.files[0].deleted && !maps.files[1].deleted);
    }

    #[test]
    fn fuzzish_inputs_never_panic() {
        let base = MAPS.as_bytes();
        for cut in 0..base.len().min(4096) {
            let _ = parse_maps(&base[..cut]);
        }
        for name in [
            "/SYSV",
            "/SYSV (deleted)",
            "/SYSVzzzzzzzz (deleted)",
            "[",
            "]",
            "[x",
            "/memfd:",
            "/memfd: (deleted)",
            " (deleted)",
            "anon_inode:",
            "\\012",
            "\\01",
        ] {
            let line = format!("7f00-7f01 r-xp 00000000 08:01 1 {name}");
            let _ = parse_line(line.as_bytes());
        }
    }

    /// A reader handing out a few bytes at a time, as `/proc` does.
    struct Dribble<'a>(&'a [u8], usize);

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(self.1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn streaming_reads_what_parsing_the_whole_file_does() {
        for step in [1, 7, 100, 1 << 20] {
            let read = read_maps(Dribble(MAPS.as_bytes(), step), &MapsCaps::default()).unwrap();
            assert_eq!(read, parse_maps(MAPS.as_bytes()), "{step}");
            assert!(!read.partial);
            assert_eq!(read.lines, MAPS.lines().count());
        }
        // Without a last newline, the last line still counts.
        let text = MAPS.trim_end();
        let read = read_maps(text.as_bytes(), &MapsCaps::default()).unwrap();
        assert_eq!(read.files, parse_maps(MAPS.as_bytes()).files);
    }

    #[test]
    fn empty_lines_count_the_same_streamed_or_whole() {
        for text in ["", "\n", "\n\n", "x", "x\n", "\nx"] {
            let read = read_maps(text.as_bytes(), &MapsCaps::default()).unwrap();
            assert_eq!(read, parse_maps(text.as_bytes()), "{text:?}");
        }
        assert_eq!(parse_maps(b"\n").lines, 1);
    }

    #[test]
    fn streaming_stops_at_its_caps_and_says_so() {
        let whole = parse_maps(MAPS.as_bytes());
        let caps = MapsCaps {
            max_lines: 5,
            ..MapsCaps::default()
        };
        let read = read_maps(Dribble(MAPS.as_bytes(), 13), &caps).unwrap();
        assert!(read.partial);
        assert_eq!(read.lines, 5);
        assert_eq!(
            paths(&read),
            ["/usr/local/bin/app", "/usr/lib/locale/C.utf8/LC_CTYPE"]
        );
        assert!(
            read.warnings
                .iter()
                .any(|w| w.contains("more than 5 lines")),
            "{:?}",
            read.warnings
        );
        // Exactly at the cap is not partial.
        let five: String = MAPS.lines().take(5).map(|l| format!("{l}\n")).collect();
        assert!(!read_maps(five.as_bytes(), &caps).unwrap().partial);

        // A byte cap in the middle of a line: that line is dropped, not parsed cut short.
        let cut = MAPS.find("libc.so.6").unwrap() as u64;
        let caps = MapsCaps {
            max_bytes: cut,
            ..MapsCaps::default()
        };
        let read = read_maps(MAPS.as_bytes(), &caps).unwrap();
        assert!(read.partial);
        assert!(
            !paths(&read).iter().any(|p| p.contains("libc")),
            "{:?}",
            paths(&read)
        );
        assert!(read
            .warnings
            .iter()
            .any(|w| w.contains(&format!("more than {cut} bytes"))));

        // An over-long line is skipped, the lines after it are read.
        let long = format!(
            "7f00-7f01 r-xp 00000000 fe:00 1 /{}\n{MAPS}",
            "x".repeat(20_000)
        );
        let read = read_maps(Dribble(long.as_bytes(), 4096), &MapsCaps::default()).unwrap();
        assert!(read.partial);
        assert_eq!(read.files, whole.files);
        assert!(
            read.warnings.iter().any(|w| w.contains("longer than")),
            "{:?}",
            read.warnings
        );
    }

    #[test]
    fn warnings_about_bad_lines_are_capped() {
        let bad = "garbage that is not a maps line\n".repeat(1000);
        let maps = parse_maps(bad.as_bytes());
        assert_eq!(maps.warnings.len(), MAX_LINE_WARNINGS + 1);
        assert!(maps.warnings.last().unwrap().contains("984 more"));
    }

    #[test]
    fn reads_this_process_maps() {
        let text = std::fs::read("/proc/self/maps").unwrap();
        let maps = parse_maps(&text);
        assert!(maps.warnings.is_empty(), "{:?}", maps.warnings);
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let me = maps
            .files
            .iter()
            .find(|f| f.path == exe)
            .expect("own executable");
        assert!(me.executable && me.inode != 0);
        assert!(maps
            .files
            .iter()
            .any(|f| f.path.to_string_lossy().contains("libc.so")));
    }
}
