//! Image references as the container runtime normalizes them, and what a registry entry of a
//! policy matches.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

const DOCKER_HUB: &str = "docker.io";

static PATH_COMPONENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$").unwrap());
static HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]{1,5})?$").unwrap()
});
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$").unwrap());
static DIGEST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$").unwrap());

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
                if !DIGEST.is_match(digest) {
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
                if !TAG.is_match(tag) {
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
                if !HOST.is_match(first) {
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
            .find(|component| !PATH_COMPONENT.is_match(component))
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
        if !HOST.is_match(host) {
            return Err(ImageRefError::Host(host.to_string()));
        }
        if let Some(bad) = path
            .into_iter()
            .flat_map(|p| p.split('/'))
            .find(|component| !PATH_COMPONENT.is_match(component))
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
