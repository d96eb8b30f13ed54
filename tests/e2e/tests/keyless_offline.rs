//! Certificate identities verified offline (issue 13, item 1), on the real cluster and
//! registry: a CA made here issues short-lived signing certificates with an email identity
//! and Fulcio's OIDC-issuer extensions for a key the real `cosign generate-key-pair` made;
//! the real `cosign sign --certificate --certificate-chain --tlog-upload=false` signs images
//! with them, and for the RFC 3161 case asks a time-stamping authority run here by the real
//! `openssl ts -reply`. Nothing reaches Fulcio, Rekor or TUF.
//!
//! There is no local Rekor to write real bundles, so the Rekor proof is covered by the unit
//! tests of `zastava_registry::keyless` only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CustomExtension, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use serde_json::{json, Value};
use zastava_crds::ZastavaPolicy;
use zastava_e2e::webhook::{pod, wait_in_force};
use zastava_e2e::{
    apply_policy, client, create_namespace, delete_namespace, delete_policy, env,
    kubectl_apply_args, unique, wait_for, wait_ready, TestImage,
};

const ISSUER: &str = "https://idp.zastava.test";
const FULCIO_ISSUER_V1: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 1];
const FULCIO_ISSUER_V2: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 8];

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn at(seconds: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(seconds).unwrap()
}

fn scratch(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(command: &mut Command) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A certificate authority made here.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        // Valid well before the expired certificates it issues start: cosign checks the
        // chain at the signing certificate's notBefore.
        params.not_before = at(now() - 86_400);
        params.not_after = at(now() + 86_400);
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A code-signing certificate for `public_pem`, naming `email`, issued by `ISSUER`'s OIDC
    /// provider (both Fulcio extensions), valid from `not_before` to `not_after`.
    fn signing_certificate(
        &self,
        public_pem: &str,
        email: &str,
        not_before: i64,
        not_after: i64,
    ) -> String {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::Rfc822Name(email.try_into().unwrap())];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.not_before = at(not_before);
        params.not_after = at(not_after);
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                FULCIO_ISSUER_V1,
                ISSUER.as_bytes().to_vec(),
            ));
        let mut utf8 = vec![0x0c, ISSUER.len() as u8];
        utf8.extend_from_slice(ISSUER.as_bytes());
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(FULCIO_ISSUER_V2, utf8));
        let public = rcgen::SubjectPublicKeyInfo::from_pem(public_pem).unwrap();
        params.signed_by(&public, &self.issuer).unwrap().pem()
    }
}

/// A cosign key pair (the real `cosign generate-key-pair`) and the files signing needs.
struct Signer {
    dir: PathBuf,
    public_pem: String,
}

impl Signer {
    fn new() -> Self {
        let dir = scratch("keyless-signer");
        run(Command::new(env("COSIGN"))
            .arg("generate-key-pair")
            .current_dir(&dir)
            .env("COSIGN_PASSWORD", ""));
        let public_pem = std::fs::read_to_string(dir.join("cosign.pub")).unwrap();
        Self { dir, public_pem }
    }

    /// `cosign sign --key --certificate --certificate-chain --tlog-upload=false`, with an
    /// RFC 3161 timestamp from `tsa` when given.
    fn sign(&self, image: &str, certificate: &str, chain: &str, tsa: Option<&str>) {
        std::fs::write(self.dir.join("leaf.pem"), certificate).unwrap();
        std::fs::write(self.dir.join("chain.pem"), chain).unwrap();
        let mut command = Command::new(env("COSIGN"));
        command
            .args([
                "sign",
                "--key",
                "cosign.key",
                "--certificate",
                "leaf.pem",
                "--certificate-chain",
                "chain.pem",
                "--tlog-upload=false",
                "--allow-http-registry",
                "--allow-insecure-registry",
                "-y",
            ])
            .current_dir(&self.dir)
            .env("COSIGN_PASSWORD", "");
        if let Some(url) = tsa {
            command.args(["--timestamp-server-url", url]);
        }
        run(command.arg(image));
    }
}

impl Drop for Signer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A time-stamping authority answering RFC 3161 requests over HTTP with the real
/// `openssl ts -reply`, its certificate issued by a root of its own. Served from a thread of
/// its own: the tests call cosign synchronously.
struct Tsa {
    root_pem: String,
    url: String,
    dir: PathBuf,
}

