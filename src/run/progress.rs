//! Console progress: a bar per epoch (steps/s, losses, ETA) and one line per epoch. When
//! stderr is not a terminal (a log file), a plain line every fifth of an epoch instead of
//! the bar. Everything printed here is also in the run file; `--quiet` prints nothing.
use super::driver::StepStats;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress {
    quiet: bool,
    terminal: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress {
            quiet,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    pub fn line(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    pub fn epoch_bar(
        &self,
        epoch: usize,
        epochs: usize,
        steps: usize,
        start: usize,
    ) -> ProgressBar {
        if self.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {per_sec:.1} ETA {eta} {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
        bar.set_position(start as u64);
        bar.reset_eta();
        bar
    }

    pub fn step(&self, bar: &ProgressBar, s: &StepStats) {
        let mut message = format!("train {:.3} ({:.1}%)", s.train_loss, 100.0 * s.train_acc);
        if !s.val_loss.is_nan() {
            message += &format!(" val {:.3} ({:.1}%)", s.val_loss, 100.0 * s.val_acc);
        }
        bar.inc(1);
        if self.terminal {
            bar.set_message(message);
        } else if !self.quiet {
            let (pos, len) = (bar.position(), bar.length().unwrap_or(0));
            if pos % (len / 5).max(1) == 0 && pos < len {
                eprintln!(
                    "  step {pos}/{len}  {message}  {:.2} s/step",
                    1.0 / bar.per_sec().max(1e-9)
                );
            }
        }
    }
}
