//! The webhook controller: keeps the webhook's TLS Secret, the CA behind it, the namespace
//! labels and the ValidatingWebhookConfiguration what they should be.
//!
//! One pass does everything, in the order that keeps admission working: namespaces are
//! labelled before the configuration selects on the labels; the serving certificate is in its
//! Secret before the configuration calls the webhook; a new CA is in the published bundle
//! before a certificate it signed replaces one that still works. A pass runs at start, a second
//! after any change to the objects involved (so a deleted or edited configuration or Secret
//! heals within seconds), and otherwise when the next renewal falls due, at least every minute.

mod csr;
pub mod profile;
pub mod rotation;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use futures::{stream, Stream, StreamExt};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use tokio::time::Instant;
use zastava_crds::ZastavaPolicy;

use crate::pull_secrets;
use crate::webhook_config::{self, CaSource, Settings};
use crate::{Error, Metrics, FIELD_MANAGER};
use csr::CSR_LABEL;
use profile::{parse_certificates, Authority, CertInfo};
use rotation::{
    ca_renewal, expiry, next_check, previous_ca_retires_at, renewal_time, serving_renewal,
    wait_for_publication, CaRenewal, Observed, RenewReason, Renewal, ServingCert,
};
use zastava_process::events::EventPublisher;

/// Field manager of the TLS Secrets and CertificateSigningRequests.
pub const TLS_FIELD_MANAGER: &str = "zastava-operator-tls";
/// Field manager of the labels the operator puts on namespaces.
pub const NAMESPACE_FIELD_MANAGER: &str = "zastava-operator-namespaces";
/// The reason of the Event on a namespace whose exemption label the operator removed.
pub const EXEMPTION_REMOVED: &str = "ExemptionLabelRemoved";
/// The key of the CA Secret holding the previous CA while a rotation is under way.
pub const PREVIOUS_CA_KEY: &str = "previous.crt";

const TLS_TYPE: &str = "kubernetes.io/tls";
/// The longest time between two passes.
const RESYNC: StdDuration = StdDuration::from_secs(60);
/// Changes come in bursts (an apply touches several objects): one pass after them.
const DEBOUNCE: StdDuration = StdDuration::from_secs(1);
const RETRY_ERROR: StdDuration = StdDuration::from_secs(10);
/// After a CSR was refused by someone else; not at once, or a denying controller and the
/// operator would spin.
const RETRY_REFUSED: StdDuration = StdDuration::from_secs(15);
/// While a new CA waits to be published before the serving certificate is swapped.
const RETRY_UNPUBLISHED: StdDuration = StdDuration::from_secs(5);

/// How the webhook's serving certificate is provided.
#[derive(Clone, Debug, PartialEq)]
pub enum Provisioning {
    /// The operator's own CA signs it through a CSR.
    Csr {
        ca_secret: String,
        validity: Duration,
        ca_validity: Duration,
    },
    /// Someone else (e.g. cert-manager) keeps the TLS Secret; the `caBundle` comes from its
    /// `ca.crt`, or from cert-manager's CA injector when a Certificate is named.
    Existing {
        cert_manager_certificate: Option<String>,
    },
}

pub struct Context {
    pub client: Client,
    /// Zastava's own namespace: the Secrets live here.
    pub namespace: String,
    pub webhook: Settings,
    pub tls_secret: String,
    pub provisioning: Provisioning,
    pub events: EventPublisher,
    pub metrics: Metrics,
    /// The last warning about a Secret the operator does not own, so a problem that persists
    /// is reported once rather than every pass.
    last_warning: Mutex<Option<String>>,
}

impl Context {
    pub fn new(
        client: Client,
        namespace: String,
        identity: String,
        webhook: Settings,
        tls_secret: String,
        provisioning: Provisioning,
        metrics: Metrics,
    ) -> Self {
        Self {
            events: EventPublisher::new(client.clone(), FIELD_MANAGER, identity),
            client,
            namespace,
            webhook,
            tls_secret,
            provisioning,
            metrics,
            last_warning: Mutex::new(None),
        }
    }
}

const KIND: &str = "ValidatingWebhookConfiguration";

