//! Where a registry request may go: the pure rules against server-side request forgery.
//!
//! A pod author chooses the registry, and the registry chooses where its redirects and its
//! token realm send the webhook next. Without rules, `127.0.0.1:PORT/x:y` or a redirect
//! turns the webhook into a client of internal services. So a redirect or a realm may lead to
//! a public address, or to one of the same class as the registry itself (a registry on a
//! private network legitimately redirects to blob storage next to it), or anywhere the
//! operator allowed with `--registry-allow-internal-targets`; never from HTTPS to plain HTTP,
//! and never to a scheme other than the two.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reqwest::Url;

/// What kind of network an address is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressClass {
    Public,
    /// `127.0.0.0/8`, `::1`, and the unspecified addresses (`0.0.0.0/8`, `::`), which reach
    /// the local host too.
    Loopback,
    /// `169.254.0.0/16` (cloud metadata services live here), `fe80::/10`.
    LinkLocal,
    /// RFC 1918, shared address space `100.64.0.0/10`, unique local `fc00::/7`, and what is
    /// not routable on the internet (multicast, broadcast, reserved, IETF protocol
    /// assignments `192.0.0.0/24`, benchmarking `198.18.0.0/15`, documentation
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24` and `2001:db8::/32`): whoever
    /// answers there is on a network of its own, not the internet.
    Private,
}

pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() || a == 0 {
        AddressClass::Loopback
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_private()
        || (a == 100 && (64..128).contains(&b))
        || (a, b, c) == (192, 0, 0)
        || (a == 198 && (b == 18 || b == 19))
        || ip.is_documentation()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a >= 240
    {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let first = ip.segments()[0];
    if ip.is_loopback() || ip.is_unspecified() {
        AddressClass::Loopback
    } else if first & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if first & 0xfe00 == 0xfc00 || ip.is_multicast() || ip.segments()[..2] == [0x2001, 0xdb8]
    {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

/// The class of a URL host when the host alone tells it (an IP literal, `localhost`); `None`
/// for names, whose addresses the resolver checks when connecting.
pub fn host_class(host: &str) -> Option<AddressClass> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(classify(ip));
    }
    let name = bare.trim_end_matches('.').to_ascii_lowercase();
    (name == "localhost" || name.ends_with(".localhost")).then_some(AddressClass::Loopback)
}

/// Why a redirect or realm was not followed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("from HTTPS to plain HTTP")]
    Downgrade,
    #[error("to a scheme other than HTTP(S)")]
    Scheme,
    #[error("to a {0:?} address while the registry is not on one")]
    Internal(AddressClass),
    #[error("more redirects than allowed")]
    TooManyRedirects,
}

/// What the rules compare a destination with.
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    /// The class of the registry's own address.
    pub registry: AddressClass,
    /// The operator allows internal destinations (`--registry-allow-internal-targets`).
    pub allow_internal: bool,
}

impl Origin {
    /// Whether an address of `class` may be connected to.
    pub fn permits(&self, class: AddressClass) -> bool {
        class == AddressClass::Public || self.allow_internal || class == self.registry
    }

    /// Whether the webhook may go from `from` to `to` (a redirect's `Location`, a token
    /// realm). Hosts given by name pass here as public; the resolver then refuses to connect
    /// to what they resolve to unless [`permits`](Self::permits) agrees.
    pub fn check(&self, from: &Url, to: &Url) -> Result<(), Refusal> {
        match (from.scheme(), to.scheme()) {
            (_, "https") | ("http", "http") => {}
            ("https", "http") => return Err(Refusal::Downgrade),
            _ => return Err(Refusal::Scheme),
        }
        let class = to
            .host_str()
            .and_then(host_class)
            .unwrap_or(AddressClass::Public);
        if self.permits(class) {
            Ok(())
        } else {
            Err(Refusal::Internal(class))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn addresses_are_classified() {
        let class = |s: &str| classify(s.parse().unwrap());
        for ip in [
            "127.0.0.1",
            "127.0.0.2",
            "0.0.0.0",
            "::1",
            "::",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(class(ip), AddressClass::Loopback, "{ip}");
        }
        for ip in ["169.254.169.254", "fe80::1", "::ffff:169.254.1.1"] {
            assert_eq!(class(ip), AddressClass::LinkLocal, "{ip}");
        }
        for ip in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "100.64.0.1",
            "fd00::1",
            "fc00::2",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.8",
            "192.0.2.2",
            "198.18.0.1",
            "198.19.255.254",
            "198.51.100.7",
            "203.0.113.9",
            "2001:db8::1",
        ] {
            assert_eq!(class(ip), AddressClass::Private, "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.3.1",
            "198.20.0.1",
            "2001:4860::8888",
            "2001:db9::1",
        ] {
            assert_eq!(class(ip), AddressClass::Public, "{ip}");
        }
        assert_eq!(host_class("[::1]"), Some(AddressClass::Loopback));
        assert_eq!(host_class("LOCALHOST."), Some(AddressClass::Loopback));
        assert_eq!(host_class("registry.example.com"), None);
    }

    #[test]
    fn destinations_follow_the_registry_class() {
        let public = Origin {
            registry: AddressClass::Public,
            allow_internal: false,
        };
        let from = url("https://ghcr.io/v2/x/manifests/y");
        assert_eq!(
            public.check(
                &from,
                &url("https://pkg-containers.githubusercontent.com/b")
            ),
            Ok(())
        );
        assert_eq!(public.check(&from, &url("https://8.8.8.8/b")), Ok(()));
        for (to, class) in [
            ("https://127.0.0.1:9000/", AddressClass::Loopback),
            ("https://localhost/", AddressClass::Loopback),
            ("https://[::1]/", AddressClass::Loopback),
            ("https://0.0.0.0/", AddressClass::Loopback),
            (
                "https://169.254.169.254/latest/meta-data",
                AddressClass::LinkLocal,
            ),
            ("https://10.0.0.1/token", AddressClass::Private),
            ("https://[fd00::1]/", AddressClass::Private),
        ] {
            assert_eq!(
                public.check(&from, &url(to)),
                Err(Refusal::Internal(class)),
                "{to}"
            );
        }
        assert_eq!(
            public.check(&from, &url("http://8.8.8.8/")),
            Err(Refusal::Downgrade)
        );
        assert_eq!(
            public.check(&from, &url("file:///etc/passwd")),
            Err(Refusal::Scheme)
        );

        // A registry on loopback may send the webhook to loopback, not to another class.
        let local = Origin {
            registry: AddressClass::Loopback,
            allow_internal: false,
        };
        let from = url("http://127.0.0.1:5000/v2/");
        assert_eq!(local.check(&from, &url("http://127.0.0.2:9000/")), Ok(()));
        assert_eq!(
            local.check(&from, &url("http://169.254.169.254/")),
            Err(Refusal::Internal(AddressClass::LinkLocal))
        );
        assert_eq!(
            local.check(&from, &url("http://10.1.2.3/")),
            Err(Refusal::Internal(AddressClass::Private))
        );
        // Plain HTTP only onwards from plain HTTP, never down from HTTPS.
        let from = url("https://127.0.0.1:5000/v2/");
        assert_eq!(
            local.check(&from, &url("http://127.0.0.1:9000/")),
            Err(Refusal::Downgrade)
        );

        // The operator's flag opens internal destinations, never the downgrade.
        let allowed = Origin {
            registry: AddressClass::Public,
            allow_internal: true,
        };
        let from = url("https://registry.example.com/v2/");
        assert_eq!(allowed.check(&from, &url("https://10.0.0.1/")), Ok(()));
        assert_eq!(
            allowed.check(&from, &url("https://169.254.169.254/")),
            Ok(())
        );
        assert_eq!(
            allowed.check(&from, &url("http://10.0.0.1/")),
            Err(Refusal::Downgrade)
        );
        assert!(allowed.permits(AddressClass::Loopback));
        assert!(!public.permits(AddressClass::Private));
        assert!(local.permits(AddressClass::Loopback));
    }
}
