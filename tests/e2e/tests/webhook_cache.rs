//! The webhook's verdict cache on the real cluster and registry. A test binary of its own:
//! any policy change empties the cache, and the tests of webhook.rs change policies while
//! they run (test binaries run one after another).

use std::time::Duration;

use zastava_e2e::webhook::{deployment, logged_decisions, pod, Governed};
use zastava_e2e::{kubectl_apply, unique, wait_for, TestImage};

#[tokio::test]
async fn a_workloads_pods_and_its_pinned_digest_are_answered_from_the_cache() {
    let governed = Governed::new("e2e-cache", "Enforce").await;
    let ns = governed.ns.clone();
    let good = TestImage::push(&unique("cached"), "v1");
    governed.keys.sign(&good.by_digest());
    good.attach_sbom();

    kubectl_apply(&deployment(&ns, "good", &good.by_tag())).expect("Deployment admitted");
    // The same image by digest: the tag's lookup went through the per-digest cache.
    kubectl_apply(&pod(&ns, "pinned", &good.by_digest())).expect("pinned Pod admitted");

    let (deployment_decision, pod_decision, pinned_decision) = wait_for(
        "the decisions on the Deployment, its Pod and the pinned Pod",
        Duration::from_secs(120),
        || async {
            let mine = logged_decisions(&ns, &good.repository);
            let pinned = |l: &&serde_json::Value| {
                l["decision"]["images"][0]["name"]
                    .as_str()
                    .is_some_and(|n| n.contains('@'))
            };
            let deployment = mine.iter().find(|l| l["kind"] == "Deployment")?.clone();
            let pod = (mine.iter())
                .find(|l| l["kind"] == "Pod" && !pinned(l))?
                .clone();
            let pinned_pod = (mine.iter())
                .find(|l| l["kind"] == "Pod" && pinned(l))?
                .clone();
            Some((deployment, pod, pinned_pod))
        },
    )
    .await;
    // The Deployment's admission asked the registry; its Pod's (and ReplicaSet's) found the
    // tag cached, the pinned Pod's found the digest cached.
    let counts = |d: &serde_json::Value| (d["cache_hits"].as_u64(), d["cache_misses"].as_u64());
    assert_eq!(
        counts(&deployment_decision),
        (Some(0), Some(1)),
        "{deployment_decision}"
    );
    assert_eq!(counts(&pod_decision), (Some(1), Some(0)), "{pod_decision}");
    assert_eq!(
        counts(&pinned_decision),
        (Some(1), Some(0)),
        "{pinned_decision}"
    );
    governed.remove().await;
}
