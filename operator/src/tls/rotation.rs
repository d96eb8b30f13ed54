//! When certificates are renewed and which CAs the bundle carries, as pure decisions over what
//! the Secrets hold and the time.
//!
//! Rotation without downtime rests on three rules:
//! - a certificate is renewed two thirds into its lifetime, long before it expires;
//! - a new CA is published in the bundle (the webhook configuration's `caBundle` and the TLS
//!   Secret's `ca.crt`) before a serving certificate it signed replaces one that still works;
//! - the previous CA stays in the bundle until the serving certificate is re-issued by the new
//!   one and the webhook had time to load it.

use std::collections::BTreeSet;
use std::fmt;

use time::{Duration, OffsetDateTime};

use super::profile::{display_sans, display_time, CertInfo, San, BACKDATE};

/// How long the webhook is given to load a re-issued serving certificate from its Secret
/// before the CA that signed the previous one leaves the bundle.
pub const RELOAD_GRACE: Duration = Duration::minutes(2);

/// What a Secret held for one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed<T> {
    Missing,
    /// Present but unusable (garbage PEM, wrong key, ...): the message says why.
    Invalid(String),
    Present(T),
}

impl<T> Observed<T> {
    pub fn present(&self) -> Option<&T> {
        match self {
            Observed::Present(value) => Some(value),
            _ => None,
        }
    }

    /// The same observation of a part of the value.
    pub fn map<U>(&self, f: impl FnOnce(&T) -> U) -> Observed<U> {
        match self {
            Observed::Missing => Observed::Missing,
            Observed::Invalid(why) => Observed::Invalid(why.clone()),
            Observed::Present(value) => Observed::Present(f(value)),
        }
    }
}

/// The serving certificate in the TLS Secret, with what was checked against its key and CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServingCert {
    pub cert: CertInfo,
    /// `tls.key` is the private key of `cert`.
    pub key_matches: bool,
    /// `cert` is signed by the current CA.
    pub issued_by_current_ca: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Renewal {
    Keep { renew_at: OffsetDateTime },
    Renew(RenewReason),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenewReason {
    Missing,
    Invalid(String),
    KeyMismatch,
    /// Signed by another CA than the current one (the CA rotated or was replaced).
    CaRotated,
    SansChanged {
        have: BTreeSet<San>,
        want: BTreeSet<San>,
    },
    Expired {
        not_after: OffsetDateTime,
    },
    Due {
        renew_at: OffsetDateTime,
        not_after: OffsetDateTime,
    },
}

impl RenewReason {
    /// The `reason` label of the renewal metric.
    pub fn label(&self) -> &'static str {
        match self {
            RenewReason::Missing => "missing",
            RenewReason::Invalid(_) => "invalid",
            RenewReason::KeyMismatch => "key-mismatch",
            RenewReason::CaRotated => "ca-rotated",
            RenewReason::SansChanged { .. } => "sans-changed",
            RenewReason::Expired { .. } => "expired",
            RenewReason::Due { .. } => "due",
        }
    }

    /// The Event reason for this renewal.
    pub fn event_reason(&self) -> &'static str {
        match self {
            // The first certificate, or one whose Secret was deleted.
            RenewReason::Missing => "CertificateIssued",
            RenewReason::Invalid(_) => "CertificateInvalid",
            RenewReason::KeyMismatch => "CertificateKeyMismatch",
            RenewReason::CaRotated => "CertificateAuthorityChanged",
            RenewReason::SansChanged { .. } => "CertificateNamesChanged",
            RenewReason::Expired { .. } => "CertificateExpired",
            RenewReason::Due { .. } => "CertificateDueForRenewal",
        }
    }

    /// Whether something is wrong (a Warning Event) rather than routine (a Normal one).
    pub fn is_problem(&self) -> bool {
        matches!(
            self,
            RenewReason::Invalid(_) | RenewReason::KeyMismatch | RenewReason::Expired { .. }
        )
    }

    /// Whether the certificate being replaced still serves: then its replacement must wait
    /// until the CA that signs it is published, or the swap itself would break admission.
    pub fn current_still_serves(&self) -> bool {
        matches!(
            self,
            RenewReason::CaRotated | RenewReason::SansChanged { .. } | RenewReason::Due { .. }
        )
    }
}

impl fmt::Display for RenewReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenewReason::Missing => write!(f, "no certificate yet"),
            RenewReason::Invalid(why) => write!(f, "the stored certificate is unusable: {why}"),
            RenewReason::KeyMismatch => {
                write!(
                    f,
                    "the stored private key does not belong to the certificate"
                )
            }
            RenewReason::CaRotated => write!(f, "the certificate was not signed by the current CA"),
            RenewReason::SansChanged { have, want } => write!(
                f,
                "the certificate names [{}], expected [{}]",
                display_sans(have),
                display_sans(want)
            ),
            RenewReason::Expired { not_after } => {
                write!(f, "the certificate expired at {}", display_time(*not_after))
            }
            RenewReason::Due {
                renew_at,
                not_after,
            } => write!(
                f,
                "two thirds of the certificate's lifetime have passed ({}); it expires at {}",
                display_time(*renew_at),
                display_time(*not_after)
            ),
        }
    }
}

