//! Processes killed part-way (SIGKILL: no clean-up runs), at points spread over a run, for tests
//! that check what a kill leaves behind.

use std::process::Child;
use std::time::Duration;

/// Starts `n` runs one after another (`start(i)`), killing run `i` once `(i + 1) / (n + 1)` of
/// `full` (how long a whole run takes) has passed — or letting it finish when it is quicker —
/// and calls `check(i)` after each.
///
/// # Panics
///
/// When a run cannot be killed or waited for.
pub fn at_points(n: usize, full: Duration, mut start: impl FnMut(usize) -> Child, mut check: impl FnMut(usize)) {
    for i in 0..n {
        let mut child = start(i);
        let at = full.mul_f64((i + 1) as f64 / (n + 1) as f64);
        std::thread::sleep(at);
        // A run that already ended cannot be killed; either way it is waited for.
        let _ = child.kill();
        child.wait().expect("wait for the killed run");
        check(i);
    }
}
