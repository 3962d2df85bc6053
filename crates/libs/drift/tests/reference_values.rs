//! Every statistic against what SciPy and Evidently compute for the same samples
//! (`tests/data/reference_values.json`, written by `bench/monitor_fixtures.py` with SciPy and
//! Evidently 0.4.40): agreement to 1e-9.

use cellops_drift::binned::{hellinger, jensen_shannon, psi};
use cellops_drift::distance::{wasserstein, wasserstein_normed};
use cellops_drift::ks::{KsMethod, kolmogorov_sf, ks_2samp};
use serde_json::Value;

const TOLERANCE: f64 = 1e-9;

fn cases() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/reference_values.json");
    let text = std::fs::read_to_string(path).expect("the fixture file");
    let all: Value = serde_json::from_str(&text).expect("JSON");
    all["cases"].as_array().expect("cases").clone()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

/// `got` is within [`TOLERANCE`] of `want`, absolutely or relative to it.
fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= TOLERANCE * want.abs().max(1.0)
}

#[test]
fn every_statistic_agrees_with_scipy_and_evidently() {
    let cases = cases();
    assert!(cases.len() >= 10, "the fixture has its cases");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        let (r, c) = (floats(&case["reference"]), floats(&case["current"]));
        let ks = ks_2samp(&r, &c).expect("ks");
        let exact = case["ks_exact"].as_bool().expect("ks_exact");
        assert_eq!(ks.method == KsMethod::Exact, exact, "{name}: KS method");
        let en = {
            let (a, b) = (r.len().max(c.len()) as f64, r.len().min(c.len()) as f64);
            a * b / (a + b)
        };
        let mut checks = vec![
            ("ks_statistic", ks.statistic),
            ("kolmogorov_sf", kolmogorov_sf(en.sqrt() * ks.statistic)),
            ("wasserstein", wasserstein(&r, &c).expect("wasserstein")),
            ("wasserstein_normed", wasserstein_normed(&r, &c).expect("normed")),
            ("psi", psi(&r, &c).expect("psi")),
            ("jensen_shannon", jensen_shannon(&r, &c).expect("js")),
            ("hellinger", hellinger(&r, &c).expect("hellinger")),
        ];
        // Exact p-values are SciPy's (and Evidently's, which calls it); above 10,000 values
        // ours is Kolmogorov's limit (checked above), SciPy's its finite-n distribution.
        if exact {
            checks.push(("ks_p_value", ks.p_value));
            checks.push(("evidently_ks_p_value", ks.p_value));
        }
        for (key, got) in checks {
            let want = case[key].as_f64().unwrap_or_else(|| panic!("{name}: {key}"));
            if !close(got, want) {
                failures.push(format!("{name}: {key} = {got}, reference {want}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
