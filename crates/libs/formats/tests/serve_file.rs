//! The committed `schema/serve.schema.json` equals the one generated from the types (regenerate
//! with `CELLOPS_BLESS=1 cargo test -p cellops-formats --test serve_file`), and the example
//! `serve.json` is valid under both.

use std::path::{Path, PathBuf};

use cellops_formats::serve::{ServeConfig, schema_json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

#[test]
fn committed_schema_is_in_sync() {
    let path = root().join("schema/serve.schema.json");
    let generated = schema_json();
    if std::env::var("CELLOPS_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &generated).expect("write schema");
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (CELLOPS_BLESS=1 creates it)", path.display()));
    assert!(
        committed == generated,
        "{} is out of date: run CELLOPS_BLESS=1 cargo test -p cellops-formats --test serve_file",
        path.display()
    );
    let v: serde_json::Value = serde_json::from_str(&generated).expect("json");
    assert_eq!(v["additionalProperties"], serde_json::Value::Bool(false));
    assert!(v["properties"]["limits"].is_object());
}

#[test]
fn the_example_is_valid() {
    let path = root().join("serve.json");
    let c = ServeConfig::read(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.listen.ip().is_loopback(), "the example listens on loopback");
}