impl Drop for Tsa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Tsa {
    fn start() -> Self {
        let dir = scratch("keyless-tsa");
        let root = Ca::new("Zastava e2e TSA Root");
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Zastava e2e TSA");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = at(now() - 3600);
        params.not_after = at(now() + 86_400);
        // extendedKeyUsage timeStamping, critical, as RFC 3161 (and `openssl ts`) require.
        let mut eku = CustomExtension::from_oid_content(
            &[2, 5, 29, 37],
            vec![
                0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08,
            ],
        );
        eku.set_criticality(true);
        params.custom_extensions.push(eku);
        let certificate = params.signed_by(&key, &root.issuer).unwrap();
        std::fs::write(dir.join("tsa.pem"), certificate.pem()).unwrap();
        std::fs::write(dir.join("tsa.key"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("root.pem"), root.pem()).unwrap();
        std::fs::write(dir.join("serial"), "01\n").unwrap();
        std::fs::write(
            dir.join("tsa.cnf"),
            format!(
                "[ tsa ]\ndefault_tsa = tsa_config\n[ tsa_config ]\nserial = {}\n\
                 crypto_device = builtin\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\n\
                 other_policies = 1.2.3.4.2\ndigests = sha256, sha384, sha512\n\
                 accuracy = secs:1\nordering = no\ntsa_name = no\ness_cert_id_chain = no\n\
                 ess_cert_id_alg = sha256\n",
                dir.join("serial").display()
            ),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let served = dir.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve(&served, stream);
            }
        });
        Self {
            root_pem: root.pem(),
            url,
            dir,
        }
    }
}

