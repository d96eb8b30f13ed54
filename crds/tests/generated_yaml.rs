//! The committed CRD YAML must be exactly what the Rust types generate.

use std::path::Path;

/// Where `make crds` writes the YAML: this crate (kustomize base of config/default) and the
/// Helm chart's `crds/`.
const COPIES: [&str; 2] = ["crds", "charts/zastava/crds"];

#[test]
fn committed_crd_yaml_matches_the_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for copy in COPIES {
        for (name, generated) in zastava_crds::crd_manifests() {
            let committed = std::fs::read_to_string(root.join(copy).join(&name))
                .unwrap_or_else(|e| panic!("{copy}/{name} is missing ({e}); run `make crds`"));
            assert!(
                committed == generated,
                "{copy}/{name} differs from what the types generate; run `make crds` and commit"
            );
        }
    }
}

#[test]
fn the_chart_holds_no_other_crd_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/zastava/crds");
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make crds`", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    let mut expected: Vec<String> = zastava_crds::crd_manifests()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    expected.sort();
    assert_eq!(present, expected, "charts/zastava/crds/ holds other files");
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
