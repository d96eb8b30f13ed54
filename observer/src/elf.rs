//! ELF identification: is a file ELF, and its GNU build-id (`NT_GNU_BUILD_ID`).
//!
//! Reads only what it needs with positioned reads (header, program/section header tables,
//! note segments, each bounded), so a 1 GiB library costs a few KiB, and a truncated or hostile
//! file gives an error, never a panic or a huge allocation.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use goblin::container::{Container, Ctx};
use goblin::elf::header::{header64::SIZEOF_EHDR, Header};
use goblin::elf::note::{NoteDataIterator, NT_GNU_BUILD_ID};
use goblin::elf::program_header::{ProgramHeader, PT_NOTE};
use goblin::elf::section_header::{SectionHeader, SHT_NOTE};

use crate::error::{Error, Result};

/// The ELF magic bytes.
pub const ELF_MAGIC: [u8; 4] = *b"\x7fELF";
/// Largest header table read (program or section headers): 4 MiB.
const MAX_TABLE_BYTES: u64 = 4 << 20;
/// Largest note segment/section read: 1 MiB (build-id notes are 36 bytes).
const MAX_NOTE_BYTES: u64 = 1 << 20;

/// What an ELF inspection found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfInfo {
    /// The file starts with the ELF magic.
    pub is_elf: bool,
    /// Lower-case hex GNU build-id, when the file is ELF and has one.
    pub build_id: Option<String>,
}

/// True when the file starts with the ELF magic (files shorter than 4 bytes are not ELF).
pub fn is_elf(file: &File) -> io::Result<bool> {
    let mut magic = [0u8; 4];
    let n = read_at_most(file, &mut magic, 0)?;
    Ok(n == magic.len() && magic == ELF_MAGIC)
}

/// The GNU build-id of an ELF file, lower-case hex. `Ok(None)` for a non-ELF file or an ELF
/// file without a build-id note; `Err(MalformedElf)` when the ELF structures are cut short or
/// inconsistent (e.g. a truncated copy), `Err(Io)` when reading fails.
pub fn build_id(file: &File) -> Result<Option<String>> {
    Ok(inspect(file)?.build_id)
}

/// [`build_id`] of the file at `path`.
pub fn build_id_of_path(path: &Path) -> Result<Option<String>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    build_id(&file).map_err(|e| with_path(e, path))
}

/// Whether the file is ELF and its build-id. See [`build_id`] for the error cases.
pub fn inspect(file: &File) -> Result<ElfInfo> {
    let io_err = |e: io::Error| Error::io("<elf>", e);
    let mut ehdr = [0u8; SIZEOF_EHDR];
    let n = read_at_most(file, &mut ehdr, 0).map_err(io_err)?;
    if n < 4 || ehdr[..4] != ELF_MAGIC {
        return Ok(ElfInfo {
            is_elf: false,
            build_id: None,
        });
    }
    let header = goblin::elf::Elf::parse_header(&ehdr[..n])
        .map_err(|e| Error::MalformedElf(format!("ELF header: {e}")))?;
    let container = header
        .container()
        .map_err(|e| Error::MalformedElf(format!("ELF class: {e}")))?;
    let endian = header
        .endianness()
        .map_err(|e| Error::MalformedElf(format!("ELF data encoding: {e}")))?;
    let ctx = Ctx::new(container, endian);
    let file_size = file.metadata().map_err(io_err)?.len();

    // Build-ids live in a PT_NOTE segment of every linked file; relocatable objects and odd
    // files only have SHT_NOTE sections, so those are the fallback.
    let mut found = notes_in_segments(file, &header, ctx, file_size)?;
    if found.is_none() {
        found = notes_in_sections(file, &header, ctx, file_size)?;
    }
    Ok(ElfInfo {
        is_elf: true,
        build_id: found,
    })
}

