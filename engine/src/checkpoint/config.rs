//! Checkpointing and restart settings, under Flink's keys.
//!
//! | key | meaning | default |
//! | --- | --- | --- |
//! | `execution.checkpointing.interval` | time between checkpoint triggers | (required) |
//! | `execution.checkpointing.timeout` | a checkpoint not completed by then is aborted | `10 min` |
//! | `execution.checkpointing.min-pause` | least time from one completion to the next trigger | `0 ms` |
//! | `execution.checkpointing.dir` | root of `<dir>/<job-id>/chk-<n>/` | (required) |
//! | `execution.checkpointing.num-retained` | completed checkpoints kept | `1` |
//! | `execution.checkpointing.incremental` | write only the key-group slices of keyed state that changed since the last completed checkpoint, reference the others | `false` |
//! | `execution.checkpointing.tolerable-failed-checkpoints` | consecutive failed checkpoints (declined, timed out or not written) the job survives; one more fails it | unlimited |
//! | `restart-strategy.type` | `none` or `fixed-delay` | `none` |
//! | `restart-strategy.fixed-delay.attempts` | restarts before the job fails | `1` |
//! | `restart-strategy.fixed-delay.delay` | pause before each restart | `1 s` |
//!
//! Durations are written as Flink writes them: a number and an optional unit (`ms`, `s`,
//! `min`, `h`; a bare number is milliseconds), with or without a space (`10s`, `500 ms`).

use std::path::PathBuf;
use std::time::Duration;

use crate::{Error, Result};

/// Typed `execution.checkpointing.*` settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointConfig {
    pub interval: Duration,
    pub timeout: Duration,
    pub min_pause: Duration,
    pub dir: PathBuf,
    pub num_retained: usize,
    /// Consecutive checkpoint failures tolerated; `None`: any number. Unlike Flink (whose
    /// default is 0), a job keeps running through failed checkpoints unless this is set.
    pub tolerable_failures: Option<u32>,
    /// Incremental checkpoints: keyed state is written in key-group slices and a slice that
    /// did not change since the last completed checkpoint is referenced, not rewritten
    /// (`execution.checkpointing.incremental`). Default: `false`, as in Flink.
    pub incremental: bool,
}

impl CheckpointConfig {
    /// Checkpoints every `interval` into `dir`, other settings at their defaults.
    pub fn new(interval: Duration, dir: impl Into<PathBuf>) -> Self {
        CheckpointConfig {
            interval,
            timeout: Duration::from_secs(600),
            min_pause: Duration::ZERO,
            dir: dir.into(),
            num_retained: 1,
            tolerable_failures: None,
            incremental: false,
        }
    }

    pub fn with_incremental(mut self, incremental: bool) -> Self {
        self.incremental = incremental;
        self
    }

    pub fn with_tolerable_failures(mut self, failures: Option<u32>) -> Self {
        self.tolerable_failures = failures;
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn with_min_pause(mut self, pause: Duration) -> Self {
        self.min_pause = pause;
        self
    }

    pub fn with_num_retained(mut self, n: usize) -> Self {
        self.num_retained = n.max(1);
        self
    }

    /// Reads the `execution.checkpointing.*` keys; `None` when no interval is set
    /// (checkpointing off, as in Flink).
    pub fn from_options<'a>(
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Option<Self>> {
        let mut interval = None;
        let mut dir = None;
        let mut config = CheckpointConfig::new(Duration::ZERO, PathBuf::new());
        for (key, value) in options {
            match key {
                "execution.checkpointing.interval" => interval = Some(parse_duration(key, value)?),
                "execution.checkpointing.timeout" => config.timeout = parse_duration(key, value)?,
                "execution.checkpointing.min-pause" => {
                    config.min_pause = parse_duration(key, value)?
                }
                "execution.checkpointing.dir" => dir = Some(local_dir(key, value)?),
                "execution.checkpointing.num-retained" => {
                    config.num_retained = parse_count(key, value)?.max(1) as usize
                }
                "execution.checkpointing.incremental" => {
                    config.incremental = parse_bool(key, value)?
                }
                "execution.checkpointing.tolerable-failed-checkpoints" => {
                    config.tolerable_failures =
                        Some(u32::try_from(parse_count(key, value)?).unwrap_or(u32::MAX))
                }
                _ => {}
            }
        }
        let Some(interval) = interval else {
            return Ok(None);
        };
        if interval.is_zero() {
            return Err(config_error(
                "execution.checkpointing.interval",
                "0",
                "must be positive",
            ));
        }
        config.interval = interval;
        config.dir = dir.ok_or_else(|| {
            config_error(
                "execution.checkpointing.dir",
                "",
                "checkpointing needs a directory",
            )
        })?;
        Ok(Some(config))
    }
}

/// The local directory of a checkpoint directory option: a path, or a `file://` URI (Flink's
/// form, `file:///tmp/chk`; `file:/tmp/chk` too). Other schemes name storage that does not
/// exist here and are refused.
fn local_dir(key: &str, value: &str) -> Result<PathBuf> {
    let path = match value.strip_prefix("file:") {
        Some(rest) => match rest.strip_prefix("//") {
            // `file:///abs` (empty authority) or `file://localhost/abs`.
            Some(authority_and_path) => match authority_and_path.find('/') {
                Some(slash) if matches!(&authority_and_path[..slash], "" | "localhost") => {
                    &authority_and_path[slash..]
                }
                _ => {
                    return Err(config_error(
                        key,
                        value,
                        "a file:// URI must name a local absolute path (file:///path)",
                    ));
                }
            },
            None => rest,
        },
        None => {
            if let Some((scheme, _)) = value.split_once("://") {
                return Err(config_error(
                    key,
                    value,
                    &format!("scheme '{scheme}://' is not supported: use a local path or file://"),
                ));
            }
            value
        }
    };
    if path.is_empty() {
        return Err(config_error(key, value, "the directory is empty"));
    }
    Ok(PathBuf::from(path))
}

/// What happens when a task fails (Flink's `restart-strategy.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum RestartStrategy {
    /// The first failure fails the job.
    #[default]
    None,
    /// Restart up to `attempts` times, waiting `delay` before each, when the failure is
    /// retryable ([`Error::is_retryable`]).
    FixedDelay { attempts: u32, delay: Duration },
}

