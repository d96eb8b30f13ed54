//! The `ZastavaPolicy` reconciler: fetch the referenced Secrets, assess, write status (with the
//! public keys and certificates read from Secrets, which the webhook takes from there).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use zastava_crds::conditions;
use zastava_crds::{ZastavaPolicy, ZastavaPolicyStatus};

use crate::status::{policy_conditions, transition_event};
use crate::validate::{assess, assess_backend, referenced_secrets, SecretData};
use crate::{Error, Metrics, FIELD_MANAGER};
use zastava_process::events::EventPublisher;

/// How often an accepted policy is looked at again, so a deleted or edited key Secret shows.
const RESYNC: Duration = Duration::from_secs(300);
/// How soon a rejected policy is looked at again (a missing Secret may appear).
const RETRY_REJECTED: Duration = Duration::from_secs(20);
const RETRY_ERROR: Duration = Duration::from_secs(10);

pub struct Context {
    pub client: Client,
    /// Zastava's own namespace: where key Secrets live.
    pub namespace: String,
    pub events: EventPublisher,
    pub metrics: Metrics,
    /// The Secrets the webhook may read for backend credentials (its Role names them), when
    /// known: a policy naming another is told so in its status.
    pub webhook_backend_secrets: Option<BTreeSet<String>>,
}

impl Context {
    pub fn new(
        client: Client,
        namespace: String,
        identity: String,
        metrics: Metrics,
        webhook_backend_secrets: Option<BTreeSet<String>>,
    ) -> Self {
        Self {
            events: EventPublisher::new(client.clone(), FIELD_MANAGER, identity),
            client,
            namespace,
            metrics,
            webhook_backend_secrets,
        }
    }
}

const KIND: &str = "ZastavaPolicy";

pub async fn reconcile(policy: Arc<ZastavaPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let name = policy.name_any();

    let secrets_api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let mut secrets = BTreeMap::new();
    for secret_name in referenced_secrets(&policy.spec) {
        let data: SecretData = secrets_api.get_opt(&secret_name).await?.map(|s| {
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect()
        });
        secrets.insert(secret_name, data);
    }

    let mut assessment = assess(&policy.spec, &secrets);
    assessment.problems.extend(assess_backend(
        &policy.spec,
        &secrets,
        ctx.webhook_backend_secrets.as_ref(),
    ));
    let desired = policy_conditions(&assessment, policy.spec.mode);
    let previous = policy
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = policy.metadata.generation;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = ZastavaPolicyStatus {
        observed_generation: generation,
        conditions: conditions::settle(previous, &desired, generation, &now),
        resolved_keys: Some(assessment.resolved_keys),
        secret_keys: assessment.secret_keys.clone(),
        resolved_identities: Some(assessment.resolved_identities),
        resolved_certificates: assessment.resolved_certificates.clone(),
        secret_certificates: assessment.secret_certificates.clone(),
    };
    let event = transition_event(previous, &desired);

    let api: Api<ZastavaPolicy> = Api::all(ctx.client.clone());
    let patch = json!({
        "apiVersion": ZastavaPolicy::api_version(&()),
        "kind": KIND,
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;

    if let Some(event) = event {
        let published = ctx
            .events
            .publish(
                policy.object_ref(&()),
                event.warning,
                &event.reason,
                "Validate",
                &event.note,
            )
            .await;
        // The status already carries the verdict; a lost Event is logged, not retried.
        if let Err(e) = published {
            tracing::warn!(policy = %name, error = %e, "could not record Event");
        }
    }

    let accepted = assessment.accepted();
    let result = if accepted { "accepted" } else { "rejected" };
    if let Some(first) = assessment.problems.first() {
        ctx.metrics
            .policy_rejections
            .with_label_values(&[first.reason.as_str()])
            .inc();
    }
    ctx.metrics
        .reconciliations
        .with_label_values(&[KIND, result])
        .inc();
    ctx.metrics
        .reconcile_duration
        .with_label_values(&[KIND])
        .observe(started.elapsed().as_secs_f64());
    tracing::info!(
        policy = %name,
        generation,
        result,
        keys = assessment.resolved_keys,
        identities = assessment.resolved_identities,
        certificates = assessment.resolved_certificates.len(),
        problems = assessment.problems.len(),
        "reconciled ZastavaPolicy"
    );
    Ok(Action::requeue(if accepted {
        RESYNC
    } else {
        RETRY_REJECTED
    }))
}

pub fn error_policy(policy: Arc<ZastavaPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(policy = %policy.name_any(), %error, "reconcile failed; retrying");
    ctx.metrics
        .reconciliations
        .with_label_values(&[KIND, "error"])
        .inc();
    Action::requeue(RETRY_ERROR)
}

/// Runs the policy controller until `shutdown` resolves, then lets in-flight reconciliations
/// finish.
pub async fn run_policy_controller(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<ZastavaPolicy> = Api::all(ctx.client.clone());
    let secrets: Api<PartialObjectMeta<Secret>> =
        Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let controller = Controller::new(api, watcher::Config::default());
    let policies = controller.store();
    controller
        // A key Secret created, edited or deleted reaches the policies naming it at once, so
        // the keys the webhook takes from their status follow a rotation or a revocation
        // without waiting for the resync. Metadata only: no Secret's data is held here.
        .watches_stream(
            watcher(secrets, watcher::Config::default())
                .default_backoff()
                .touched_objects(),
            move |secret| {
                let name = secret.name_any();
                policies
                    .state()
                    .into_iter()
                    .filter(|p| referenced_secrets(&p.spec).contains(&name))
                    .map(|p| ObjectRef::from_obj(p.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                // Watch errors (API server down, CRD missing) are retried with backoff by the
                // controller; they surface here for the log only.
                tracing::warn!(error = %e, "policy controller");
            }
        })
        .await;
}
