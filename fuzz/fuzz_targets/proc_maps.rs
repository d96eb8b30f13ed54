//! `/proc/<pid>/maps` of a hostile process: the streaming reader (in chunks of any size, under
//! caps) agrees with the whole-text parser, and a cap makes the result partial, never wrong.
#![no_main]

use std::io::{self, Read};

use libfuzzer_sys::fuzz_target;
use zastava_observer::maps::{parse_maps, read_maps, MapsCaps};

/// Hands out the input a few bytes at a time, as a pipe or a procfs file may.
struct Chunks<'a> {
    data: &'a [u8],
    size: usize,
}

impl Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&size, data)) = input.split_first() else {
        return;
    };
    let whole = parse_maps(data);
    let unbounded = MapsCaps {
        max_bytes: u64::MAX,
        max_lines: usize::MAX,
        max_line_bytes: usize::MAX,
    };
    let streamed = read_maps(
        Chunks {
            data,
            size: usize::from(size % 16) + 1,
        },
        &unbounded,
    )
    .unwrap();
    assert_eq!(streamed, whole);

    let caps = MapsCaps {
        max_bytes: 512,
        max_lines: 6,
        max_line_bytes: 120,
    };
    let capped = read_maps(data, &caps).unwrap();
    assert!(capped.lines <= caps.max_lines);
    assert!(capped.files.len() <= whole.files.len());
    if capped.partial {
        assert!(capped.warnings.iter().any(|w| w.ends_with("(cap)")));
    } else {
        assert_eq!(capped, whole);
    }
});
