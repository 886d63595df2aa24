//! Checkpointing and restart settings, under Flink's keys.
//!
//! | key | meaning | default |
//! | --- | --- | --- |
//! | `execution.checkpointing.interval` | time between checkpoint triggers | (required) |
//! | `execution.checkpointing.timeout` | a checkpoint not completed by then is aborted | `10 min` |
//! | `execution.checkpointing.min-pause` | least time from one completion to the next trigger | `0 ms` |
//! | `execution.checkpointing.dir` | root of `<dir>/<job-id>/chk-<n>/`: a local path, `file:///path` or `s3://bucket/prefix` | (required) |
//! | `execution.checkpointing.num-retained` | completed checkpoints kept | `1` |
//! | `execution.checkpointing.incremental` | write only the key-group slices of keyed state that changed since the last completed checkpoint, reference the others | `false` |
//! | `execution.checkpointing.tolerable-failed-checkpoints` | consecutive failed checkpoints (declined, timed out or not written) the job survives; one more fails it | unlimited |
//! | `restart-strategy.type` | `none` or `fixed-delay` | `none` |
//! | `restart-strategy.fixed-delay.attempts` | restarts before the job fails | `1` |
//! | `restart-strategy.fixed-delay.delay` | pause before each restart | `1 s` |
//!
//! Checkpoints (and savepoints) on `s3://` are written by the `sluice` executable's S3 store
//! ([`super::store::ObjectStores`]), set up by these keys (`SET`, or `-D` on `sluice sql`,
//! `sluice jobmanager` and `sluice taskmanager`; a cluster's JobManager and every
//! TaskManager need them, each from its own `-D` or environment). An unset key falls back to
//! the standard AWS variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, …):
//!
//! | key | meaning | default |
//! | --- | --- | --- |
//! | `s3.endpoint` | the S3 service's URL, for an S3-compatible server (`http://` allows plain HTTP) | AWS |
//! | `s3.access-key` | access key id | `AWS_ACCESS_KEY_ID`, else the instance's credentials |
//! | `s3.secret-key` | secret access key (never logged or shown) | `AWS_SECRET_ACCESS_KEY` |
//! | `s3.region` | signing region | `AWS_REGION`, else `us-east-1` |
//! | `s3.path.style.access` | `true`: `http://endpoint/bucket/key` (what local S3 servers need); `false`: `http://bucket.endpoint/key` | `false` |
//!
//! Durations are written as Flink writes them: a number and an optional unit (`ms`, `s`,
//! `min`, `h`; a bare number is milliseconds), with or without a space (`10s`, `500 ms`).

use std::fmt;
use std::time::Duration;

use super::store::StatePath;
use crate::{Error, Result};