/// Runs passes until `shutdown` resolves; a pass under way when it does is finished first.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()>) {
    let mut triggers = std::pin::pin!(triggers(&ctx));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next = Instant::now();
    // After a failed pass, changes do not bring the retry forward: they are mostly the
    // failed pass's own writes, and would turn the backoff into a tight loop.
    let mut backoff_until = Instant::now();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = triggers.next() => {
                next = next.min((Instant::now() + DEBOUNCE).max(backoff_until));
            }
            _ = tokio::time::sleep_until(next) => {
                let started = std::time::Instant::now();
                let wait = match reconcile(&ctx).await {
                    Ok(wait) => {
                        ctx.metrics.reconciliations.with_label_values(&[KIND, "ok"]).inc();
                        wait
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook reconciliation failed; retrying");
                        ctx.metrics.reconciliations.with_label_values(&[KIND, "error"]).inc();
                        backoff_until = Instant::now() + RETRY_ERROR;
                        RETRY_ERROR
                    }
                };
                ctx.metrics
                    .reconcile_duration
                    .with_label_values(&[KIND])
                    .observe(started.elapsed().as_secs_f64());
                next = Instant::now() + wait;
            }
        }
    }
}

/// Any change to the objects a pass reads or writes; watch errors are retried with backoff
/// and logged (the periodic pass goes on regardless).
fn triggers(ctx: &Context) -> impl Stream<Item = ()> + Send + 'static {
    fn changes<S, K, E>(what: &'static str, events: S) -> stream::BoxStream<'static, ()>
    where
        S: Stream<Item = Result<watcher::Event<K>, E>> + Send + 'static,
        K: Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        events
            .filter_map(move |event| async move {
                match event {
                    Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
                    Ok(_) => Some(()),
                    Err(e) => {
                        tracing::debug!(watch = what, error = %e, "watch failed; retrying");
                        None
                    }
                }
            })
            .boxed()
    }
    let by_name = |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
    let client = &ctx.client;
    // Metadata is all a trigger needs.
    let secrets: Api<PartialObjectMeta<Secret>> = Api::namespaced(client.clone(), &ctx.namespace);
    let mut streams = vec![
        changes(
            "webhook configuration",
            watcher(
                Api::<ValidatingWebhookConfiguration>::all(client.clone()),
                by_name(&ctx.webhook.name),
            )
            .default_backoff(),
        ),
        changes(
            "TLS Secret",
            watcher(secrets.clone(), by_name(&ctx.tls_secret)).default_backoff(),
        ),
        changes(
            "policies",
            watcher(
                Api::<PartialObjectMeta<ZastavaPolicy>>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff(),
        ),
        changes(
            "namespaces",
            watcher(
                Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff(),
        ),
    ];
    if let Provisioning::Csr { ca_secret, .. } = &ctx.provisioning {
        streams.push(changes(
            "CA Secret",
            watcher(secrets, by_name(ca_secret)).default_backoff(),
        ));
        streams.push(changes(
            "CSRs",
            watcher(
                Api::<PartialObjectMeta<CertificateSigningRequest>>::all(client.clone()),
                watcher::Config::default().labels(&format!("{CSR_LABEL}={}", ctx.webhook.name)),
            )
            .default_backoff(),
        ));
    }
    stream::select_all(streams)
}

/// One pass; returns when the next one is due at the latest.
async fn reconcile(ctx: &Context) -> Result<StdDuration, Error> {
    let policies = Api::<ZastavaPolicy>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    label_namespaces(ctx, &webhook_config::fail_open_namespaces(&policies)).await?;
    if let Some(grant) = &ctx.webhook.pull_secrets {
        grant_pull_secrets(ctx, grant).await?;
    }

    let api: Api<ValidatingWebhookConfiguration> = Api::all(ctx.client.clone());
    let live = api.get_opt(&ctx.webhook.name).await?;
    let (ca, wait) = match &ctx.provisioning {
        Provisioning::Csr {
            ca_secret,
            validity,
            ca_validity,
        } => provision(ctx, ca_secret, *validity, *ca_validity, live.as_ref()).await?,
        Provisioning::Existing {
            cert_manager_certificate,
        } => (
            existing_secret(ctx, cert_manager_certificate.as_deref()).await?,
            RESYNC,
        ),
    };
    // Without a usable CA bundle the configuration is left as it is: a `caBundle` the API
    // server cannot verify the webhook with would fail every call.
    if let Some(ca) = ca {
        let owner = match &ctx.webhook.owner_cluster_role {
            None => None,
            Some(name) => match Api::<ClusterRole>::all(ctx.client.clone())
                .get_opt(name)
                .await?
                .and_then(|role| role.metadata.uid)
            {
                Some(uid) => Some(webhook_config::cluster_role_owner(name, &uid)),
                // Being uninstalled (or not installed yet): a configuration written now would
                // outlive the operator and refuse Pods with nobody to answer.
                None => {
                    tracing::warn!(
                        cluster_role = %name,
                        "the ClusterRole owning the webhook configuration does not exist; not writing the configuration"
                    );
                    return Ok(RETRY_ERROR);
                }
            },
        };
        let desired = webhook_config::desired(&ctx.webhook, &ca, &policies, owner);
        match &live {
            Some(live) if webhook_config::up_to_date(live, &desired) => {}
            _ => {
                api.patch(
                    &ctx.webhook.name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&desired),
                )
                .await?;
                let change = if live.is_some() { "updated" } else { "created" };
                ctx.metrics
                    .webhook_config_applies
                    .with_label_values(&[change])
                    .inc();
                tracing::info!(
                    configuration = %ctx.webhook.name,
                    change,
                    webhooks = desired.webhooks.as_ref().map_or(0, Vec::len),
                    "applied ValidatingWebhookConfiguration"
                );
            }
        }
    }
    Ok(wait)
}

