//! Issuing a serving certificate through a `certificates.k8s.io/v1` CertificateSigningRequest
//! for the operator's own signer: create, approve, sign, each step checked against what the
//! API server returns, so a CSR denied, failed or deleted by someone else is noticed.

use std::collections::BTreeSet;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::Api;
use serde_json::json;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::profile::{generate_key, serving_csr_pem, Authority, San, CSR_USAGES, SIGNER_NAME};
use super::TLS_FIELD_MANAGER;
use crate::Error;

/// Field manager of the `Approved` condition. Approver and signer are distinct roles for
/// Kubernetes and distinct managers here: on Kubernetes before 1.22 managed fields are not
/// tracked per subresource, so a signer applying `status` under the approver's name would
/// drop the `Approved` condition, which the API server forbids.
const APPROVER_FIELD_MANAGER: &str = "zastava-operator-tls-approver";
/// Field manager of `status.certificate`.
const SIGNER_FIELD_MANAGER: &str = "zastava-operator-tls-signer";

/// On every CSR the operator makes; the value is the webhook configuration's name, so two
/// operators managing two configurations never touch each other's CSRs.
pub const CSR_LABEL: &str = "zastava.stellaops.io/webhook-configuration";
/// The `reason` of the `Approved` condition the operator sets.
pub const APPROVAL_REASON: &str = "ZastavaOperatorApproved";

/// Where a CSR stands, read from its conditions and certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CsrState {
    Pending,
    Approved,
    Issued(Vec<u8>),
    Denied { reason: String, message: String },
    Failed { reason: String, message: String },
    Deleted,
}

impl CsrState {
    /// The `result` label of the issuance metric for a CSR that ended here.
    pub fn result(&self) -> &'static str {
        match self {
            CsrState::Issued(_) => "issued",
            CsrState::Denied { .. } => "denied",
            CsrState::Failed { .. } => "failed",
            CsrState::Deleted => "deleted",
            CsrState::Pending | CsrState::Approved => "error",
        }
    }

    fn refused(&self) -> bool {
        matches!(
            self,
            CsrState::Denied { .. } | CsrState::Failed { .. } | CsrState::Deleted
        )
    }
}

/// Denied and Failed win over everything (the API server never lets a denied CSR be
/// approved, and a failed one is final); a certificate only counts once approved.
pub fn state(csr: Option<&CertificateSigningRequest>) -> CsrState {
    let Some(csr) = csr else {
        return CsrState::Deleted;
    };
    let status = csr.status.as_ref();
    let conditions = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let holds = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    let explain = |c: &k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition| {
        (
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    };
    if let Some(c) = holds("Denied") {
        let (reason, message) = explain(c);
        return CsrState::Denied { reason, message };
    }
    if let Some(c) = holds("Failed") {
        let (reason, message) = explain(c);
        return CsrState::Failed { reason, message };
    }
    if holds("Approved").is_none() {
        return CsrState::Pending;
    }
    match status.and_then(|s| s.certificate.as_ref()) {
        Some(cert) if !cert.0.is_empty() => CsrState::Issued(cert.0.clone()),
        _ => CsrState::Approved,
    }
}

/// `<configuration>-<hash>`: the hash of the names and the public key, so a retry with a new
/// key never collides with an old CSR.
pub fn csr_name(configuration: &str, sans: &BTreeSet<San>, public_key: &[u8]) -> String {
    let mut hash = Sha256::new();
    for san in sans {
        hash.update(san.to_string().as_bytes());
        hash.update([0]);
    }
    hash.update(public_key);
    format!("{configuration}-{}", &hex::encode(hash.finalize())[..10])
}

/// What became of one request.
#[derive(Debug)]
pub enum Outcome {
    Issued {
        csr: String,
        cert_pem: String,
        key_pem: String,
    },
    /// Someone else denied, failed or deleted the CSR before it was issued.
    Refused { csr: String, state: CsrState },
}

pub struct Request<'a> {
    pub api: &'a Api<CertificateSigningRequest>,
    pub ca: &'a Authority,
    pub sans: &'a BTreeSet<San>,
    /// The webhook configuration's name: the CSR's name prefix and label.
    pub configuration: &'a str,
    pub validity: Duration,
}

