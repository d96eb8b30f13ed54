//! Image references of pod specs and registry entries of policies: any text parses or is
//! refused; a parsed reference prints as a reference that parses back to itself, and the
//! registry pattern of its own host and repository matches it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zastava_crds::image::{ImageReference, RegistryPattern};

fuzz_target!(|text: &str| {
    if let Ok(image) = ImageReference::parse(text) {
        let printed = image.to_string();
        assert_eq!(ImageReference::parse(&printed).as_ref(), Ok(&image), "{printed}");
        let tagged = ImageReference::parse(&image.tagged()).expect("tagged form parses");
        assert_eq!((&tagged.registry, &tagged.repository), (&image.registry, &image.repository));
        assert!(tagged.digest.is_none());
        let pinned = image.pinned(&format!("sha256:{}", "a".repeat(64)));
        assert!(ImageReference::parse(&pinned).is_ok(), "{pinned}");
        let own = format!("{}/{}", image.registry, image.repository);
        let pattern = RegistryPattern::parse(&own).expect("its own registry and repository");
        assert!(pattern.matches(&image), "{own}");
    }
    if let Ok(pattern) = RegistryPattern::parse(text) {
        assert!(RegistryPattern::parse(text).ok() == Some(pattern));
    }
});