/// Answers one HTTP request carrying a `TimeStampReq` with `openssl ts -reply`.
fn serve(dir: &Path, mut stream: std::net::TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut query = vec![0; length];
    reader.read_exact(&mut query)?;
    let request = dir.join(unique("query"));
    let response = dir.join(unique("reply"));
    std::fs::write(&request, &query)?;
    let status = Command::new("openssl")
        .args(["ts", "-reply", "-config"])
        .arg(dir.join("tsa.cnf"))
        .arg("-queryfile")
        .arg(&request)
        .arg("-signer")
        .arg(dir.join("tsa.pem"))
        .arg("-inkey")
        .arg(dir.join("tsa.key"))
        .arg("-chain")
        .arg(dir.join("root.pem"))
        .arg("-out")
        .arg(&response)
        .stderr(Stdio::null())
        .status()?;
    let body = if status.success() {
        std::fs::read(&response)?
    } else {
        Vec::new()
    };
    let head = if body.is_empty() {
        "500 Internal Server Error"
    } else {
        "200 OK"
    };
    write!(
        stream,
        "HTTP/1.1 {head}\r\nContent-Type: application/timestamp-reply\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body)
}

/// A namespace of its own, governed by a policy requiring a keyless signature from
/// alice@example.com (issuer `ISSUER`) chaining to `root`, with `signing_time` as the proof
/// of signing time. `latest` is banned so the in-force probe is decided before any lookup.
async fn governed(prefix: &str, root: &Ca, signing_time: Value) -> (String, String) {
    let client = client().await;
    let ns = unique(prefix);
    create_namespace(&client, &ns, json!({})).await;
    let policy = unique(prefix);
    apply_policy(
        &client,
        &policy,
        json!({
            "namespaces": [ns],
            "images": {"bannedTags": ["latest"]},
            "verify": {"signature": {
                "required": true,
                "keyless": [{"subject": "alice@example.com", "issuer": ISSUER}],
                "trustRoots": [{"name": "e2e-root", "pem": root.pem()}],
                "signingTime": signing_time,
            }},
        }),
    )
    .await;
    let ready = wait_ready(&client, &policy, "True").await;
    let status = ready.status.clone().unwrap_or_default();
    assert_eq!(status.resolved_identities, Some(1), "{status:?}");
    assert_eq!(status.resolved_certificates[0].usage, "trustRoots");
    assert_eq!(status.resolved_certificates[0].name, "e2e-root");
    assert_eq!(
        status.resolved_certificates[0].subjects,
        ["CN=Zastava e2e Signing Root"]
    );
    wait_in_force(&ns).await;
    (ns, policy)
}

async fn remove(ns: &str, policy: &str) {
    let client = client().await;
    delete_policy(&client, policy).await;
    delete_namespace(&client, ns).await;
}

/// The apiserver's answer to a server-side dry run of a Pod of `image` in `ns`.
fn dry_run(ns: &str, image: &str) -> Result<String, String> {
    kubectl_apply_args(&pod(ns, "app", image), &["--dry-run=server"])
}

fn assert_denied(result: &Result<String, String>, image: &str, reason: &str) {
    match result {
        Err(e) => assert!(
            e.contains("denied the request") && e.contains(image) && e.contains(reason),
            "expected a deny of {image} saying `{reason}`, got: {e}"
        ),
        Ok(out) => panic!("expected a deny of {image} saying `{reason}`, it was admitted: {out}"),
    }
}

#[tokio::test]
async fn identity_issuer_root_and_validity_decide_admission_without_a_proof() {
    let root = Ca::new("Zastava e2e Signing Root");
    let (ns, policy) = governed("e2e-keyless", &root, json!({"proof": "None"})).await;
    let signer = Signer::new();
    let chain = root.pem();
    let valid = |email: &str, ca: &Ca| {
        ca.signing_certificate(&signer.public_pem, email, now() - 60, now() + 600)
    };

    let good = TestImage::push(&unique("keyless-good"), "v1");
    signer.sign(
        &good.by_digest(),
        &valid("alice@example.com", &root),
        &chain,
        None,
    );
    let admitted = dry_run(&ns, &good.by_tag());
    assert!(admitted.is_ok(), "alice's signature admitted: {admitted:?}");

    let mallory = TestImage::push(&unique("keyless-mallory"), "v1");
    signer.sign(
        &mallory.by_digest(),
        &valid("mallory@example.com", &root),
        &chain,
        None,
    );
    assert_denied(
        &dry_run(&ns, &mallory.by_tag()),
        &mallory.by_tag(),
        "signed by mallory@example.com (issuer https://idp.zastava.test), which is not an allowed identity [subject alice@example.com, issuer https://idp.zastava.test]",
    );

    // The same identity from a CA of the same name the policy does not trust.
    let impostor = Ca::new("Zastava e2e Signing Root");
    let foreign = TestImage::push(&unique("keyless-foreign"), "v1");
    signer.sign(
        &foreign.by_digest(),
        &valid("alice@example.com", &impostor),
        &impostor.pem(),
        None,
    );
    assert_denied(
        &dry_run(&ns, &foreign.by_tag()),
        &foreign.by_tag(),
        "a signing certificate does not chain to any of the policy's trustRoots",
    );

    // Without a proof of signing time, admission time is the signing time: a certificate
    // that has expired does not sign anything any more.
    let expired = TestImage::push(&unique("keyless-expired"), "v1");
    let old = root.signing_certificate(
        &signer.public_pem,
        "alice@example.com",
        now() - 7200,
        now() - 3600,
    );
    signer.sign(&expired.by_digest(), &old, &chain, None);
    assert_denied(
        &dry_run(&ns, &expired.by_tag()),
        &expired.by_tag(),
        "a signing certificate had expired at signing time (without a proof of signing time, admission time",
    );

    remove(&ns, &policy).await;
}

#[tokio::test]
async fn an_rfc3161_timestamp_proves_the_certificate_was_valid_when_it_signed() {
    let tsa = Tsa::start();
    let root = Ca::new("Zastava e2e Signing Root");
    let (ns, policy) = governed(
        "e2e-keyless-tsa",
        &root,
        json!({"proof": "RFC3161Timestamp",
               "timestampAuthorities": [{"name": "e2e-tsa", "pem": tsa.root_pem}]}),
    )
    .await;
    let signer = Signer::new();
    let chain = root.pem();

    // Valid for 20 seconds, as short as Fulcio's ten minutes for the test's sake: signed and
    // timestamped at once, admitted once it has expired.
    let fleeting = TestImage::push(&unique("keyless-fleeting"), "v1");
    let not_after = now() + 20;
    let certificate = root.signing_certificate(
        &signer.public_pem,
        "alice@example.com",
        now() - 5,
        not_after,
    );
    signer.sign(&fleeting.by_digest(), &certificate, &chain, Some(&tsa.url));
    wait_for(
        "the signing certificate to expire",
        Duration::from_secs(40),
        || async { (now() > not_after + 1).then_some(()) },
    )
    .await;
    let admitted = dry_run(&ns, &fleeting.by_tag());
    assert!(
        admitted.is_ok(),
        "a signature timestamped while its certificate was valid is admitted after it expired: {admitted:?}"
    );

    // Timestamped after the certificate expired.
    let late = TestImage::push(&unique("keyless-late"), "v1");
    let old = root.signing_certificate(
        &signer.public_pem,
        "alice@example.com",
        now() - 7200,
        now() - 3600,
    );
    signer.sign(&late.by_digest(), &old, &chain, Some(&tsa.url));
    assert_denied(
        &dry_run(&ns, &late.by_tag()),
        &late.by_tag(),
        "a signing certificate had expired at signing time (signed ",
    );
    assert_denied(
        &dry_run(&ns, &late.by_tag()),
        &late.by_tag(),
        "by its RFC 3161 timestamp; valid until",
    );

    // No timestamp at all.
    let untimed = TestImage::push(&unique("keyless-untimed"), "v1");
    let fresh = root.signing_certificate(
        &signer.public_pem,
        "alice@example.com",
        now() - 60,
        now() + 600,
    );
    signer.sign(&untimed.by_digest(), &fresh, &chain, None);
    assert_denied(
        &dry_run(&ns, &untimed.by_tag()),
        &untimed.by_tag(),
        "a signature carries no RFC 3161 timestamp to prove when it was made",
    );

    remove(&ns, &policy).await;
}

#[tokio::test]
async fn unusable_roots_stall_the_policy_with_a_precise_reason() {
    let client = client().await;
    let policy = unique("e2e-keyless-bad");
    apply_policy(
        &client,
        &policy,
        json!({
            "namespaces": [unique("e2e-keyless-nowhere")],
            "verify": {"signature": {
                "required": true,
                "keyless": [{"subject": "alice@example.com"}],
                "trustRoots": [{"name": "garbage", "pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}],
            }},
        }),
    )
    .await;
    let stalled: ZastavaPolicy = wait_ready(&client, &policy, "False").await;
    let condition = zastava_e2e::condition(&stalled, "Stalled").expect("a Stalled condition");
    assert_eq!(condition.reason, "InvalidCertificate");
    assert!(
        condition.message.starts_with(
            "spec.verify.signature.trustRoots[0].pem: certificate 0 is not a DER X.509 certificate"
        ),
        "{}",
        condition.message
    );
    delete_policy(&client, &policy).await;
}
