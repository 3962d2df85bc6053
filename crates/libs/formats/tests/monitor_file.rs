//! The committed `schema/monitor.schema.json` equals the one generated from the types (regenerate
//! with `CELLOPS_BLESS=1 cargo test -p cellops-formats --test monitor_file`), and the example
//! `monitor.yaml` is valid.

mod common;

use cellops_formats::monitor::{MonitorConfig, schema_json};
use common::{assert_committed, root};

#[test]
fn committed_schema_is_in_sync() {
    let generated = schema_json();
    assert_committed("schema/monitor.schema.json", &generated, "monitor_file");
    let v: serde_json::Value = serde_json::from_str(&generated).expect("json");
    assert_eq!(v["additionalProperties"], serde_json::Value::Bool(false));
    assert!(v["properties"]["slo"].is_object());
}

#[test]
fn the_example_is_valid() {
    let c = MonitorConfig::read(&root().join("monitor.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.slo.window, "1h");
}
