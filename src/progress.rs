//! Progress on stderr while a run goes: a bar on a terminal (documents, rate, ETA, ok and
//! failed counts), or with `--progress plain` one line every few seconds for cron and CI logs,
//! where a bar's carriage returns would be noise. Nothing with `-q` or `--progress off`, and
//! by default (`auto`) nothing when stderr is not a terminal.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// A bar when stderr is a terminal, else nothing.
    #[default]
    Auto,
    /// Always the bar (a terminal is assumed).
    Bar,
    /// One line every --progress-interval seconds.
    Plain,
    /// Nothing.
    Off,
}

enum Kind {
    Hidden,
    Bar(indicatif::ProgressBar),
    Plain { every: Duration, last: Instant },
}

pub struct Progress {
    kind: Kind,
    total: usize,
    ok: usize,
    failed: usize,
    started: Instant,
}

impl Progress {
    pub fn new(mode: Mode, quiet: bool, total: usize, every: Duration) -> Progress {
        let kind = match mode {
            _ if quiet => Kind::Hidden,
            Mode::Off => Kind::Hidden,
            Mode::Auto if !std::io::stderr().is_terminal() => Kind::Hidden,
            Mode::Auto | Mode::Bar => Kind::Bar(bar(total)),
            Mode::Plain => Kind::Plain {
                every,
                last: Instant::now(),
            },
        };
        Progress {
            kind,
            total,
            ok: 0,
            failed: 0,
            started: Instant::now(),
        }
    }

    /// How often `tick` should be called (plain mode), if at all.
    pub fn interval(&self) -> Option<Duration> {
        match self.kind {
            Kind::Plain { every, .. } => Some(every),
            _ => None,
        }
    }

    /// One document finished.
    pub fn record(&mut self, ok: bool) {
        if ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        if let Kind::Bar(bar) = &self.kind {
            bar.set_message(self.counts());
            bar.inc(1);
        }
    }

    /// Plain mode: print a line when the interval has passed since the last one.
    pub fn tick(&mut self) {
        let line = self.line();
        if let Kind::Plain { every, last } = &mut self.kind {
            if last.elapsed() + Duration::from_millis(50) >= *every {
                *last = Instant::now();
                eprintln!("{line}");
            }
        }
    }

    /// Runs `f` (which prints to stderr) without tearing the bar.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.kind {
            Kind::Bar(bar) => bar.suspend(f),
            _ => f(),
        }
    }

    pub fn finish(&self) {
        if let Kind::Bar(bar) = &self.kind {
            bar.finish_and_clear();
        }
    }

    fn counts(&self) -> String {
        format!("{} ok, {} failed", self.ok, self.failed)
    }

    /// "summarize: progress 120/1000 (12%), 118 ok, 2 failed, 3.1 docs/s, eta 4m43s".
    pub fn line(&self) -> String {
        let done = self.ok + self.failed;
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            done as f64 / elapsed
        } else {
            0.0
        };
        let eta = if rate > 0.0 && done < self.total {
            format!(", eta {}", clock((self.total - done) as f64 / rate))
        } else {
            String::new()
        };
        format!(
            "summarize: progress {done}/{} ({:.0}%), {}, {rate:.1} docs/s{eta}",
            self.total,
            if self.total > 0 {
                100.0 * done as f64 / self.total as f64
            } else {
                100.0
            },
            self.counts()
        )
    }
}

fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

fn bar(total: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let template = if std::env::var_os("NO_COLOR").is_some() {
        "{elapsed_precise} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}"
    } else {
        "{elapsed_precise} [{bar:30.cyan/blue}] {pos}/{len} {per_sec} eta {eta} {msg}"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message("0 ok, 0 failed");
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_line_counts_and_estimates() {
        let mut p = Progress::new(Mode::Plain, false, 10, Duration::from_secs(5));
        p.record(true);
        p.record(false);
        let line = p.line();
        assert!(
            line.starts_with("summarize: progress 2/10 (20%), 1 ok, 1 failed, "),
            "{line}"
        );
        assert!(line.contains("docs/s, eta "), "{line}");
        assert_eq!(clock(283.0), "4m43s");
        assert_eq!(clock(7300.0), "2h01m");
        assert!(Progress::new(Mode::Plain, true, 1, Duration::from_secs(1))
            .interval()
            .is_none());
    }
}
