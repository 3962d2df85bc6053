//! The committed JSON Schema equals the one generated from the types (regenerate with
//! `CELLOPS_BLESS=1 cargo test -p cellops-formats --test params_files`), and every shipped
//! parameter file is valid.

mod common;

use cellops_formats::params::{CellParams, schema_json};
use common::{assert_committed, root};

#[test]
fn committed_schema_is_in_sync() {
    assert_committed("schema/cell-params.schema.json", &schema_json(), "params_files");
}

#[test]
fn committed_reference_is_in_sync() {
    let generated = cellops_formats::params::reference_markdown();
    assert_committed("docs/cell-params.md", &generated, "params_files");
    assert!(
        generated.contains("| `description` | string | **required** |"),
        "{generated}"
    );
    assert!(generated.contains("| `nuclear_channel` |"), "{generated}");
}

#[test]
fn shipped_parameter_files_are_valid() {
    let dir = root().join("cell-params");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("cell-params/") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "yaml") {
            CellParams::from_file(&p).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 4, "expected the H&E, IHC and fluorescence examples, found {n}");
}

#[test]
fn schema_describes_the_fields() {
    let v: serde_json::Value = serde_json::from_str(&schema_json()).expect("json");
    let props = &v["properties"];
    assert!(
        props["pixel_size_um"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("micrometres"))
    );
    let required: Vec<&str> = v["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(|x| x.as_str())
        .collect();
    assert_eq!(required, ["description"], "pixel_size_um may come from each image");
    assert_eq!(v["additionalProperties"], serde_json::Value::Bool(false));
}
