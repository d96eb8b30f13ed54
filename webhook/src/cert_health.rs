//! Whether this replica's serving certificate still does its job: the webhook's liveness
//! (`/healthz`), decided by a pure function of cached validity times.
//!
//! The operator renews the certificate two thirds into its lifetime
//! (operator/src/tls/rotation.rs `renewal_time`; cert-manager's default `renewBefore`, a third
//! of the duration, is the same point). Failing liveness merely because that time has passed
//! would restart every replica at once while the certificate is still valid (the operator is
//! down, say), hurting admission before anything expired; a restart helps only when THIS
//! replica failed to pick up a renewal. So liveness fails when
//!
//! - the served certificate has expired, or
//! - it is past its renewal time and the TLS Secret, read directly from the API now and then
//!   (a GET, independent of the watch that normally reloads it), holds a newer usable
//!   certificate than the one served: the replica's watch is stuck.
//!
//! Past its renewal time with nothing newer in the Secret (the operator has not renewed),
//! liveness stays OK and the webhook says so: the gauges
//! `zastava_webhook_certificate_renewal_overdue` and
//! `zastava_webhook_certificate_expiry_seconds`, and a warning log line. Before any
//! certificate is loaded liveness is OK too (readiness fails then).
//!
//! The probe runs every few seconds: it compares integers read when the certificate was
//! loaded, it parses nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::prelude::FromDer;

/// When a certificate is valid, in Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// The validity of the DER certificate `der`; an error names what is wrong with it.
    pub fn of_der(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let validity = cert.validity();
        Ok(Self {
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }

    /// Two thirds into the lifetime: when the operator renews the certificate.
    pub fn renewal_time(&self) -> i64 {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }
}

/// The state of the served certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertHealth {
    /// No certificate loaded yet.
    NotLoaded,
    /// Before its renewal time.
    Fresh,
    /// Past its renewal time and the Secret has nothing newer (or could not be read): the
    /// operator has not renewed it yet. Live: a restart would not help.
    RenewalOverdue,
    /// Past its renewal time and the Secret holds a newer certificate this replica has not
    /// loaded. Not live: a restart loads it.
    RenewalNotLoaded,
    /// Past its `notAfter`. Not live.
    Expired,
}

/// The state at `now` (Unix seconds) of the certificate `served`, given the newest usable
/// certificate the last direct read found in the TLS Secret (`None`: nothing usable there,
/// or not read yet).
pub fn assess(now: i64, served: Option<Validity>, in_secret: Option<Validity>) -> CertHealth {
    let Some(served) = served else {
        return CertHealth::NotLoaded;
    };
    if now >= served.not_after {
        CertHealth::Expired
    } else if now < served.renewal_time() {
        CertHealth::Fresh
    } else if in_secret.is_some_and(|s| s.not_after > served.not_after) {
        CertHealth::RenewalNotLoaded
    } else {
        CertHealth::RenewalOverdue
    }
}

impl CertHealth {
    /// The liveness check: `Err` with the reason `/healthz` answers while the kubelet should
    /// restart this replica.
    pub fn liveness(self) -> Result<(), &'static str> {
        match self {
            CertHealth::NotLoaded | CertHealth::Fresh | CertHealth::RenewalOverdue => Ok(()),
            CertHealth::RenewalNotLoaded => Err(
                "serving certificate past its renewal time and the TLS Secret holds a newer one this replica has not loaded",
            ),
            CertHealth::Expired => Err("serving certificate expired"),
        }
    }
}

/// Now, in Unix seconds (0 for a clock before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Valid for 90 days from day 0: renewed at day 60.
    const DAY: i64 = 86_400;
    const SERVED: Validity = Validity {
        not_before: 1_000 * DAY,
        not_after: 1_090 * DAY,
    };

    fn at(day: i64) -> i64 {
        1_000 * DAY + day * DAY
    }

    #[test]
    fn renewal_is_two_thirds_into_the_lifetime() {
        assert_eq!(SERVED.renewal_time(), at(60));
    }

    #[test]
    fn a_fresh_certificate_is_live_whatever_the_secret_holds() {
        let newer = Validity {
            not_before: at(30),
            not_after: at(120),
        };
        for in_secret in [None, Some(SERVED), Some(newer)] {
            let health = assess(at(10), Some(SERVED), in_secret);
            assert_eq!(health, CertHealth::Fresh);
            assert_eq!(health.liveness(), Ok(()));
        }
        // Up to the second before renewal.
        assert_eq!(
            assess(at(60) - 1, Some(SERVED), Some(newer)),
            CertHealth::Fresh
        );
    }

    #[test]
    fn an_expired_certificate_fails_liveness() {
        for now in [at(90), at(90) + 1, at(400)] {
            for in_secret in [None, Some(SERVED)] {
                let health = assess(now, Some(SERVED), in_secret);
                assert_eq!(health, CertHealth::Expired);
                assert_eq!(health.liveness(), Err("serving certificate expired"));
            }
        }
    }

    #[test]
    fn past_renewal_with_a_newer_certificate_in_the_secret_fails_liveness() {
        let renewed = Validity {
            not_before: at(60),
            not_after: at(150),
        };
        let health = assess(at(61), Some(SERVED), Some(renewed));
        assert_eq!(health, CertHealth::RenewalNotLoaded);
        assert!(health.liveness().unwrap_err().contains("newer"));
    }

    #[test]
    fn past_renewal_with_nothing_newer_in_the_secret_stays_live() {
        let older = Validity {
            not_before: at(-90),
            not_after: at(0),
        };
        // The operator has not renewed: the Secret holds the served certificate, an older
        // one, nothing usable, or could not be read.
        for in_secret in [Some(SERVED), Some(older), None] {
            let health = assess(at(60), Some(SERVED), in_secret);
            assert_eq!(health, CertHealth::RenewalOverdue);
            assert_eq!(health.liveness(), Ok(()));
        }
    }

    #[test]
    fn no_certificate_yet_is_for_readiness_to_report() {
        assert_eq!(assess(at(0), None, Some(SERVED)), CertHealth::NotLoaded);
        assert_eq!(CertHealth::NotLoaded.liveness(), Ok(()));
    }

    #[test]
    fn the_validity_is_read_from_the_certificate_and_garbage_is_an_error() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["w.example".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2024, 4, 1);
        let cert = params.self_signed(&key).unwrap();
        let validity = Validity::of_der(cert.der()).unwrap();
        assert_eq!(validity.not_before, 1_704_067_200);
        assert_eq!(validity.not_after, 1_711_929_600);
        assert!(Validity::of_der(b"not DER")
            .unwrap_err()
            .starts_with("not an X.509 certificate"));
    }
}
