//! Progress display of the hunt: an indicatif bar on a terminal, plain lines in CI or
//! when stderr is not a terminal, nothing with JSON output. Plain lines come every 25
//! runs and once at the end, not at each failing run: with frequent failures they
//! buried the capture blocks.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Renderer {
    bar: Option<ProgressBar>,
    plain: bool,
    started: Instant,
    runs: u64,
    failures: u64,
    total: u64,
    /// Runs counted in the last plain line.
    shown: u64,
}

impl Renderer {
    /// `quiet`: no progress bar or lines (captures are still shown); `color`: a
    /// colored bar.
    pub fn new(json: bool, quiet: bool, color: bool, total: u64) -> Self {
        let fancy = !json && !quiet && crate::output::fancy();
        let template = if color {
            "{prefix:>12.cyan.bold} [{bar:30}] {pos}/{len} runs, {msg} [{elapsed_precise}]"
        } else {
            "{prefix:>12} [{bar:30}] {pos}/{len} runs, {msg} [{elapsed_precise}]"
        };
        let bar = fancy.then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_prefix("Recording");
            b
        });
        Renderer {
            bar,
            plain: !json && !fancy && !quiet,
            started: Instant::now(),
            runs: 0,
            failures: 0,
            total,
            shown: 0,
        }
    }

    pub fn finished(&mut self, run: u64, unit: &str, status: i32, failed: bool) {
        self.runs += 1;
        if failed {
            self.failures += 1;
        }
        if let Some(b) = &self.bar {
            let rate = self.runs as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
            b.set_position(self.runs);
            b.set_message(format!("{} failures, {rate:.1} runs/s", self.failures));
        } else if self.plain && (self.runs % 25 == 0 || self.runs == self.total) {
            self.line(&format!("last: run {run} {unit}, status {status}"));
        }
    }

    /// One plain progress line.
    fn line(&mut self, last: &str) {
        let rate = self.runs as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        eprintln!(
            "{:>12} {}/{} runs, {} failing, {rate:.1} runs/s, {:.0?} elapsed ({last})",
            "Recording",
            self.runs,
            self.total,
            self.failures,
            self.started.elapsed()
        );
        self.shown = self.runs;
    }

    /// Runs `f` with the bar out of the way, so its printing is not garbled.
    pub fn suspend<T>(&mut self, f: impl FnOnce() -> T) -> T {
        match &self.bar {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    pub fn done(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if self.plain && self.shown != self.runs {
            self.line("at the end");
        }
    }
}
