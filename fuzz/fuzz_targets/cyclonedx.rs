//! CycloneDX SBOMs from a registry: any text is an index or an error, never a panic, and only
//! a JSON object is a BOM.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zastava_observer::drift::parse_cyclonedx;

fuzz_target!(|text: &str| {
    match parse_cyclonedx(text) {
        Ok(index) => {
            assert!(
                text.trim_start_matches([' ', '\t', '\n', '\r'])
                    .starts_with('{'),
                "a BOM is a JSON object"
            );
            assert_eq!(parse_cyclonedx(text).ok(), Some(index));
        }
        Err(e) => assert!(e.to_string().len() < 512, "{e}"),
    }
});