/// Two thirds into the lifetime of `cert`.
pub fn renewal_time(cert: &CertInfo) -> OffsetDateTime {
    cert.not_before + (cert.not_after - cert.not_before) * 2 / 3
}

/// Expired or due for renewal at `now`, if either.
pub fn expiry(now: OffsetDateTime, cert: &CertInfo) -> Option<RenewReason> {
    let renew_at = renewal_time(cert);
    if now >= cert.not_after {
        Some(RenewReason::Expired {
            not_after: cert.not_after,
        })
    } else if now >= renew_at {
        Some(RenewReason::Due {
            renew_at,
            not_after: cert.not_after,
        })
    } else {
        None
    }
}

/// Whether the serving certificate is kept or renewed, and why.
pub fn serving_renewal(
    now: OffsetDateTime,
    observed: &Observed<ServingCert>,
    expected_sans: &BTreeSet<San>,
) -> Renewal {
    let serving = match observed {
        Observed::Missing => return Renewal::Renew(RenewReason::Missing),
        Observed::Invalid(why) => return Renewal::Renew(RenewReason::Invalid(why.clone())),
        Observed::Present(serving) => serving,
    };
    if !serving.key_matches {
        return Renewal::Renew(RenewReason::KeyMismatch);
    }
    // An expired certificate is reported as such, whoever signed it.
    if let Some(reason @ RenewReason::Expired { .. }) = expiry(now, &serving.cert) {
        return Renewal::Renew(reason);
    }
    if !serving.issued_by_current_ca {
        return Renewal::Renew(RenewReason::CaRotated);
    }
    if &serving.cert.sans != expected_sans {
        return Renewal::Renew(RenewReason::SansChanged {
            have: serving.cert.sans.clone(),
            want: expected_sans.clone(),
        });
    }
    match expiry(now, &serving.cert) {
        Some(reason) => Renewal::Renew(reason),
        None => Renewal::Keep {
            renew_at: renewal_time(&serving.cert),
        },
    }
}