/// Puts the operator's labels on `kube-system`, Zastava's namespace and the fail-open ones,
/// and takes them off every other namespace: off those no longer listed (server-side apply
/// drops the labels its field manager no longer applies) and off those someone else labelled
/// (a JSON merge patch: apply never removes another manager's labels), with an Event on the
/// namespace and `zastava_operator_exemption_labels_removed_total`. The namespace watch
/// ([`triggers`]) brings the pass forward, so a label set by hand lasts about a second.
/// Namespaces that do not exist are not created.
async fn label_namespaces(
    ctx: &Context,
    fail_open: &std::collections::BTreeSet<String>,
) -> Result<(), Error> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let namespaces = api.list_metadata(&ListParams::default()).await?;
    for namespace in &namespaces.items {
        let name = namespace.name_any();
        let want = webhook_config::namespace_labels(&name, &ctx.namespace, fail_open);
        let mut have = webhook_config::managed_labels(namespace.labels());
        if want == have {
            continue;
        }
        let mut resource_version = namespace.resource_version();
        let ungranted = webhook_config::ungranted_labels(&have, &want);
        if !ungranted.is_empty() {
            let patch = webhook_config::removal_patch(resource_version.as_deref(), &ungranted);
            let patched = api
                .patch_metadata(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            resource_version = patched.resource_version();
            for label in &ungranted {
                let value = have.remove(label).unwrap_or_default();
                ctx.metrics
                    .exemption_labels_removed
                    .with_label_values(&[label])
                    .inc();
                tracing::warn!(namespace = %name, %label, %value, "removed an exemption label Zastava had not granted");
                let regarding = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Namespace".into()),
                    name: Some(name.clone()),
                    uid: namespace.uid(),
                    ..Default::default()
                };
                let note = webhook_config::removal_note(label, &value);
                if let Err(e) = ctx
                    .events
                    .publish(
                        regarding,
                        true,
                        EXEMPTION_REMOVED,
                        "ProtectExemptions",
                        &note,
                    )
                    .await
                {
                    tracing::warn!(error = %e, namespace = %name, "could not record Event");
                }
            }
            if want == have {
                continue;
            }
        }
        // The resourceVersion makes the apply conditional: a namespace deleted since the list
        // is a conflict, never re-created by the apply.
        let patch = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "resourceVersion": resource_version,
                "labels": want,
            },
        });
        api.patch(
            &name,
            &PatchParams::apply(NAMESPACE_FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        tracing::info!(namespace = %name, labels = ?want, "labelled namespace");
    }
    Ok(())
}