fn notes_in_segments(
    file: &File,
    header: &Header,
    ctx: Ctx,
    file_size: u64,
) -> Result<Option<String>> {
    let count = usize::from(header.e_phnum);
    if count == 0 || header.e_phoff == 0 {
        return Ok(None);
    }
    let entry = phdr_size(ctx.container);
    if usize::from(header.e_phentsize) != entry {
        return Err(Error::MalformedElf(format!(
            "program header entry size {} (expected {entry})",
            header.e_phentsize
        )));
    }
    let table = read_range(
        file,
        header.e_phoff,
        (count * entry) as u64,
        file_size,
        "program headers",
    )?;
    let phdrs = ProgramHeader::parse(&table, 0, count, ctx)
        .map_err(|e| Error::MalformedElf(format!("program headers: {e}")))?;
    for phdr in phdrs.iter().filter(|p| p.p_type == PT_NOTE) {
        let data = read_range(
            file,
            phdr.p_offset,
            phdr.p_filesz.min(MAX_NOTE_BYTES),
            file_size,
            "note segment",
        )?;
        if let Some(id) = find_build_id(&data, phdr.p_align, ctx)? {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

fn notes_in_sections(
    file: &File,
    header: &Header,
    ctx: Ctx,
    file_size: u64,
) -> Result<Option<String>> {
    if header.e_shoff == 0 {
        return Ok(None);
    }
    let entry = shdr_size(ctx.container);
    if usize::from(header.e_shentsize) != entry {
        return Err(Error::MalformedElf(format!(
            "section header entry size {} (expected {entry})",
            header.e_shentsize
        )));
    }
    let mut count = u64::from(header.e_shnum);
    if count == 0 {
        // More than SHN_LORESERVE sections: the count is in section 0's sh_size.
        let first = read_range(
            file,
            header.e_shoff,
            entry as u64,
            file_size,
            "section headers",
        )?;
        let first = SectionHeader::parse_from(&first, 0, 1, ctx)
            .map_err(|e| Error::MalformedElf(format!("section headers: {e}")))?;
        count = first.first().map_or(0, |s| s.sh_size);
    }
    if count == 0 {
        return Ok(None);
    }
    let len = count.saturating_mul(entry as u64);
    let table = read_range(file, header.e_shoff, len, file_size, "section headers")?;
    let shdrs = SectionHeader::parse_from(&table, 0, count as usize, ctx)
        .map_err(|e| Error::MalformedElf(format!("section headers: {e}")))?;
    for shdr in shdrs.iter().filter(|s| s.sh_type == SHT_NOTE) {
        let data = read_range(
            file,
            shdr.sh_offset,
            shdr.sh_size.min(MAX_NOTE_BYTES),
            file_size,
            "note section",
        )?;
        if let Some(id) = find_build_id(&data, shdr.sh_addralign, ctx)? {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Looks for a `GNU` `NT_GNU_BUILD_ID` note in the bytes of one note segment/section.
fn find_build_id(data: &[u8], align: u64, ctx: Ctx) -> Result<Option<String>> {
    // goblin accepts alignments 4 and 8 (0 and 1 mean 4, as in readelf).
    let align = match align {
        0..=4 => 4,
        8 => 8,
        other => {
            return Err(Error::MalformedElf(format!(
                "note alignment {other} (expected 4 or 8)"
            )))
        }
    };
    let notes = NoteDataIterator {
        data,
        size: data.len(),
        offset: 0,
        ctx: (align, ctx),
    };
    for note in notes {
        let note = note.map_err(|e| Error::MalformedElf(format!("note: {e}")))?;
        if note.n_type == NT_GNU_BUILD_ID && note.name == "GNU" && !note.desc.is_empty() {
            return Ok(Some(hex::encode(note.desc)));
        }
    }
    Ok(None)
}

fn phdr_size(container: Container) -> usize {
    match container {
        Container::Little => goblin::elf::program_header::program_header32::SIZEOF_PHDR,
        Container::Big => goblin::elf::program_header::program_header64::SIZEOF_PHDR,
    }
}

fn shdr_size(container: Container) -> usize {
    match container {
        Container::Little => goblin::elf::section_header::section_header32::SIZEOF_SHDR,
        Container::Big => goblin::elf::section_header::section_header64::SIZEOF_SHDR,
    }
}

/// Reads exactly `len` bytes at `offset`, which must lie inside the file.
fn read_range(file: &File, offset: u64, len: u64, file_size: u64, what: &str) -> Result<Vec<u8>> {
    let end = offset.checked_add(len).filter(|&end| end <= file_size);
    if end.is_none() {
        return Err(Error::MalformedElf(format!(
            "{what} at offset {offset} (+{len} bytes) lie beyond the end of the file \
             ({file_size} bytes): truncated?"
        )));
    }
    if len > MAX_TABLE_BYTES {
        return Err(Error::MalformedElf(format!(
            "{what}: {len} bytes is more than the {MAX_TABLE_BYTES} bytes read at most"
        )));
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::MalformedElf(format!("{what}: file ends early: truncated?"))
        } else {
            Error::io("<elf>", e)
        }
    })?;
    Ok(buf)
}

/// Reads up to `buf.len()` bytes at `offset`; fewer only at end of file.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Puts the real path into an I/O error raised on an already opened file.
pub(crate) fn with_path(err: Error, path: &Path) -> Error {
    match err {
        Error::Io { cause, .. } => Error::io(path, cause),
        other => other,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;
    use std::process::Command;

    use crate::testutil::TempDir;

    /// The build-id `readelf -n` prints for `path` (binutils must be installed).
    pub(crate) fn readelf_build_id(path: &Path) -> Option<String> {
        let out = Command::new("readelf")
            .arg("-n")
            .arg(path)
            .output()
            .expect("`readelf` is needed by these tests: install binutils");
        assert!(out.status.success(), "readelf -n {}", path.display());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_string))
    }

    pub(crate) fn real_elf_files() -> Vec<&'static Path> {
        let files: Vec<&Path> = [
            "/bin/true",
            "/bin/sh",
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib/aarch64-linux-gnu/libc.so.6",
            "/lib64/ld-linux-x86-64.so.2",
        ]
        .into_iter()
        .map(Path::new)
        .filter(|p| p.exists())
        .collect();
        assert!(
            files.len() >= 3,
            "expected /bin/true, /bin/sh and a libc.so.6: {files:?}"
        );
        files
    }

    #[test]
    fn build_ids_match_readelf() {
        for path in real_elf_files() {
            let expected = readelf_build_id(path);
            assert!(
                expected.is_some(),
                "readelf shows no build-id for {}",
                path.display()
            );
            let got = build_id_of_path(path).unwrap();
            assert_eq!(got, expected, "{}", path.display());
            let id = got.unwrap();
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
    }

    #[test]
    fn own_test_binary_matches_readelf_too() {
        // Rust links with --build-id: a PIE with many sections.
        let me = std::env::current_exe().unwrap();
        assert_eq!(build_id_of_path(&me).unwrap(), readelf_build_id(&me));
    }

    #[test]
    fn is_elf_on_real_files() {
        assert!(is_elf(&File::open("/bin/true").unwrap()).unwrap());
        assert!(!is_elf(&File::open("/etc/hostname").unwrap()).unwrap());
        assert!(!is_elf(&File::open("/etc/passwd").unwrap()).unwrap());
    }

    fn temp_file(dir: &TempDir, name: &str, bytes: &[u8]) -> (std::path::PathBuf, File) {
        let path = dir.join(name);
        let mut f = File::create(&path).unwrap();
        f.write_all(bytes).unwrap();
        drop(f);
        let f = File::open(&path).unwrap();
        (path, f)
    }

    #[test]
    fn non_elf_and_short_files_have_no_build_id() {
        let dir = TempDir::new("elf-non");
        for (name, bytes) in [
            ("empty", &b""[..]),
            ("three", b"\x7fEL"),
            ("script", b"#!/bin/sh\necho hi\n"),
        ] {
            let (_, f) = temp_file(&dir, name, bytes);
            assert!(!is_elf(&f).unwrap(), "{name}");
            assert_eq!(build_id(&f).unwrap(), None, "{name}");
            assert_eq!(
                inspect(&f).unwrap(),
                ElfInfo {
                    is_elf: false,
                    build_id: None
                }
            );
        }
    }

    #[test]
    fn truncated_elf_is_a_clear_error_never_a_panic() {
        let dir = TempDir::new("elf-truncated");
        let libc = real_elf_files()
            .into_iter()
            .find(|p| p.to_string_lossy().contains("libc.so"))
            .unwrap();
        let bytes = std::fs::read(libc).unwrap();
        // Header only, header cut in half, and a cut just after the build-id note lives but
        // before the section table (segments still give the build-id).
        for (i, len) in [4usize, 32, 64, 100, 800, 4096].into_iter().enumerate() {
            let (_, f) = temp_file(&dir, &format!("trunc{i}"), &bytes[..len]);
            assert!(is_elf(&f).unwrap());
            match build_id(&f) {
                Ok(id) => assert_eq!(id, readelf_build_id(libc), "cut at {len}"),
                Err(Error::MalformedElf(msg)) => assert!(!msg.is_empty()),
                Err(other) => panic!("cut at {len}: unexpected {other}"),
            }
        }
        // Cut in the middle of the program headers: must be an error saying truncated.
        let (_, f) = temp_file(&dir, "trunc-phdr", &bytes[..100]);
        let err = build_id(&f).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn every_prefix_of_a_small_elf_is_handled() {
        let dir = TempDir::new("elf-every");
        let bytes = std::fs::read("/bin/true").unwrap();
        let (path, _) = temp_file(&dir, "prefix", b"");
        for len in (0..bytes.len().min(8192)).step_by(7) {
            std::fs::write(&path, &bytes[..len]).unwrap();
            let f = File::open(&path).unwrap();
            let _ = inspect(&f); // any Ok/Err, never a panic
        }
    }

    #[test]
    fn corrupted_headers_are_errors() {
        let dir = TempDir::new("elf-corrupted");
        let mut bytes = std::fs::read("/bin/true").unwrap();
        // e_phentsize (offset 54 in a 64-bit header) set to garbage.
        bytes[54] = 3;
        let (_, f) = temp_file(&dir, "bad-phentsize", &bytes);
        assert!(matches!(build_id(&f), Err(Error::MalformedElf(_))));
        // EI_CLASS invalid.
        let mut bytes = std::fs::read("/bin/true").unwrap();
        bytes[4] = 9;
        let (_, f) = temp_file(&dir, "bad-class", &bytes);
        assert!(matches!(build_id(&f), Err(Error::MalformedElf(_))));
    }

    #[test]
    fn missing_file_is_an_io_error_with_its_path() {
        let err = build_id_of_path(Path::new("/nonexistent/zastava")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/zastava"));
    }
}