/// Whether replacing the serving certificate waits until the API server trusts the current
/// CA: only while the certificate being replaced still works (a routine renewal of a
/// certificate `trusted` by the bundle being published). One that is broken, or that the new
/// bundle no longer verifies, is replaced at once: waiting would only prolong the outage.
pub fn wait_for_publication(
    reason: &RenewReason,
    trusted: bool,
    current_ca_published: bool,
) -> bool {
    reason.current_still_serves() && trusted && !current_ca_published
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaRenewal {
    Keep {
        renew_at: OffsetDateTime,
    },
    /// Make a new CA; `keep_previous` when the old one still verifies the serving certificate
    /// it signed and so stays in the bundle for the rotation.
    Replace {
        reason: RenewReason,
        keep_previous: bool,
    },
}

/// Whether the CA is kept, rotated (the old one stays trusted meanwhile) or replaced outright
/// (missing, unusable or expired: nothing to keep).
pub fn ca_renewal(now: OffsetDateTime, observed: &Observed<CertInfo>) -> CaRenewal {
    let ca = match observed {
        Observed::Missing => {
            return CaRenewal::Replace {
                reason: RenewReason::Missing,
                keep_previous: false,
            }
        }
        Observed::Invalid(why) => {
            return CaRenewal::Replace {
                reason: RenewReason::Invalid(why.clone()),
                keep_previous: false,
            }
        }
        Observed::Present(ca) => ca,
    };
    match expiry(now, ca) {
        None => CaRenewal::Keep {
            renew_at: renewal_time(ca),
        },
        Some(reason) => CaRenewal::Replace {
            keep_previous: !matches!(reason, RenewReason::Expired { .. }),
            reason,
        },
    }
}

/// Until when the previous CA stays in the bundle: its own expiry, or, once the serving
/// certificate is signed by the current CA, [`RELOAD_GRACE`] after that certificate was
/// issued (its `notBefore` is backdated by at most [`BACKDATE`]).
pub fn previous_ca_retires_at(
    previous: &CertInfo,
    serving: Option<&ServingCert>,
) -> OffsetDateTime {
    match serving {
        Some(s) if s.issued_by_current_ca && s.key_matches => previous
            .not_after
            .min(s.cert.not_before + BACKDATE + RELOAD_GRACE),
        _ => previous.not_after,
    }
}

/// How long until the earliest of `deadlines` still ahead of `now`, at most `longest` and at
/// least a second (a deadline just passed is acted on by the pass that computed it).
pub fn next_check(
    now: OffsetDateTime,
    deadlines: impl IntoIterator<Item = OffsetDateTime>,
    longest: std::time::Duration,
) -> std::time::Duration {
    let soonest = deadlines
        .into_iter()
        .filter(|d| *d > now)
        .map(|d| std::time::Duration::try_from(d - now).unwrap_or(longest))
        .min()
        .unwrap_or(longest);
    soonest.clamp(std::time::Duration::from_secs(1), longest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::profile::{generate_key, serving_csr_pem, Authority};

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn names(list: &[&str]) -> BTreeSet<San> {
        list.iter().map(|n| San::parse(n)).collect()
    }

    /// A real certificate valid from `t0` - BACKDATE for `hours`, signed by `ca`.
    fn serving(ca: &Authority, sans: &BTreeSet<San>, hours: i64) -> CertInfo {
        let key = generate_key().unwrap();
        let csr = serving_csr_pem(&key, sans).unwrap();
        let pem = ca
            .sign_serving_csr(&csr, &key, sans, t0(), Duration::hours(hours))
            .unwrap();
        crate::tls::profile::parse_certificates(pem.as_bytes())
            .unwrap()
            .remove(0)
    }

    fn ok(cert: CertInfo) -> Observed<ServingCert> {
        Observed::Present(ServingCert {
            cert,
            key_matches: true,
            issued_by_current_ca: true,
        })
    }

    #[test]
    fn renews_two_thirds_into_the_lifetime() {
        let ca = Authority::generate(t0(), Duration::days(3650)).unwrap();
        let want = names(&["127.0.0.1"]);
        // 30 h including the 5 min backdate: two thirds is 20 h after notBefore.
        let cert = serving(&ca, &want, 30);
        let lifetime = cert.not_after - cert.not_before;
        assert_eq!(lifetime, Duration::hours(30) + BACKDATE);
        let renew_at = cert.not_before + lifetime * 2 / 3;
        assert_eq!(renewal_time(&cert), renew_at);

        let observed = ok(cert.clone());
        assert_eq!(
            serving_renewal(renew_at - Duration::seconds(1), &observed, &want),
            Renewal::Keep { renew_at }
        );
        assert_eq!(
            serving_renewal(renew_at, &observed, &want),
            Renewal::Renew(RenewReason::Due {
                renew_at,
                not_after: cert.not_after
            })
        );
        assert_eq!(
            serving_renewal(cert.not_after, &observed, &want),
            Renewal::Renew(RenewReason::Expired {
                not_after: cert.not_after
            })
        );
    }

    #[test]
    fn missing_garbage_and_foreign_keys_are_renewed_at_once() {
        let want = names(&["127.0.0.1"]);
        assert_eq!(
            serving_renewal(t0(), &Observed::Missing, &want),
            Renewal::Renew(RenewReason::Missing)
        );
        let garbage = Observed::Invalid("malformed PEM".into());
        assert_eq!(
            serving_renewal(t0(), &garbage, &want),
            Renewal::Renew(RenewReason::Invalid("malformed PEM".into()))
        );
        let ca = Authority::generate(t0(), Duration::days(1)).unwrap();
        let observed = Observed::Present(ServingCert {
            cert: serving(&ca, &want, 10),
            key_matches: false,
            issued_by_current_ca: true,
        });
        assert_eq!(
            serving_renewal(t0(), &observed, &want),
            Renewal::Renew(RenewReason::KeyMismatch)
        );
    }

    #[test]
    fn changed_names_and_another_ca_renew() {
        let ca = Authority::generate(t0(), Duration::days(1)).unwrap();
        let have = names(&["127.0.0.1"]);
        let want = names(&["zastava-webhook.zastava-system.svc"]);
        let cert = serving(&ca, &have, 10);
        assert_eq!(
            serving_renewal(t0(), &ok(cert.clone()), &want),
            Renewal::Renew(RenewReason::SansChanged {
                have: have.clone(),
                want
            })
        );
        let rotated = Observed::Present(ServingCert {
            cert: cert.clone(),
            key_matches: true,
            issued_by_current_ca: false,
        });
        assert_eq!(
            serving_renewal(t0(), &rotated, &have),
            Renewal::Renew(RenewReason::CaRotated)
        );
        // Expired wins over the other CA: it is the more urgent report.
        assert!(matches!(
            serving_renewal(cert.not_after, &rotated, &have),
            Renewal::Renew(RenewReason::Expired { .. })
        ));
    }

    #[test]
    fn only_a_working_certificate_waits_for_the_new_ca_to_be_published() {
        let waits = [
            RenewReason::CaRotated,
            RenewReason::SansChanged {
                have: BTreeSet::new(),
                want: BTreeSet::new(),
            },
            RenewReason::Due {
                renew_at: t0(),
                not_after: t0(),
            },
        ];
        assert!(waits.iter().all(RenewReason::current_still_serves));
        let at_once = [
            RenewReason::Missing,
            RenewReason::Invalid("x".into()),
            RenewReason::KeyMismatch,
            RenewReason::Expired { not_after: t0() },
        ];
        assert!(!at_once.iter().any(RenewReason::current_still_serves));
        assert!(at_once[1..].iter().all(RenewReason::is_problem));
        assert!(!waits.iter().any(RenewReason::is_problem));

        // A rotated CA: wait while the API server does not trust the new CA yet.
        let rotated = RenewReason::CaRotated;
        assert!(wait_for_publication(&rotated, true, false));
        assert!(!wait_for_publication(&rotated, true, true));
        // The old CA is gone from the bundle (lost or expired): waiting cannot help.
        assert!(!wait_for_publication(&rotated, false, false));
        assert!(!wait_for_publication(&RenewReason::Missing, false, false));
        assert!(!wait_for_publication(
            &RenewReason::Expired { not_after: t0() },
            true,
            false
        ));
    }

    #[test]
    fn ca_rotation_keeps_the_old_ca_unless_it_is_unusable() {
        let ca = Authority::generate(t0(), Duration::days(30)).unwrap();
        let cert = ca.cert.clone();
        let renew_at = renewal_time(&cert);
        assert_eq!(
            ca_renewal(t0(), &Observed::Present(cert.clone())),
            CaRenewal::Keep { renew_at }
        );
        assert!(matches!(
            ca_renewal(renew_at, &Observed::Present(cert.clone())),
            CaRenewal::Replace {
                reason: RenewReason::Due { .. },
                keep_previous: true
            }
        ));
        assert!(matches!(
            ca_renewal(cert.not_after, &Observed::Present(cert.clone())),
            CaRenewal::Replace {
                reason: RenewReason::Expired { .. },
                keep_previous: false
            }
        ));
        assert_eq!(
            ca_renewal(t0(), &Observed::Missing),
            CaRenewal::Replace {
                reason: RenewReason::Missing,
                keep_previous: false
            }
        );
        assert!(matches!(
            ca_renewal(t0(), &Observed::Invalid("garbage".into())),
            CaRenewal::Replace {
                reason: RenewReason::Invalid(_),
                keep_previous: false
            }
        ));
    }

    #[test]
    fn the_previous_ca_leaves_the_bundle_after_the_serving_certificate_moved_on() {
        let old = Authority::generate(t0() - Duration::days(20), Duration::days(30)).unwrap();
        let new = Authority::generate(t0(), Duration::days(30)).unwrap();
        let want = names(&["127.0.0.1"]);

        // Still served by a certificate of the old CA: the old CA stays until it expires.
        let from_old = ServingCert {
            cert: serving(&old, &want, 10),
            key_matches: true,
            issued_by_current_ca: false,
        };
        assert_eq!(
            previous_ca_retires_at(&old.cert, Some(&from_old)),
            old.cert.not_after
        );
        assert_eq!(previous_ca_retires_at(&old.cert, None), old.cert.not_after);

        // Re-issued by the new CA at t0: the old CA goes RELOAD_GRACE later.
        let from_new = ServingCert {
            cert: serving(&new, &want, 10),
            key_matches: true,
            issued_by_current_ca: true,
        };
        assert_eq!(
            previous_ca_retires_at(&old.cert, Some(&from_new)),
            t0() + RELOAD_GRACE
        );
        // ...or when it expires, if that is sooner.
        let expiring = Authority::generate(
            t0() - Duration::days(30),
            Duration::days(30) + Duration::seconds(30),
        )
        .unwrap();
        assert_eq!(
            previous_ca_retires_at(&expiring.cert, Some(&from_new)),
            expiring.cert.not_after
        );
    }

    #[test]
    fn next_check_is_the_soonest_deadline_ahead_within_bounds() {
        let longest = std::time::Duration::from_secs(60);
        assert_eq!(next_check(t0(), [], longest), longest);
        assert_eq!(
            next_check(
                t0(),
                [t0() + Duration::seconds(20), t0() + Duration::seconds(5)],
                longest
            ),
            std::time::Duration::from_secs(5)
        );
        // Past deadlines were handled by this pass; far ones are capped.
        assert_eq!(
            next_check(
                t0(),
                [t0() - Duration::seconds(5), t0() + Duration::hours(5)],
                longest
            ),
            longest
        );
        assert_eq!(
            next_check(t0(), [t0() + Duration::milliseconds(10)], longest),
            std::time::Duration::from_secs(1)
        );
    }
}