/// Keeps the webhook's pull-Secret RoleBinding in every namespace but Zastava's own and
/// kube-system ([`pull_secrets`]); the namespace watch ([`triggers`]) brings the pass forward
/// for a new namespace. A namespace that fails is logged and retried on the next pass.
async fn grant_pull_secrets(ctx: &Context, grant: &pull_secrets::Grant) -> Result<(), Error> {
    let Some(uid) = Api::<ClusterRole>::all(ctx.client.clone())
        .get_opt(&grant.cluster_role)
        .await?
        .and_then(|role| role.metadata.uid)
    else {
        tracing::warn!(cluster_role = %grant.cluster_role, "the ClusterRole granting pull Secrets does not exist; no RoleBinding written");
        return Ok(());
    };
    let names: Vec<String> = Api::<Namespace>::all(ctx.client.clone())
        .list_metadata(&ListParams::default())
        .await?
        .items
        .iter()
        // A terminating namespace accepts no new object.
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .map(|n| n.name_any())
        .collect();
    let granted = pull_secrets::granted_namespaces(&names, &ctx.namespace);
    let live: BTreeMap<String, RoleBinding> = Api::<RoleBinding>::all(ctx.client.clone())
        .list(&ListParams::default().fields(&format!("metadata.name={}", pull_secrets::BINDING)))
        .await?
        .items
        .into_iter()
        .filter_map(|b| Some((b.metadata.namespace.clone()?, b)))
        .collect();
    let (apply, delete) = pull_secrets::plan(grant, &uid, &ctx.namespace, &granted, &live);
    for namespace in apply {
        let api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), namespace);
        let binding = pull_secrets::desired(grant, &uid, &ctx.namespace, namespace);
        match api
            .patch(
                pull_secrets::BINDING,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&binding),
            )
            .await
        {
            Ok(_) => tracing::info!(%namespace, "webhook may read the namespace's pull Secrets"),
            Err(e) => {
                tracing::warn!(%namespace, error = %e, "cannot write the pull-Secret RoleBinding")
            }
        }
    }
    for namespace in delete {
        let api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), &namespace);
        match api
            .delete(pull_secrets::BINDING, &DeleteParams::default())
            .await
        {
            Ok(_) => {
                tracing::warn!(%namespace, "removed a pull-Secret RoleBinding from a namespace the webhook must not read")
            }
            Err(e) => {
                tracing::warn!(%namespace, error = %e, "cannot delete the pull-Secret RoleBinding")
            }
        }
    }
    Ok(())
}

