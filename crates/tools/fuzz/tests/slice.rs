//! The short, seeded slice of the fuzz run that CI runs: every target, a few thousand cases each,
//! no panic and no hang. Inputs that once broke a parser stay here as regression cases.

use std::time::Duration;

use cellops_fuzz::{Settings, run, targets};

#[test]
fn every_parser_survives_a_seeded_slice() {
    let settings = Settings {
        cases: 3_000,
        seed: 20_261_207,
        budget: Some(Duration::from_secs(60)),
        hang_after: Duration::from_secs(30),
    };
    let mut failures = Vec::new();
    for t in targets() {
        let r = run(&t, settings);
        assert!(r.cases > 0, "{}: no case ran", t.name);
        assert!(r.accepted > 0, "{}: not even the seeds were accepted", t.name);
        for f in r.findings.iter().chain(r.hang.iter()) {
            failures.push(format!(
                "{} case {}: {} (input {:?})",
                t.name,
                f.case,
                f.message,
                String::from_utf8_lossy(&f.input)
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn a_panicking_parser_is_caught_and_reported_with_its_input() {
    let t = cellops_fuzz::Target {
        name: "test-panics",
        what: "a parser that panics on a quote",
        seeds: || vec![b"abc".to_vec()],
        parse: |b| {
            assert!(!b.contains(&b'"'), "a quote");
            true
        },
    };
    let r = run(
        &t,
        Settings {
            cases: 2_000,
            seed: 3,
            budget: None,
            hang_after: Duration::from_secs(30),
        },
    );
    assert_eq!(r.cases, 2_000, "panics do not stop the run");
    assert!(!r.findings.is_empty());
    assert!(
        r.findings
            .iter()
            .all(|f| f.input.contains(&b'"') && f.message.contains("a quote"))
    );
}

#[test]
fn a_hanging_parser_stops_the_run_as_a_hang() {
    let t = cellops_fuzz::Target {
        name: "test-hangs",
        what: "a parser that never returns on an empty input",
        seeds: || vec![b"x".to_vec()],
        parse: |b| {
            while b.is_empty() {
                std::thread::sleep(Duration::from_millis(50));
            }
            true
        },
    };
    let r = run(
        &t,
        Settings {
            cases: 100_000,
            seed: 5,
            budget: None,
            hang_after: Duration::from_millis(500),
        },
    );
    let hang = r.hang.expect("a hang");
    assert!(hang.input.is_empty());
    assert_eq!(r.cases, hang.case + 1, "the run stops at the hang");
}
