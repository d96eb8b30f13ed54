//! Every ZastavaPolicy in config/samples/ parses into the CRD types and is accepted, except
//! `broken-key`, which exists to show a rejection.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use zastava_crds::ZastavaPolicy;
use zastava_operator::validate::{assess, SecretData};

fn sample_documents() -> Vec<(String, serde_yaml_ng::Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/samples");
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        // config/samples/gitops/ holds Argo CD and Flux objects, not policies.
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = serde_yaml_ng::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            docs.push((path.display().to_string(), value));
        }
    }
    docs
}

#[test]
fn sample_policies_are_accepted_or_rejected_as_documented() {
    let docs = sample_documents();
    // Secrets shipped beside the policies, as the operator would find them.
    let secrets: BTreeMap<String, SecretData> = docs
        .iter()
        .filter(|(_, d)| d["kind"] == "Secret")
        .map(|(_, d)| {
            let data = d["stringData"]
                .as_mapping()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap().to_string(),
                        v.as_str().unwrap().as_bytes().to_vec(),
                    )
                })
                .collect();
            (
                d["metadata"]["name"].as_str().unwrap().to_string(),
                Some(data),
            )
        })
        .collect();

    let mut seen = 0;
    for (file, doc) in docs.iter().filter(|(_, d)| d["kind"] == "ZastavaPolicy") {
        let policy: ZastavaPolicy = serde_yaml_ng::from_value(doc.clone())
            .unwrap_or_else(|e| panic!("{file}: not a ZastavaPolicy: {e}"));
        let assessment = assess(&policy.spec, &secrets);
        let name = policy.metadata.name.as_deref().unwrap();
        if name == "broken-key" {
            assert_eq!(
                assessment.problems[0].field,
                "spec.verify.signature.keys[0].pem"
            );
        } else {
            assert!(assessment.accepted(), "{file}: {:?}", assessment.problems);
        }
        seen += 1;
    }
    assert!(seen >= 3, "expected the sample policies, found {seen}");
}