/// The CSR flow: keeps the CA and the serving certificate; returns the CA bundle.
async fn provision(
    ctx: &Context,
    ca_secret_name: &str,
    validity: Duration,
    ca_validity: Duration,
    live: Option<&ValidatingWebhookConfiguration>,
) -> Result<(Option<CaSource>, StdDuration), Error> {
    let now = OffsetDateTime::now_utc();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let mut wait = RESYNC;

    let ca_secret = secrets.get_opt(ca_secret_name).await?;
    let ca_ref = secret_ref(&ctx.namespace, ca_secret_name, ca_secret.as_ref());
    let stored = read_ca(ca_secret.as_ref());
    let replace = match ca_renewal(now, &stored.map(|(ca, _)| ca.cert.clone())) {
        CaRenewal::Keep { .. } => None,
        CaRenewal::Replace {
            reason,
            keep_previous,
        } => Some((reason, keep_previous)),
    };
    let (ca, mut previous) = match (replace, stored) {
        (None, Observed::Present((ca, previous))) => (ca, previous),
        // `ca_renewal` keeps only a present CA: anything else is a replacement.
        (replace, stored) => {
            let (reason, keep_previous) = replace.unwrap_or((RenewReason::Missing, false));
            let old = match stored {
                Observed::Present((old, _)) if keep_previous => Some(old.cert),
                _ => None,
            };
            let ca = Authority::generate(now, ca_validity)?;
            ctx.metrics
                .certificate_renewals
                .with_label_values(&["ca", reason.label()])
                .inc();
            let note = format!(
                "{reason}; created CA {} valid until {}{}",
                ca.cert.subject,
                profile::display_time(ca.cert.not_after),
                if old.is_some() {
                    "; the previous CA stays trusted until the serving certificate is re-issued"
                } else {
                    ""
                }
            );
            let event_reason = match reason {
                RenewReason::Missing => "CertificateAuthorityCreated",
                _ if reason.is_problem() => "CertificateAuthorityReplaced",
                _ => "CertificateAuthorityRotated",
            };
            publish(
                ctx,
                ca_ref.clone(),
                reason.is_problem(),
                event_reason,
                &note,
            )
            .await;
            tracing::info!(reason = %reason, subject = %ca.cert.subject, "new webhook CA");
            (ca, old)
        }
    };

    let tls_secret = secrets.get_opt(&ctx.tls_secret).await?;
    let tls_ref = secret_ref(&ctx.namespace, &ctx.tls_secret, tls_secret.as_ref());
    let stored = read_serving(tls_secret.as_ref(), &ca.cert);
    let serving = stored.map(|(serving, _)| serving.clone());
    if let Some(p) = &previous {
        if now >= previous_ca_retires_at(p, serving.present()) {
            tracing::info!(subject = %p.subject, "the previous webhook CA leaves the bundle");
            previous = None;
        }
    }
    let ca_data = ca_secret_data(&ca, previous.as_ref());
    write_secret(ctx, &secrets, ca_secret_name, ca_secret.as_ref(), ca_data).await?;

    let expected = ctx.webhook.target.sans();
    // The certificate in the Secret, as long as its key goes with it.
    let current = stored
        .present()
        .filter(|(serving, _)| serving.key_matches)
        .map(|(serving, key_pem)| Material {
            cert_pem: serving.cert.pem(),
            cert: serving.cert.clone(),
            key_pem: key_pem.clone(),
        });
    // Whether the bundle this pass publishes still verifies the certificate in the Secret.
    let trusted = serving.present().is_some_and(|s| {
        s.issued_by_current_ca || previous.as_ref().is_some_and(|p| s.cert.issued_by(p))
    });
    let material = match serving_renewal(now, &serving, &expected) {
        Renewal::Keep { .. } => current,
        Renewal::Renew(reason)
            if wait_for_publication(
                &reason,
                trusted,
                webhook_config::ca_published(live, &ca.cert),
            ) =>
        {
            tracing::info!(
                reason = %reason,
                "waiting for the webhook configuration to trust the current CA before re-issuing"
            );
            wait = RETRY_UNPUBLISHED;
            current
        }
        Renewal::Renew(reason) => {
            ctx.metrics
                .certificate_renewals
                .with_label_values(&["serving", reason.label()])
                .inc();
            tracing::info!(reason = %reason, "issuing a serving certificate");
            match issue(ctx, &ca, &expected, validity, &reason, &tls_ref).await {
                Ok(Some(issued)) => Some(issued),
                Ok(None) => {
                    wait = RETRY_REFUSED;
                    current
                }
                Err(e) => {
                    ctx.metrics
                        .certificate_issuance
                        .with_label_values(&["error"])
                        .inc();
                    return Err(e);
                }
            }
        }
    };

    let mut bundle = vec![ca.cert.clone()];
    bundle.extend(previous.clone());
    let bundle_pem = profile::bundle_pem(&bundle);
    set_expiry(ctx, "ca", now, Some(&ca.cert));
    set_expiry(ctx, "serving", now, material.as_ref().map(|m| &m.cert));
    // Without a serving certificate the webhook cannot serve: no configuration may call it.
    let Some(material) = material else {
        return Ok((None, wait));
    };
    let mut deadlines = vec![renewal_time(&ca.cert), renewal_time(&material.cert)];
    if let Some(p) = &previous {
        let serving = ServingCert {
            issued_by_current_ca: material.cert.issued_by(&ca.cert),
            cert: material.cert.clone(),
            key_matches: true,
        };
        deadlines.push(previous_ca_retires_at(p, Some(&serving)));
    }
    let data = BTreeMap::from([
        ("tls.crt".to_string(), material.cert_pem.into_bytes()),
        ("tls.key".to_string(), material.key_pem.into_bytes()),
        ("ca.crt".to_string(), bundle_pem.clone().into_bytes()),
    ]);
    write_secret(ctx, &secrets, &ctx.tls_secret, tls_secret.as_ref(), data).await?;
    Ok((
        Some(CaSource::Bundle(bundle_pem)),
        next_check(OffsetDateTime::now_utc(), deadlines, wait),
    ))
}

