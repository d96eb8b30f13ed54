//! What a registry answers: manifests, signature payloads, keyless signing certificates, auth
//! challenges and the pull Secrets naming it. Any bytes are read or refused, never a panic; the
//! signature layers taken from a manifest are few, small and typed as cosign's, their keyless
//! annotations capped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use zastava_registry::distribution::parse_challenge;
use zastava_registry::keyless::Leaf;
use zastava_registry::limits::{MAX_KEYLESS_ANNOTATION_BYTES, MAX_PAYLOAD_BYTES, MAX_SIGNATURE_LAYERS};
use zastava_registry::{
    artifact_type, attestation_sbom_types, docker_config_auth, COSIGN_SIMPLESIGNING, layer_types, payload_digest,
    simplesigning_layers,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = serde_json::from_slice::<Value>(data) {
        let _ = artifact_type(&manifest);
        let layers = manifest["layers"].as_array().map_or(0, Vec::len);
        assert!(layer_types(&manifest).len() <= layers);
        assert!(attestation_sbom_types(&manifest).len() <= layers);
        let signatures = simplesigning_layers(&manifest);
        assert!(signatures.len() <= MAX_SIGNATURE_LAYERS.min(layers));
        for (descriptor, annotations) in &signatures {
            assert!((0..=MAX_PAYLOAD_BYTES as i64).contains(&descriptor.size));
            assert_eq!(descriptor.media_type, COSIGN_SIMPLESIGNING);
            for keyless in [&annotations.certificate, &annotations.chain, &annotations.bundle, &annotations.timestamp] {
                assert!(keyless.as_ref().is_none_or(|a| a.len() <= MAX_KEYLESS_ANNOTATION_BYTES));
            }
            if let Some(certificate) = &annotations.certificate {
                let _ = Leaf::from_pem(certificate);
            }
        }
    }
    let _ = payload_digest(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Leaf::from_pem(text);
    }
    let _ = Leaf::from_der(data);
    let _ = docker_config_auth(data, "registry.test:5000");
    if let Ok(header) = std::str::from_utf8(data) {
        let (scheme, params) = parse_challenge(header);
        assert!(header.contains(scheme.as_str()));
        assert!(params.keys().all(|k| *k == k.to_ascii_lowercase()));
    }
});