impl RestartStrategy {
    /// Reads the `restart-strategy.*` keys.
    pub fn from_options<'a>(options: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut kind = None;
        let mut attempts = 1;
        let mut delay = Duration::from_secs(1);
        for (key, value) in options {
            match key {
                "restart-strategy.type" | "restart-strategy" => kind = Some(value.to_string()),
                "restart-strategy.fixed-delay.attempts" => {
                    attempts = parse_count(key, value)? as u32
                }
                "restart-strategy.fixed-delay.delay" => delay = parse_duration(key, value)?,
                _ => {}
            }
        }
        match kind.as_deref() {
            None | Some("none" | "off" | "disable") => Ok(RestartStrategy::None),
            Some("fixed-delay" | "fixeddelay") => {
                Ok(RestartStrategy::FixedDelay { attempts, delay })
            }
            Some(other) => Err(config_error(
                "restart-strategy.type",
                other,
                "supported: none, fixed-delay",
            )),
        }
    }
}

/// Parses a Flink duration: `10s`, `500 ms`, `2 min`, `1h`; a bare number is milliseconds.
pub fn parse_duration(key: &str, value: &str) -> Result<Duration> {
    let text = value.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| config_error(key, value, "expected a number and a unit, e.g. '10 s'"))?;
    let millis = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => number,
        "s" | "sec" | "secs" | "second" | "seconds" => number.saturating_mul(1000),
        "min" | "m" | "minute" | "minutes" => number.saturating_mul(60_000),
        "h" | "hour" | "hours" => number.saturating_mul(3_600_000),
        _ => {
            return Err(config_error(
                key,
                value,
                "unknown unit; use ms, s, min or h",
            ));
        }
    };
    Ok(Duration::from_millis(millis))
}

fn parse_count(key: &str, value: &str) -> Result<u64> {
    value
        .trim()
        .parse()
        .map_err(|_| config_error(key, value, "expected a non-negative integer"))
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(config_error(key, value, "expected true or false")),
    }
}

fn config_error(key: &str, value: &str, message: &str) -> Error {
    Error::Config {
        key: key.to_string(),
        value: value.to_string(),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_and_without_space() {
        assert_eq!(parse_duration("k", "10s").unwrap(), Duration::from_secs(10));
        assert_eq!(
            parse_duration("k", "500 ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_duration("k", "2 min").unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(
            parse_duration("k", "250").unwrap(),
            Duration::from_millis(250)
        );
        assert!(parse_duration("k", "ten s").is_err());
        assert!(parse_duration("k", "5 parsecs").is_err());
    }

    #[test]
    fn options_build_typed_configs() {
        let options = [
            ("execution.checkpointing.interval", "50 ms"),
            ("execution.checkpointing.dir", "/tmp/chk"),
            ("execution.checkpointing.num-retained", "3"),
            ("execution.checkpointing.tolerable-failed-checkpoints", "2"),
            ("execution.checkpointing.incremental", "true"),
            ("restart-strategy.type", "fixed-delay"),
            ("restart-strategy.fixed-delay.attempts", "2"),
            ("restart-strategy.fixed-delay.delay", "10 ms"),
        ];
        let config = CheckpointConfig::from_options(options).unwrap().unwrap();
        assert_eq!(config.interval, Duration::from_millis(50));
        assert_eq!(config.num_retained, 3);
        assert_eq!(config.tolerable_failures, Some(2));
        assert!(config.incremental);
        let err = CheckpointConfig::from_options([
            ("execution.checkpointing.interval", "1 s"),
            ("execution.checkpointing.dir", "/tmp/chk"),
            ("execution.checkpointing.incremental", "yes"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("execution.checkpointing.incremental") && err.contains("yes"),
            "{err}"
        );
        assert_eq!(
            RestartStrategy::from_options(options).unwrap(),
            RestartStrategy::FixedDelay {
                attempts: 2,
                delay: Duration::from_millis(10)
            }
        );
        assert_eq!(CheckpointConfig::from_options([]).unwrap(), None);
    }

    #[test]
    fn checkpoint_dir_accepts_file_uris() {
        let dir_of = |value: &str| {
            CheckpointConfig::from_options([
                ("execution.checkpointing.interval", "1 s"),
                ("execution.checkpointing.dir", value),
            ])
            .map(|c| c.expect("interval set").dir)
        };
        assert_eq!(dir_of("/tmp/chk").unwrap(), PathBuf::from("/tmp/chk"));
        assert_eq!(dir_of("rel/chk").unwrap(), PathBuf::from("rel/chk"));
        assert_eq!(
            dir_of("file:///tmp/chk").unwrap(),
            PathBuf::from("/tmp/chk")
        );
        assert_eq!(
            dir_of("file://localhost/tmp/chk").unwrap(),
            PathBuf::from("/tmp/chk")
        );
        assert_eq!(dir_of("file:/tmp/chk").unwrap(), PathBuf::from("/tmp/chk"));
        let err = dir_of("s3://bucket/chk").unwrap_err().to_string();
        assert!(
            err.contains("execution.checkpointing.dir") && err.contains("s3://"),
            "{err}"
        );
        assert!(dir_of("file://otherhost/chk").is_err());
    }
}
