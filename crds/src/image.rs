//! Image references as the container runtime normalizes them, and what a registry entry of a
//! policy matches.

use std::fmt;

const DOCKER_HUB: &str = "docker.io";

// The grammar of the distribution spec's references, as plain functions rather than regexes:
// the admission webhook parses every image of every review, and matching these four small
// languages by hand costs a fraction of a regex search. The tests check them against the
// spec's regular expressions.

/// `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
fn is_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let alnum_run = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && (b[*i].is_ascii_lowercase() || b[*i].is_ascii_digit()) {
            *i += 1;
        }
        *i > start
    };
    if !alnum_run(&mut i) {
        return false;
    }
    while i < b.len() {
        match b[i] {
            b'.' => i += 1,
            b'_' => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if !alnum_run(&mut i) {
            return false;
        }
    }
    true
}

/// DNS labels of letters, digits and inner hyphens, dot-separated, with an optional
/// `:port` of 1 to 5 digits.
fn is_host(s: &str) -> bool {
    let (name, port) = match s.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (s, None),
    };
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit()));
    port_ok
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            b.first().is_some_and(u8::is_ascii_alphanumeric)
                && b.last().is_some_and(u8::is_ascii_alphanumeric)
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=128).contains(&b.len())
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}`
fn is_digest(s: &str) -> bool {
    let Some((algorithm, encoded)) = s.split_once(':') else {
        return false;
    };
    let lower_alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let algorithm_ok = algorithm
        .split(['.', '+', '_', '-'])
        .all(|part| !part.is_empty() && part.bytes().all(lower_alnum));
    algorithm_ok
        && encoded.len() >= 32
        && encoded
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'=' | b'_' | b'-'))
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageRefError {
    #[error("empty image reference")]
    Empty,
    #[error("invalid registry host `{0}`")]
    Host(String),
    #[error("invalid repository path component `{0}` (lower-case letters, digits and separators)")]
    Path(String),
    #[error("invalid tag `{0}`")]
    Tag(String),
    #[error("invalid digest `{0}`")]
    Digest(String),
}

/// A fully qualified image reference: `busybox` is `docker.io/library/busybox:latest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageReference {
    /// Host with its port, if any (`docker.io`, `localhost:5000`).
    pub registry: String,
    /// Repository path (`library/busybox`).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageReference {
    pub fn parse(reference: &str) -> Result<Self, ImageRefError> {
        let reference = reference.trim();
        if reference.is_empty() {
            return Err(ImageRefError::Empty);
        }
        let (name_and_tag, digest) = match reference.split_once('@') {
            Some((name, digest)) => {
                if !is_digest(digest) {
                    return Err(ImageRefError::Digest(digest.to_string()));
                }
                (name, Some(digest.to_string()))
            }
            None => (reference, None),
        };
        // A ':' after the last '/' separates the tag; one before it is a registry port.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => {
                let (name, tag) = name_and_tag.split_at(last_slash + i);
                let tag = &tag[1..];
                if !is_tag(tag) {
                    return Err(ImageRefError::Tag(tag.to_string()));
                }
                (name, Some(tag.to_string()))
            }
            None => (name_and_tag, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !is_host(first) {
                    return Err(ImageRefError::Host(first.to_string()));
                }
                let host = first.to_ascii_lowercase();
                let host = if host == "index.docker.io" || host == "registry-1.docker.io" {
                    DOCKER_HUB.to_string()
                } else {
                    host
                };
                (host, rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if let Some(bad) = repository
            .split('/')
            .find(|component| !is_path_component(component))
        {
            return Err(ImageRefError::Path(bad.to_string()));
        }
        // The runtime pulls `:latest` when neither a tag nor a digest is given.
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository:tag`, the tag `latest` when the reference names none.
    pub fn tagged(&self) -> String {
        let tag = self.tag.as_deref().unwrap_or("latest");
        // `concat` rather than `format!`: the admission path builds these on every decision.
        [self.registry.as_str(), "/", &self.repository, ":", tag].concat()
    }

    /// `registry/repository@digest`: the image pinned to `digest`.
    pub fn pinned(&self, digest: &str) -> String {
        [self.registry.as_str(), "/", &self.repository, "@", digest].concat()
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// A registry entry of a policy: a host (with its port, if any) and an optional repository
/// path prefix that matches whole path components.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryPattern {
    host: String,
    path_prefix: Option<String>,
}

impl RegistryPattern {
    pub fn parse(entry: &str) -> Result<Self, ImageRefError> {
        let (host, path) = match entry.split_once('/') {
            Some((host, path)) => (host, Some(path)),
            None => (entry, None),
        };
        if !is_host(host) {
            return Err(ImageRefError::Host(host.to_string()));
        }
        if let Some(bad) = path
            .into_iter()
            .flat_map(|p| p.split('/'))
            .find(|component| !is_path_component(component))
        {
            return Err(ImageRefError::Path(bad.to_string()));
        }
        let host = host.to_ascii_lowercase();
        let host = if host == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            host
        };
        Ok(Self {
            host,
            path_prefix: path.map(str::to_string),
        })
    }

    pub fn matches(&self, image: &ImageReference) -> bool {
        if self.host != image.registry {
            return false;
        }
        match &self.path_prefix {
            None => true,
            Some(prefix) => image
                .repository
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    /// The grammar functions agree with the distribution spec's regular expressions on every
    /// string over an alphabet of the characters that matter, up to length 5, and on longer
    /// strings around the length limits.
    #[test]
    fn tagged_and_pinned_names_are_normalized() {
        let r = ImageReference::parse("busybox").unwrap();
        assert_eq!(r.tagged(), "docker.io/library/busybox:latest");
        assert_eq!(r.pinned("sha256:ab"), "docker.io/library/busybox@sha256:ab");
        let digest = format!("sha256:{}", "c".repeat(64));
        let r = ImageReference::parse(&format!("LOCALHOST:5000/a/b:v1@{digest}")).unwrap();
        assert_eq!(r.tagged(), "localhost:5000/a/b:v1");
        assert_eq!(r.pinned("sha256:ef"), "localhost:5000/a/b@sha256:ef");
    }

    #[test]
    fn grammar_functions_match_the_spec_regexes() {
        let path = Regex::new(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$").unwrap();
        let host = Regex::new(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]{1,5})?$").unwrap();
        let tag = Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$").unwrap();
        let digest = Regex::new(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$").unwrap();
        let check = |s: &str| {
            assert_eq!(is_path_component(s), path.is_match(s), "path {s:?}");
            assert_eq!(is_host(s), host.is_match(s), "host {s:?}");
            assert_eq!(is_tag(s), tag.is_match(s), "tag {s:?}");
        };
        let alphabet = ['a', 'Z', '0', '.', '_', '-', ':', '+', '/', ' ', 'é'];
        let mut words = vec![String::new()];
        for _ in 0..5 {
            words = words
                .iter()
                .flat_map(|w| alphabet.iter().map(move |c| format!("{w}{c}")))
                .collect();
            words.iter().for_each(|w| check(w));
        }
        for n in [127, 128, 129] {
            check(&"a".repeat(n));
            check(&format!("_{}", "b".repeat(n - 1)));
        }
        for port in ["", "1", "12345", "123456", "1a"] {
            check(&format!("registry.local:{port}"));
            check(&format!("localhost:{port}"));
        }
        let hex = "0123456789abcdef".repeat(4);
        for d in [
            format!("sha256:{hex}"),
            format!("sha256:{}", &hex[..31]),
            format!("sha256:{}", &hex[..32]),
            format!("sha256+b64u:{hex}="),
            format!("multihash+base58:{hex}"),
            format!("sha256:{hex}!"),
            format!("SHA256:{hex}"),
            format!("sha256::{hex}"),
            format!(":{hex}"),
            format!("sha256-:{hex}"),
            format!("a..b:{hex}"),
            "sha256".to_string(),
            String::new(),
        ] {
            assert_eq!(is_digest(&d), digest.is_match(&d), "digest {d:?}");
        }
    }

    fn parse(s: &str) -> ImageReference {
        ImageReference::parse(s).unwrap()
    }

    #[test]
    fn short_names_normalize_like_the_runtime() {
        assert_eq!(
            parse("busybox").to_string(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(parse("acme/app:1.2").to_string(), "docker.io/acme/app:1.2");
        assert_eq!(
            parse("index.docker.io/library/nginx").to_string(),
            "docker.io/library/nginx:latest"
        );
    }

    #[test]
    fn ports_are_part_of_the_registry_not_the_tag() {
        let r = parse("localhost:5000/zastava/busybox");
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "zastava/busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let r = parse("127.0.0.1:5000/app:v1");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.tag.as_deref(), Some("v1"));
    }

    #[test]
    fn digest_only_reference_has_no_implied_tag() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse(&format!("ghcr.io/acme/app@{d}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        let r = parse(&format!("ghcr.io/acme/app:1.0@{d}"));
        assert_eq!(r.tag.as_deref(), Some("1.0"));
    }

    #[test]
    fn malformed_references_are_rejected_with_the_part_named() {
        assert_eq!(ImageReference::parse(" "), Err(ImageRefError::Empty));
        assert_eq!(
            ImageReference::parse("ghcr.io/Acme/app"),
            Err(ImageRefError::Path("Acme".to_string()))
        );
        assert!(matches!(
            ImageReference::parse("app:bad tag"),
            Err(ImageRefError::Tag(_))
        ));
        assert!(matches!(
            ImageReference::parse("app@sha256:xyz"),
            Err(ImageRefError::Digest(_))
        ));
    }

    #[test]
    fn registry_entries_match_host_and_whole_path_components() {
        let hub = RegistryPattern::parse("docker.io").unwrap();
        assert!(hub.matches(&parse("busybox")));
        assert!(!hub.matches(&parse("ghcr.io/acme/app")));

        let acme = RegistryPattern::parse("ghcr.io/acme").unwrap();
        assert!(acme.matches(&parse("ghcr.io/acme/app:1")));
        assert!(acme.matches(&parse("ghcr.io/acme")));
        assert!(!acme.matches(&parse("ghcr.io/acme-evil/app:1")));

        let local = RegistryPattern::parse("localhost:5000").unwrap();
        assert!(local.matches(&parse("localhost:5000/zastava/busybox:1")));
        assert!(!local.matches(&parse("localhost:5001/zastava/busybox:1")));
        assert!(!local.matches(&parse("localhost/zastava/busybox:1")));
    }

    #[test]
    fn bad_registry_entries_are_rejected() {
        assert!(RegistryPattern::parse("not a host").is_err());
        assert!(RegistryPattern::parse("ghcr.io/Upper").is_err());
        assert!(RegistryPattern::parse("ghcr.io//x").is_err());
    }
}