impl Request<'_> {
    /// Generates a key, requests a certificate for it, approves and signs the request.
    pub async fn issue(&self) -> Result<Outcome, Error> {
        let key = generate_key()?;
        let request_pem = serving_csr_pem(&key, self.sans)?;
        let name = csr_name(
            self.configuration,
            self.sans,
            rcgen::PublicKeyData::der_bytes(&key),
        );
        let csr = json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {
                "name": name,
                "labels": {
                    CSR_LABEL: self.configuration,
                    "app.kubernetes.io/managed-by": crate::FIELD_MANAGER,
                },
            },
            "spec": {
                "request": k8s_openapi::ByteString(request_pem.into_bytes()),
                "signerName": SIGNER_NAME,
                "usages": CSR_USAGES,
            },
        });
        self.api
            .patch(
                &name,
                &PatchParams::apply(TLS_FIELD_MANAGER).force(),
                &Patch::Apply(&csr),
            )
            .await?;
        tracing::info!(csr = %name, signer = SIGNER_NAME, "created CertificateSigningRequest");

        let approval = json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": { "name": name },
            "status": { "conditions": [{
                "type": "Approved",
                "status": "True",
                "reason": APPROVAL_REASON,
                "message": format!(
                    "the Zastava operator requested this serving certificate for its webhook and \
                     approves it as signer {SIGNER_NAME}"
                ),
            }]},
        });
        let approved = match self
            .api
            .patch_approval(
                &name,
                &PatchParams::apply(APPROVER_FIELD_MANAGER).force(),
                &Patch::Apply(&approval),
            )
            .await
        {
            Ok(csr) => csr,
            Err(e) => return self.refused_or(&name, e).await,
        };
        match state(Some(&approved)) {
            CsrState::Approved => {}
            other if other.refused() => {
                return Ok(Outcome::Refused {
                    csr: name,
                    state: other,
                })
            }
            other => {
                return Err(Error::Cert(crate::error::CertError::Csr(format!(
                    "CSR {name} is {other:?} after approval"
                ))))
            }
        }

        // Sign what the API server holds, not what was sent: it is what the CSR says.
        let stored = String::from_utf8_lossy(&approved.spec.request.0).into_owned();
        let cert_pem = self.ca.sign_serving_csr(
            &stored,
            &key,
            self.sans,
            OffsetDateTime::now_utc(),
            self.validity,
        )?;
        let signed = json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": { "name": name },
            "status": { "certificate": k8s_openapi::ByteString(cert_pem.clone().into_bytes()) },
        });
        let signed = match self
            .api
            .patch_status(
                &name,
                &PatchParams::apply(SIGNER_FIELD_MANAGER).force(),
                &Patch::Apply(&signed),
            )
            .await
        {
            Ok(csr) => csr,
            Err(e) => return self.refused_or(&name, e).await,
        };
        match state(Some(&signed)) {
            CsrState::Issued(cert) if cert == cert_pem.as_bytes() => Ok(Outcome::Issued {
                csr: name,
                cert_pem,
                key_pem: key.serialize_pem(),
            }),
            other if other.refused() => Ok(Outcome::Refused {
                csr: name,
                state: other,
            }),
            other => Err(Error::Cert(crate::error::CertError::Csr(format!(
                "CSR {name} is {other:?} after signing"
            )))),
        }
    }

    /// A write to the CSR failed: refused when it is gone, denied or failed (approving a denied
    /// CSR is invalid, signing a failed one too), the API error otherwise.
    async fn refused_or(&self, name: &str, error: kube::Error) -> Result<Outcome, Error> {
        if !matches!(&error, kube::Error::Api(s) if matches!(s.code, 404 | 409 | 422)) {
            return Err(error.into());
        }
        let now = state(self.api.get_opt(name).await?.as_ref());
        if now.refused() {
            Ok(Outcome::Refused {
                csr: name.to_string(),
                state: now,
            })
        } else {
            Err(error.into())
        }
    }
}