/// Typed `execution.checkpointing.*` settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointConfig {
    pub interval: Duration,
    pub timeout: Duration,
    pub min_pause: Duration,
    /// Root of the job directories: a local directory or an object-store URL.
    pub dir: StatePath,
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
    pub fn new(interval: Duration, dir: impl Into<StatePath>) -> Self {
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
        let mut config = CheckpointConfig::new(Duration::ZERO, StatePath::Local(".".into()));
        for (key, value) in options {
            match key {
                "execution.checkpointing.interval" => interval = Some(parse_duration(key, value)?),
                "execution.checkpointing.timeout" => config.timeout = parse_duration(key, value)?,
                "execution.checkpointing.min-pause" => {
                    config.min_pause = parse_duration(key, value)?
                }
                "execution.checkpointing.dir" => {
                    dir = Some(StatePath::parse(value).map_err(|m| config_error(key, value, &m))?)
                }
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

/// The `s3.*` settings of the S3 checkpoint store (see the module docs). `None`: not set here;
/// the store falls back to the AWS environment variables, then to its defaults. `Debug`
/// leaves the secret key out.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct S3Config {
    /// `s3.endpoint`: `http(s)://host:port` of an S3-compatible service.
    pub endpoint: Option<String>,
    /// `s3.access-key`.
    pub access_key: Option<String>,
    /// `s3.secret-key`.
    pub secret_key: Option<String>,
    /// `s3.region`; default `us-east-1`.
    pub region: Option<String>,
    /// `s3.path.style.access`; default `false` (virtual-hosted-style requests).
    pub path_style_access: Option<bool>,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("region", &self.region)
            .field("path_style_access", &self.path_style_access)
            .finish()
    }
}

impl S3Config {
    /// The keys [`S3Config::set`] accepts.
    pub const KEYS: &[&str] = &[
        "s3.endpoint",
        "s3.access-key",
        "s3.secret-key",
        "s3.region",
        "s3.path.style.access",
    ];

    /// Whether `key` is an `s3.*` key (known or not: an unknown one is an error of
    /// [`S3Config::set`] with a suggestion).
    pub fn is_s3_key(key: &str) -> bool {
        key.starts_with("s3.")
    }

    /// Applies one `s3.*` option; the error names the key and, for an unknown key, the
    /// nearest known one.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let text = value.trim();
        let non_empty = || {
            if text.is_empty() {
                Err(config_error(key, "", "must not be empty"))
            } else {
                Ok(text.to_string())
            }
        };
        match key {
            "s3.endpoint" => {
                let lower = text.to_ascii_lowercase();
                if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                    return Err(config_error(
                        key,
                        value,
                        "expected an http:// or https:// URL, e.g. http://127.0.0.1:9000",
                    ));
                }
                self.endpoint = Some(text.trim_end_matches('/').to_string());
            }
            "s3.access-key" => self.access_key = Some(non_empty()?),
            // The value is a secret: the error does not repeat it.
            "s3.secret-key" => self.secret_key = Some(non_empty()?),
            "s3.region" => self.region = Some(non_empty()?),
            "s3.path.style.access" => self.path_style_access = Some(parse_bool(key, value)?),
            _ => {
                let message = match crate::expr::closest(key, Self::KEYS.iter().copied()) {
                    Some(best) => format!("unknown key (did you mean '{best}'?)"),
                    None => format!("unknown key (known: {})", Self::KEYS.join(", ")),
                };
                return Err(config_error(key, value, &message));
            }
        }
        Ok(())
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        *self == S3Config::default()
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
        let local = |p: &str| StatePath::Local(p.into());
        assert_eq!(dir_of("/tmp/chk").unwrap(), local("/tmp/chk"));
        assert_eq!(dir_of("rel/chk").unwrap(), local("rel/chk"));
        assert_eq!(dir_of("file:///tmp/chk").unwrap(), local("/tmp/chk"));
        assert_eq!(
            dir_of("file://localhost/tmp/chk").unwrap(),
            local("/tmp/chk")
        );
        assert_eq!(dir_of("file:/tmp/chk").unwrap(), local("/tmp/chk"));
        assert_eq!(
            dir_of("s3://bucket/chk/").unwrap().to_string(),
            "s3://bucket/chk"
        );
        let err = dir_of("hdfs://namenode/chk").unwrap_err().to_string();
        assert!(
            err.contains("execution.checkpointing.dir") && err.contains("hdfs://"),
            "{err}"
        );
        assert!(dir_of("file://otherhost/chk").is_err());
    }

    #[test]
    fn s3_settings_are_validated_and_the_secret_is_not_shown() {
        let mut config = S3Config::default();
        assert!(config.is_empty());
        config.set("s3.endpoint", "http://127.0.0.1:9000/").unwrap();
        config.set("s3.path.style.access", "true").unwrap();
        config.set("s3.secret-key", "hush").unwrap();
        assert_eq!(config.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(config.path_style_access, Some(true));
        assert!(!format!("{config:?}").contains("hush"));
        let err = config.set("s3.endpoint", "127.0.0.1:9000").unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
        let err = config.set("s3.acess-key", "k").unwrap_err().to_string();
        assert!(err.contains("did you mean 's3.access-key'"), "{err}");
        assert!(config.set("s3.path.style.access", "yes").is_err());
    }
}
