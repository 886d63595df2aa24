//! The progress of a local job for `sluice sql -f`: on a terminal, a bar redrawn in place on
//! stderr (rows read of the rows the sources know they will read, the rate, the time); when
//! stderr is not a terminal, a plain line every few seconds.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_engine::runtime::{JobObserver, LiveMetrics, TaskSample};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A bar redrawn in place (stderr is a terminal).
    Bar,
    /// A line now and then (stderr is a file or a pipe).
    Lines,
}

impl Style {
    /// A bar on a terminal, lines otherwise.
    #[must_use]
    pub fn for_stderr() -> Style {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            Style::Bar
        } else {
            Style::Lines
        }
    }

    fn interval(self) -> Duration {
        match self {
            Style::Bar => Duration::from_millis(200),
            Style::Lines => Duration::from_secs(2),
        }
    }
}

/// Rows read so far, and of how many when every source knows its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub rows: u64,
    pub total: Option<u64>,
}

impl Reading {
    /// The sources' rows in `samples`.
    #[must_use]
    pub fn of(samples: &[TaskSample]) -> Reading {
        let sources = samples.iter().filter(|s| s.source);
        let rows = sources.clone().map(|s| s.records_in).sum();
        let total = sources.map(|s| s.source_total).sum();
        Reading { rows, total }
    }
}

/// One progress report: a bar (`bar`), else a plain line.
#[must_use]
pub fn render(reading: Reading, elapsed: Duration, bar: bool) -> String {
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        reading.rows as f64 / seconds
    } else {
        0.0
    };
    let rate = human(rate);
    let time = format!("{}:{:02}", elapsed.as_secs() / 60, elapsed.as_secs() % 60);
    let fraction = reading
        .total
        .filter(|t| *t > 0)
        .map(|t| (reading.rows as f64 / t as f64).min(1.0));
    if bar {
        const WIDTH: usize = 30;
        match (fraction, reading.total) {
            (Some(fraction), Some(total)) => {
                let filled = ((fraction * WIDTH as f64) as usize).min(WIDTH);
                let bar = if filled == WIDTH {
                    "=".repeat(WIDTH)
                } else {
                    format!("{}>{}", "=".repeat(filled), " ".repeat(WIDTH - filled - 1))
                };
                format!(
                    "[{bar}] {:>3.0}%  {} / {} rows  {rate} rows/s  {time}",
                    fraction * 100.0,
                    human(reading.rows as f64),
                    human(total as f64),
                )
            }
            _ => format!(
                "{} rows read  {rate} rows/s  {time}",
                human(reading.rows as f64)
            ),
        }
    } else {
        match (fraction, reading.total) {
            (Some(fraction), Some(total)) => format!(
                "progress: {} of {total} rows ({:.0}%), {rate} rows/s, {seconds:.1} s",
                reading.rows,
                fraction * 100.0
            ),
            _ => format!(
                "progress: {} rows, {rate} rows/s, {seconds:.1} s",
                reading.rows
            ),
        }
    }
}

/// `1234567.0` as `1.23 M`.
fn human(value: f64) -> String {
    match value {
        v if v >= 1e9 => format!("{:.2} G", v / 1e9),
        v if v >= 1e6 => format!("{:.2} M", v / 1e6),
        v if v >= 1e3 => format!("{:.1} k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// Shows the progress of each job the local runtime runs, on stderr.
pub struct ProgressDisplay {
    style: Style,
    running: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>>,
}

impl ProgressDisplay {
    #[must_use]
    pub fn new(style: Style) -> Arc<Self> {
        Arc::new(ProgressDisplay {
            style,
            running: Mutex::new(None),
        })
    }
}

impl JobObserver for ProgressDisplay {
    fn job_started(&self, _name: &str, metrics: LiveMetrics) {
        let stop = Arc::new(AtomicBool::new(false));
        let style = self.style;
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-progress".into())
            .spawn(move || {
                let started = Instant::now();
                let mut next = started + style.interval();
                let mut drawn = false;
                while !stopped.load(Ordering::Acquire) {
                    // Woken at once when the job ends, so it never waits out a sleep.
                    std::thread::park_timeout(Duration::from_millis(50));
                    if stopped.load(Ordering::Acquire) {
                        break;
                    }
                    let now = Instant::now();
                    if now < next {
                        continue;
                    }
                    next = now + style.interval();
                    let reading = Reading::of(&metrics.sample());
                    let elapsed = started.elapsed();
                    let mut stderr = std::io::stderr().lock();
                    let _ = match style {
                        Style::Bar => {
                            drawn = true;
                            write!(stderr, "\r\x1b[2K{}", render(reading, elapsed, true))
                        }
                        Style::Lines => writeln!(stderr, "{}", render(reading, elapsed, false)),
                    };
                    let _ = stderr.flush();
                }
                if drawn {
                    // The job's own summary goes where the bar was.
                    let _ = write!(std::io::stderr(), "\r\x1b[2K");
                }
            });
        match thread {
            Ok(thread) => {
                *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some((stop, thread));
            }
            Err(error) => eprintln!("warning: no progress display: {error}"),
        }
    }

    fn job_ended(&self, _name: &str) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((stop, thread)) = running {
            stop.store(true, Ordering::Release);
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(rows: u64, total: Option<u64>) -> TaskSample {
        TaskSample {
            source: true,
            records_in: rows,
            source_total: total,
            ..TaskSample::default()
        }
    }

    #[test]
    fn a_reading_counts_the_sources_rows_and_knows_the_total_only_from_every_source() {
        let downstream = TaskSample {
            records_in: 999,
            ..TaskSample::default()
        };
        let known = [
            source(10, Some(40)),
            source(5, Some(60)),
            downstream.clone(),
        ];
        assert_eq!(
            Reading::of(&known),
            Reading {
                rows: 15,
                total: Some(100)
            }
        );
        let unknown = [source(10, Some(40)), source(5, None), downstream];
        assert_eq!(Reading::of(&unknown).total, None);
    }

    #[test]
    fn a_bar_and_a_line_show_rows_of_the_total_and_the_rate() {
        let reading = Reading {
            rows: 2_500_000,
            total: Some(10_000_000),
        };
        let bar = render(reading, Duration::from_secs(2), true);
        assert!(bar.starts_with("[=======>"), "{bar}");
        assert!(
            bar.contains(" 25%  2.50 M / 10.00 M rows  1.25 M rows/s  0:02"),
            "{bar}"
        );
        assert_eq!(bar.find(']'), Some(31), "{bar}");
        let line = render(reading, Duration::from_secs(2), false);
        assert_eq!(
            line,
            "progress: 2500000 of 10000000 rows (25%), 1.25 M rows/s, 2.0 s"
        );
        let open = render(
            Reading {
                rows: 1_500,
                total: None,
            },
            Duration::from_secs(3),
            false,
        );
        assert_eq!(open, "progress: 1500 rows, 500 rows/s, 3.0 s");
        let done = render(
            Reading {
                rows: 10,
                total: Some(10),
            },
            Duration::from_secs(1),
            true,
        );
        assert!(
            done.starts_with(&format!("[{}] 100%", "=".repeat(30))),
            "{done}"
        );
    }
}
