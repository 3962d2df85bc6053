//! The committed JSON Schema equals the one generated from the types (regenerate with
//! `CELLOPS_BLESS=1 cargo test -p cellops-formats --test params_files`), and every shipped
//! parameter file is valid.

use std::path::{Path, PathBuf};

use cellops_formats::params::{CellParams, schema_json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

#[test]
fn committed_schema_is_in_sync() {
    let path = root().join("schema/cell-params.schema.json");
    let generated = schema_json();
    if std::env::var("CELLOPS_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &generated).expect("write schema");
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (CELLOPS_BLESS=1 creates it)", path.display()));
    assert!(
        committed == generated,
        "{} is out of date: run CELLOPS_BLESS=1 cargo test -p cellops-formats --test params_files",
        path.display()
    );
}

#[test]
fn committed_reference_is_in_sync() {
    let path = root().join("docs/cell-params.md");
    let generated = cellops_formats::params::reference_markdown();
    if std::env::var("CELLOPS_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &generated).expect("write reference");
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (CELLOPS_BLESS=1 creates it)", path.display()));
    assert!(
        committed == generated,
        "{} is out of date: run CELLOPS_BLESS=1 cargo test -p cellops-formats --test params_files",
        path.display()
    );
    assert!(generated.contains("| `pixel_size_um` | number | **required** |"));
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
    assert_eq!(required, ["description", "pixel_size_um"]);
    assert_eq!(v["additionalProperties"], serde_json::Value::Bool(false));
}