/// A serving certificate and its key, as stored in the TLS Secret.
struct Material {
    cert: CertInfo,
    cert_pem: String,
    key_pem: String,
}

/// One CSR round; `None` when someone else refused it (reported, retried later).
async fn issue(
    ctx: &Context,
    ca: &Authority,
    sans: &std::collections::BTreeSet<profile::San>,
    validity: Duration,
    reason: &RenewReason,
    tls_ref: &ObjectReference,
) -> Result<Option<Material>, Error> {
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    let request = csr::Request {
        api: &api,
        ca,
        sans,
        configuration: &ctx.webhook.name,
        validity,
    };
    let outcome = match request.issue().await {
        Ok(outcome) => outcome,
        Err(e) => {
            // The key of a half-done request is gone with this pass: its CSR is of no use.
            clean_up(&api, &ctx.webhook.name, None).await;
            return Err(e);
        }
    };
    let result = match &outcome {
        csr::Outcome::Issued { .. } => "issued",
        csr::Outcome::Refused { state, .. } => state.result(),
    };
    ctx.metrics
        .certificate_issuance
        .with_label_values(&[result])
        .inc();
    match outcome {
        csr::Outcome::Issued {
            csr,
            cert_pem,
            key_pem,
        } => {
            // Stored re-encoded (see `CertInfo::pem`), so the next pass finds it unchanged.
            let cert = parse_certificates(cert_pem.as_bytes())?.remove(0);
            let note = format!(
                "{reason}; CSR {csr} issued a new certificate for [{}] valid until {}",
                profile::display_sans(&cert.sans),
                profile::display_time(cert.not_after)
            );
            publish(
                ctx,
                tls_ref.clone(),
                reason.is_problem(),
                reason.event_reason(),
                &note,
            )
            .await;
            tracing::info!(%csr, not_after = %profile::display_time(cert.not_after), "issued the webhook serving certificate");
            clean_up(&api, &ctx.webhook.name, Some(&csr)).await;
            Ok(Some(Material {
                cert_pem: cert.pem(),
                cert,
                key_pem,
            }))
        }
        csr::Outcome::Refused { csr, state } => {
            let (event_reason, what) = match &state {
                csr::CsrState::Denied { reason, message } => (
                    "CertificateRequestDenied",
                    format!("was denied ({reason}: {message})"),
                ),
                csr::CsrState::Failed { reason, message } => (
                    "CertificateRequestFailed",
                    format!("failed ({reason}: {message})"),
                ),
                _ => ("CertificateRequestDeleted", "was deleted".to_string()),
            };
            let note = format!(
                "CSR {csr} {what} before it was issued, by someone other than the operator; \
                 requesting a new certificate in {}s",
                RETRY_REFUSED.as_secs()
            );
            tracing::warn!(%csr, ?state, "serving certificate request refused");
            publish(ctx, tls_ref.clone(), true, event_reason, &note).await;
            clean_up(&api, &ctx.webhook.name, None).await;
            Ok(None)
        }
    }
}

/// Deletes this configuration's CSRs but `keep`; best effort, as what is left is deleted by
/// the next issuance (and the API server's CSR cleaner).
async fn clean_up(api: &Api<CertificateSigningRequest>, configuration: &str, keep: Option<&str>) {
    match csr::clean_up(api, configuration, keep).await {
        Ok(deleted) => tracing::debug!(deleted, "deleted older CSRs"),
        Err(e) => tracing::warn!(error = %e, "could not delete older CSRs"),
    }
}

