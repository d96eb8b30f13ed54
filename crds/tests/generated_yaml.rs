//! The committed CRD YAML must be exactly what the Rust types generate.

use std::path::Path;

#[test]
fn committed_crd_yaml_matches_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, generated) in zastava_crds::crd_manifests() {
        let committed = std::fs::read_to_string(dir.join(&name))
            .unwrap_or_else(|e| panic!("crds/{name} is missing ({e}); run `make crds`"));
        assert!(
            committed == generated,
            "crds/{name} differs from what the types generate; run `make crds` and commit"
        );
    }
}

#[test]
fn every_crd_has_a_status_subresource_and_printer_columns() {
    for (name, yaml) in zastava_crds::crd_manifests() {
        let crd: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        let version = &crd["spec"]["versions"][0];
        assert!(
            version["subresources"]["status"].is_mapping(),
            "{name}: no status subresource"
        );
        let columns = version["additionalPrinterColumns"].as_sequence().unwrap();
        assert!(
            columns.iter().any(|c| c["name"] == "Ready"),
            "{name}: no Ready column"
        );
        let conditions = &version["schema"]["openAPIV3Schema"]["properties"]["status"]
            ["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{name}");
    }
}

#[test]
fn no_enum_lists_null() {
    for (name, yaml) in zastava_crds::crd_manifests() {
        assert!(
            !yaml.contains("- null"),
            "{name} lists null among enum values"
        );
    }
}
