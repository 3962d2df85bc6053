//! Progress bars: drawn on a terminal, silent in Actions logs and pipes.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Runner;

/// A progress bar over a known number of steps; hidden inside Actions and when standard error is
/// not a terminal, so logs get no control characters.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `total` steps, labelled `what` (e.g. "images").
    pub fn new(runner: &Runner, total: u64, what: &str) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(total),
            if runner.in_actions() {
                ProgressDrawTarget::hidden()
            } else {
                ProgressDrawTarget::stderr()
            },
        );
        let template = format!(
            "{{spinner}} [{{elapsed_precise}}] {{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, eta {{eta}}) {{msg}}"
        );
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style);
        }
        Self { bar }
    }

    /// A bar that never draws.
    pub fn hidden() -> Self {
        Self {
            bar: ProgressBar::hidden(),
        }
    }

    /// Sets the number of steps.
    pub fn set_total(&self, total: u64) {
        self.bar.set_length(total);
    }

    /// `n` steps done at once.
    pub fn inc_by(&self, n: u64) {
        self.bar.inc(n);
    }

    /// One step done.
    pub fn inc(&self) {
        self.bar.inc(1);
    }

    /// Shows a message above the bar (hides the bar while `f` writes, then redraws it).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Sets the text after the bar.
    pub fn set_message(&self, message: String) {
        self.bar.set_message(message);
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