/// The CA Secret's CA and previous CA.
fn read_ca(secret: Option<&Secret>) -> Observed<(Authority, Option<CertInfo>)> {
    let Some(secret) = secret else {
        return Observed::Missing;
    };
    let (Some(cert), Some(key)) = (data(secret, "tls.crt"), data(secret, "tls.key")) else {
        return Observed::Invalid("tls.crt or tls.key is missing".into());
    };
    match Authority::load(cert, key) {
        Ok(ca) => {
            let previous = data(secret, PREVIOUS_CA_KEY).and_then(|pem| {
                parse_certificates(pem)
                    .inspect_err(
                        |e| tracing::warn!(error = %e, "dropping the unusable previous CA"),
                    )
                    .ok()
                    .and_then(|mut certs| (certs.len() == 1).then(|| certs.remove(0)))
            });
            Observed::Present((ca, previous))
        }
        Err(e) => Observed::Invalid(e.to_string()),
    }
}

/// The TLS Secret's serving certificate checked against its key and `ca`, and that key.
fn read_serving(secret: Option<&Secret>, ca: &CertInfo) -> Observed<(ServingCert, String)> {
    let Some(secret) = secret else {
        return Observed::Missing;
    };
    let (Some(cert), Some(key)) = (data(secret, "tls.crt"), data(secret, "tls.key")) else {
        return Observed::Invalid("tls.crt or tls.key is missing".into());
    };
    let key = String::from_utf8_lossy(key).into_owned();
    let cert = match parse_certificates(cert) {
        Ok(mut chain) => chain.remove(0),
        Err(e) => return Observed::Invalid(format!("tls.crt: {e}")),
    };
    match cert.matches_key(&key) {
        Ok(key_matches) => Observed::Present((
            ServingCert {
                issued_by_current_ca: cert.issued_by(ca),
                cert,
                key_matches,
            },
            key,
        )),
        Err(e) => Observed::Invalid(format!("tls.key: {e}")),
    }
}

fn data<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|v| v.0.as_slice())
        .filter(|v| !v.is_empty())
}

fn ca_secret_data(ca: &Authority, previous: Option<&CertInfo>) -> BTreeMap<String, Vec<u8>> {
    let mut data = BTreeMap::from([
        ("tls.crt".to_string(), ca.cert.pem().into_bytes()),
        ("tls.key".to_string(), ca.key_pem().as_bytes().to_vec()),
    ]);
    if let Some(previous) = previous {
        data.insert(PREVIOUS_CA_KEY.to_string(), previous.pem().into_bytes());
    }
    data
}

/// Applies a `kubernetes.io/tls` Secret holding exactly `data`, unless it already does. A
/// Secret of another type in its place (the type is immutable) is deleted first.
async fn write_secret(
    ctx: &Context,
    api: &Api<Secret>,
    name: &str,
    live: Option<&Secret>,
    data: BTreeMap<String, Vec<u8>>,
) -> Result<(), Error> {
    if let Some(live) = live {
        let same_data = live.data.as_ref().is_some_and(|have| {
            have.len() == data.len()
                && data
                    .iter()
                    .all(|(k, v)| have.get(k).is_some_and(|h| h.0 == *v))
        });
        let is_tls = live.type_.as_deref() == Some(TLS_TYPE);
        if same_data && is_tls {
            return Ok(());
        }
        if !is_tls {
            let note = format!(
                "Secret {name} has type {:?}, not {TLS_TYPE}; replacing it",
                live.type_.as_deref().unwrap_or("Opaque")
            );
            publish(ctx, live.object_ref(&()), true, "SecretReplaced", &note).await;
            api.delete(name, &DeleteParams::default()).await?;
        }
    }
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/managed-by": FIELD_MANAGER,
                "app.kubernetes.io/part-of": "zastava",
            },
        },
        "type": TLS_TYPE,
        "data": data
            .into_iter()
            .map(|(k, v)| (k, ByteString(v)))
            .collect::<BTreeMap<_, _>>(),
    });
    api.patch(
        name,
        &PatchParams::apply(TLS_FIELD_MANAGER).force(),
        &Patch::Apply(&secret),
    )
    .await?;
    tracing::info!(secret = %name, "wrote Secret");
    Ok(())
}

