//! The committed `schema/serve.schema.json` equals the one generated from the types (regenerate
//! with `CELLOPS_BLESS=1 cargo test -p cellops-formats --test serve_file`), and the example
//! `serve.json` is valid under both.

mod common;

use cellops_formats::serve::{ServeConfig, schema_json};
use common::{assert_committed, root};

#[test]
fn committed_schema_is_in_sync() {
    let generated = schema_json();
    assert_committed("schema/serve.schema.json", &generated, "serve_file");
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
