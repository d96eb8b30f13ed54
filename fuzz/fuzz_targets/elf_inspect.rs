//! ELF identification of files a workload maps or ships: any bytes are ELF or not, with a
//! lower-case hex build-id or none, or an error; never a panic or a large allocation.
#![no_main]

use std::fs::File;
use std::io::{Seek, Write};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use zastava_observer::elf::{inspect, is_elf, ELF_MAGIC};

/// One scratch file per fuzzing process, rewritten for every input (the inspector reads a
/// `File` with positioned reads, as it reads a container's).
fn scratch() -> &'static File {
    static FILE: OnceLock<File> = OnceLock::new();
    FILE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("zastava-fuzz-elf-{}", std::process::id()));
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let _ = std::fs::remove_file(&path);
        file
    })
}

fuzz_target!(|data: &[u8]| {
    let mut file = scratch();
    file.set_len(0).unwrap();
    file.rewind().unwrap();
    file.write_all(data).unwrap();
    let magic = data.starts_with(&ELF_MAGIC);
    assert_eq!(is_elf(file).unwrap(), magic);
    if let Ok(info) = inspect(file) {
        assert_eq!(info.is_elf, magic);
        if let Some(id) = info.build_id {
            assert!(magic);
            assert!(!id.is_empty() && id.len() % 2 == 0, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
    } else {
        assert!(magic, "a file without the magic is simply not ELF");
    }
});