/// The `--webhook-existing-secret` flow: reports on the Secret someone else keeps and returns
/// the CA bundle to publish, `None` when there is none to publish.
async fn existing_secret(
    ctx: &Context,
    cert_manager_certificate: Option<&str>,
) -> Result<Option<CaSource>, Error> {
    let now = OffsetDateTime::now_utc();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let secret = secrets.get_opt(&ctx.tls_secret).await?;
    let tls_ref = secret_ref(&ctx.namespace, &ctx.tls_secret, secret.as_ref());

    let serving = match secret.as_ref().map(|s| data(s, "tls.crt")) {
        None => Observed::Missing,
        Some(None) => Observed::Invalid("tls.crt is missing".into()),
        Some(Some(pem)) => match parse_certificates(pem) {
            Ok(mut chain) => Observed::Present(chain.remove(0)),
            Err(e) => Observed::Invalid(format!("tls.crt: {e}")),
        },
    };
    set_expiry(ctx, "serving", now, serving.present());
    let problem = match &serving {
        Observed::Missing => Some(RenewReason::Missing),
        Observed::Invalid(why) => Some(RenewReason::Invalid(why.clone())),
        Observed::Present(cert) => expiry(now, cert),
    };

    let (ca, ca_problem) = match cert_manager_certificate {
        Some(certificate) => (Some(CaSource::CertManager(certificate.to_string())), None),
        None => match secret.as_ref().and_then(|s| data(s, "ca.crt")) {
            None => (None, Some("ca.crt is missing".to_string())),
            Some(pem) => match parse_certificates(pem) {
                Ok(certs) => (Some(CaSource::Bundle(profile::bundle_pem(&certs))), None),
                Err(e) => (None, Some(format!("ca.crt: {e}"))),
            },
        },
    };

    let warning = match (&problem, &ca_problem) {
        (None, None) => None,
        (cert, ca) => Some(
            [
                cert.as_ref().map(|r| format!("serving certificate: {r}")),
                ca.as_ref()
                    .map(|c| format!("{c}; the webhook configuration is left as it is")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; "),
        ),
    };
    let changed = {
        let mut last = ctx
            .last_warning
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let changed = *last != warning;
        last.clone_from(&warning);
        changed
    };
    if let (true, Some(note)) = (changed, &warning) {
        let reason = problem
            .as_ref()
            .map_or("CertificateAuthorityUnusable", RenewReason::event_reason);
        tracing::warn!(secret = %ctx.tls_secret, %note, "the existing webhook Secret needs attention");
        let note = format!(
            "Secret {} is not managed by the operator (--webhook-existing-secret): {note}",
            ctx.tls_secret
        );
        publish(ctx, tls_ref, true, reason, &note).await;
    }
    Ok(ca)
}

fn secret_ref(namespace: &str, name: &str, live: Option<&Secret>) -> ObjectReference {
    live.map(|s| s.object_ref(&()))
        .unwrap_or_else(|| ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Secret".into()),
            namespace: Some(namespace.to_string()),
            name: Some(name.to_string()),
            ..Default::default()
        })
}

fn set_expiry(ctx: &Context, certificate: &str, now: OffsetDateTime, cert: Option<&CertInfo>) {
    let gauge = ctx
        .metrics
        .certificate_expiry
        .with_label_values(&[certificate]);
    match cert {
        Some(cert) => gauge.set((cert.not_after - now).as_seconds_f64()),
        None => gauge.set(0.0),
    }
}

/// Events are best effort: the state they report is in the Secrets and metrics as well.
async fn publish(
    ctx: &Context,
    regarding: ObjectReference,
    warning: bool,
    reason: &str,
    note: &str,
) {
    if let Err(e) = ctx
        .events
        .publish(regarding, warning, reason, "ProvisionWebhookTLS", note)
        .await
    {
        tracing::warn!(error = %e, reason, "could not record Event");
    }
}