/// Deletes this configuration's CSRs but `keep` (the one that issued the current certificate,
/// left for inspection); returns how many went.
pub async fn clean_up(
    api: &Api<CertificateSigningRequest>,
    configuration: &str,
    keep: Option<&str>,
) -> Result<usize, Error> {
    let ours = api
        .list_metadata(&ListParams::default().labels(&format!("{CSR_LABEL}={configuration}")))
        .await?;
    let mut deleted = 0;
    for name in ours
        .items
        .iter()
        .filter_map(|c| c.metadata.name.as_deref())
        .filter(|n| Some(*n) != keep)
    {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => deleted += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestStatus,
    };

    fn csr(conditions: &[(&str, &str)], certificate: Option<&[u8]>) -> CertificateSigningRequest {
        CertificateSigningRequest {
            status: Some(CertificateSigningRequestStatus {
                certificate: certificate.map(|c| k8s_openapi::ByteString(c.to_vec())),
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(type_, status)| CertificateSigningRequestCondition {
                            type_: type_.to_string(),
                            status: status.to_string(),
                            reason: Some(format!("{type_}Reason")),
                            message: Some(format!("{type_} by someone")),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn states_follow_the_conditions() {
        assert_eq!(state(None), CsrState::Deleted);
        assert_eq!(state(Some(&csr(&[], None))), CsrState::Pending);
        assert_eq!(
            state(Some(&CertificateSigningRequest::default())),
            CsrState::Pending
        );
        assert_eq!(
            state(Some(&csr(&[("Approved", "True")], None))),
            CsrState::Approved
        );
        assert_eq!(
            state(Some(&csr(&[("Approved", "True")], Some(b"PEM")))),
            CsrState::Issued(b"PEM".to_vec())
        );
        // A certificate without approval does not count.
        assert_eq!(state(Some(&csr(&[], Some(b"PEM")))), CsrState::Pending);
        assert_eq!(
            state(Some(&csr(&[("Approved", "False")], None))),
            CsrState::Pending
        );
    }

    #[test]
    fn denied_and_failed_win() {
        assert_eq!(
            state(Some(&csr(&[("Denied", "True")], None))),
            CsrState::Denied {
                reason: "DeniedReason".into(),
                message: "Denied by someone".into()
            }
        );
        assert_eq!(
            state(Some(&csr(
                &[("Approved", "True"), ("Failed", "True")],
                None
            ))),
            CsrState::Failed {
                reason: "FailedReason".into(),
                message: "Failed by someone".into()
            }
        );
        assert!(state(Some(&csr(&[("Denied", "True")], None))).refused());
        assert!(CsrState::Deleted.refused());
        assert!(!CsrState::Approved.refused());
        assert_eq!(CsrState::Deleted.result(), "deleted");
        assert_eq!(CsrState::Issued(vec![]).result(), "issued");
    }

    #[test]
    fn names_change_with_the_key_and_the_names_and_stay_valid() {
        let sans = BTreeSet::from([San::parse("127.0.0.1")]);
        let a = csr_name("zastava-webhook", &sans, b"key-a");
        let b = csr_name("zastava-webhook", &sans, b"key-b");
        let c = csr_name(
            "zastava-webhook",
            &BTreeSet::from([San::parse("localhost")]),
            b"key-a",
        );
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, csr_name("zastava-webhook", &sans, b"key-a"));
        assert!(a.starts_with("zastava-webhook-"));
        assert_eq!(a.len(), "zastava-webhook-".len() + 10);
        assert!(a
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-'));
    }
}
