//! Fuzzing on stable Rust: every parser that reads a file from a pull request or a body from the
//! network ([`targets`]) is fed seeded mutations of real inputs (the repository's own parameter
//! files, configurations and model bundle, a tiny PNG and TIFF, an infer request). A panic is a
//! finding (the input is kept); a case that runs longer than the watchdog allows stops the run
//! as a hang. The same seed gives the same cases, so a finding is reproduced by its seed and case
//! number, and then kept as a regression test (`tests/slice.rs`).
//!
//! Mutations, one to four stacked per case: flip a bit, set a byte to a value parsers care about,
//! insert random bytes or a token of YAML/JSON/TIFF syntax, delete, duplicate or swap a range,
//! splice in part of another seed, truncate.

pub mod mutate;
pub mod targets;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use targets::{Target, targets};

/// A run's settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Cases at most.
    pub cases: u64,
    /// The seed of the mutations.
    pub seed: u64,
    /// Stop after this long, whatever the cases.
    pub budget: Option<Duration>,
    /// A single case running longer than this is a hang.
    pub hang_after: Duration,
}

/// A panic the harness caught.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The case's number (with the seed, it reproduces the input).
    pub case: u64,
    /// The input.
    pub input: Vec<u8>,
    /// The panic's message.
    pub message: String,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target's name.
    pub target: &'static str,
    /// Cases run.
    pub cases: u64,
    /// Cases the parser accepted.
    pub accepted: u64,
    /// Panics.
    pub findings: Vec<Finding>,
    /// The slowest case.
    pub slowest: Duration,
    /// The whole run.
    pub elapsed: Duration,
    /// A case that ran past [`Settings::hang_after`] (the run stopped there).
    pub hang: Option<Finding>,
}

/// Runs `target` under `settings`. Panics are caught (and kept quiet on the case thread); a case
/// that outlasts `hang_after` ends the run as a hang (the worker thread stuck in it is left
/// behind, as a hung parser cannot be stopped from outside).
pub fn run(target: &Target, settings: Settings) -> Report {
    let started = Instant::now();
    let mut rng = mutate::Rng::new(settings.seed ^ fnv(target.name));
    let seeds = (target.seeds)();
    silence_case_panics();
    let mut report = Report {
        target: target.name,
        cases: 0,
        accepted: 0,
        findings: Vec::new(),
        slowest: Duration::ZERO,
        elapsed: Duration::ZERO,
        hang: None,
    };
    let worker = Worker::start(target.parse);
    for case in 0..settings.cases {
        if settings.budget.is_some_and(|b| started.elapsed() > b) {
            break;
        }
        let input = mutate::mutate(&mut rng, &seeds, case);
        let t = Instant::now();
        report.cases = case + 1;
        match worker.as_ref().map(|w| w.parse(input.clone(), settings.hang_after)) {
            Some(Some(Ok(accepted))) => report.accepted += u64::from(accepted),
            Some(Some(Err(message))) => report.findings.push(Finding { case, input, message }),
            Some(None) | None => {
                report.hang = Some(Finding {
                    case,
                    input,
                    message: format!("no answer within {:?}", settings.hang_after),
                });
                break;
            }
        }
        report.slowest = report.slowest.max(t.elapsed());
    }
    report.elapsed = started.elapsed();
    report
}

/// A thread that parses the inputs it is sent, panics caught: whether each was accepted, or the
/// panic's message.
struct Worker {
    inputs: mpsc::Sender<Vec<u8>>,
    results: mpsc::Receiver<Result<bool, String>>,
}

impl Worker {
    fn start(parse: fn(&[u8]) -> bool) -> Option<Self> {
        let (inputs, rx) = mpsc::channel::<Vec<u8>>();
        let (tx, results) = mpsc::channel();
        std::thread::Builder::new()
            .name(CASE_THREAD.into())
            .stack_size(16 << 20)
            .spawn(move || {
                for input in rx {
                    let outcome = catch_unwind(AssertUnwindSafe(|| parse(&input))).map_err(|p| panic_message(&*p));
                    if tx.send(outcome).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        Some(Self { inputs, results })
    }

    /// The case's outcome, or `None` when it took longer than `limit`.
    fn parse(&self, input: Vec<u8>, limit: Duration) -> Option<Result<bool, String>> {
        self.inputs.send(input).ok()?;
        self.results.recv_timeout(limit).ok()
    }
}

/// Name of the threads that run cases.
const CASE_THREAD: &str = "fuzz-case";

/// Installs, once, a panic hook that keeps quiet about panics on case threads (they are findings,
/// reported with their input) and hands every other panic to the hook that was there before.
fn silence_case_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some(CASE_THREAD) {
                previous(info);
            }
        }));
    });
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// FNV-1a of a name: each target gets its own stream of cases from one seed.
fn fnv(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
