//! Command-line pieces shared by the `sluice` executable and user binaries.
//!
//! A user binary that registers its own functions runs its TaskManagers with
//! [`TaskManagerArgs::run`]: the same flags and `-D` options as `sluice taskmanager`, plus the
//! binary's [`UserFunctions`]. Typically the binary's own `clap` command line has a
//! `taskmanager` subcommand holding [`TaskManagerArgs`] (see
//! `coordinator/examples/user_functions.rs` and `docs/user-code.md`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use sluice_engine::api::UserFunctions;

use crate::ha::HaConfig;
use crate::taskmanager::{TaskManagerConfig, run_with_functions};

/// What starting a TaskManager from the command line can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag or `-D` option is invalid; the message names it and what is allowed.
    #[error("{0}")]
    Option(String),
    /// The TaskManager could not start or stopped with an error.
    #[error("taskmanager: {0}")]
    Io(#[source] std::io::Error),
}

/// High availability mode (`--ha`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HaMode {
    /// One JobManager, which always leads.
    #[default]
    None,
    /// JobManagers elect a leader through etcd; TaskManagers follow it.
    Etcd,
}

/// The high availability flags of `sluice jobmanager` and `sluice taskmanager`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct HaArgs {
    /// High availability: `none`, or `etcd` (JobManagers elect a leader through etcd; a
    /// standby takes over when it fails).
    #[arg(long, value_enum, default_value = "none")]
    pub ha: HaMode,
    /// etcd endpoints for `--ha etcd`, comma-separated (`http://127.0.0.1:2379,...`).
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Names this cluster in etcd (its keys live under `/sluice/<ID>/`), so clusters can
    /// share one etcd.
    #[arg(long, value_name = "ID", default_value = "default")]
    pub cluster_id: String,
}

impl HaArgs {
    /// The validated settings (`None` without `--ha etcd`), with the
    /// `high-availability.etcd.*` options of `options` applied; those options are consumed.
    pub fn config(
        &self,
        options: &mut Vec<(String, String)>,
    ) -> Result<Option<HaConfig>, CliError> {
        let mut lease_ttl = None;
        let mut retry_delay = None;
        let mut rest = Vec::new();
        for (key, value) in options.drain(..) {
            match key.as_str() {
                "high-availability.etcd.lease-ttl" => {
                    lease_ttl = Some(duration_option(&key, &value)?)
                }
                "high-availability.etcd.retry-delay" => {
                    retry_delay = Some(duration_option(&key, &value)?)
                }
                _ => rest.push((key, value)),
            }
        }
        *options = rest;
        match self.ha {
            HaMode::None => {
                if !self.etcd_endpoints.is_empty() {
                    return Err(CliError::Option("--etcd-endpoints needs --ha etcd".into()));
                }
                Ok(None)
            }
            HaMode::Etcd => {
                if self.etcd_endpoints.is_empty() {
                    return Err(CliError::Option(
                        "--ha etcd needs --etcd-endpoints URL[,URL...]".into(),
                    ));
                }
                if self.cluster_id.is_empty() || self.cluster_id.contains('/') {
                    return Err(CliError::Option(format!(
                        "--cluster-id '{}': expected a non-empty name without '/'",
                        self.cluster_id
                    )));
                }
                let mut config = HaConfig::new(self.etcd_endpoints.clone(), &self.cluster_id);
                if let Some(ttl) = lease_ttl {
                    config.lease_ttl = ttl;
                }
                if let Some(delay) = retry_delay {
                    config.retry_delay = delay;
                }
                Ok(Some(config))
            }
        }
    }
}

/// The flags of a cluster's TaskManager (`sluice taskmanager`).
#[derive(clap::Args, Debug, Clone)]
pub struct TaskManagerArgs {
    /// The JobManager's RPC address, HOST:PORT (without `--ha etcd`, where the leader is
    /// found in etcd).
    #[arg(long)]
    pub jobmanager: Option<String>,
    #[command(flatten)]
    pub ha: HaArgs,
    /// Slots offered (worker threads).
    #[arg(long, default_value_t = 1)]
    pub slots: u32,
    /// Address to bind (and advertise to the JobManager).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port of the TaskExecutor RPC service; 0 picks a free port.
    #[arg(long, default_value_t = 0)]
    pub rpc_port: u16,
    /// Port of the data exchange (Arrow Flight) endpoint, reported to the JobManager; 0
    /// picks a free port.
    #[arg(long, default_value_t = 0)]
    pub data_port: u16,
    /// Rows per batch produced by sources.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Port of the sink-table Flight service (the `'connector' = 'flight'` tables of the
    /// tasks here), reported to the JobManager; 0 picks a free port.
    #[arg(long, default_value_t = 0)]
    pub flight_port: u16,
    /// Port of the Prometheus `/metrics` endpoint (this TaskManager's tasks and data
    /// exchange), reported to the JobManager; 0 picks a free port.
    #[arg(long, default_value_t = 0)]
    pub metrics_port: u16,
    /// Require this bearer token on every sink-table Flight call (default:
    /// `$SLUICE_FLIGHT_TOKEN`, else none).
    #[arg(long, value_name = "TOKEN")]
    pub flight_token: Option<String>,
    /// A configuration option: `heartbeat.interval` (default: as the JobManager asks),
    /// `taskmanager.network.memory.buffers-per-channel` (credits per remote channel,
    /// default 8), `taskmanager.memory.managed.size` (memory for batch joins, sorts and
    /// aggregations, split among the slots; default 40% of physical memory), `io.tmp.dirs`
    /// (where they spill), `taskmanager.network.compression.codec` (NONE, LZ4 or ZSTD for batches
    /// sent to other TaskManagers; default NONE), and the S3 checkpoint store's `s3.endpoint`,
    /// `s3.access-key`, `s3.secret-key`, `s3.region`, `s3.path.style.access` (unset: the
    /// `AWS_*` environment variables). Repeatable.
    #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = parse_option)]
    pub options: Vec<(String, String)>,
}

impl TaskManagerArgs {
    /// The validated configuration.
    pub fn config(&self) -> Result<TaskManagerConfig, CliError> {
        if self.slots == 0 {
            return Err(CliError::Option("--slots must be at least 1".into()));
        }
        let mut heartbeat_interval = None;
        let mut exchange = sluice_flight::ExchangeConfig::default();
        let mut options = self.options.clone();
        let ha = self.ha.config(&mut options)?;
        let jobmanager = match (&ha, &self.jobmanager) {
            (None, None) => {
                return Err(CliError::Option(
                    "--jobmanager HOST:PORT is required (or --ha etcd)".into(),
                ));
            }
            (_, jobmanager) => jobmanager.clone().unwrap_or_default(),
        };
        let mut s3 = sluice_engine::checkpoint::S3Config::default();
        let (mut managed_memory, mut spill_dir) = (None, None);
        for (key, value) in &options {
            match key.as_str() {
                key if sluice_engine::checkpoint::S3Config::is_s3_key(key) => s3
                    .set(key, value)
                    .map_err(|e| CliError::Option(format!("-D {e}")))?,
                "heartbeat.interval" => heartbeat_interval = Some(duration_option(key, value)?),
                "taskmanager.memory.managed.size" => {
                    managed_memory = Some(
                        sluice_engine::spill::parse_memory_size(value)
                            .map_err(|e| CliError::Option(format!("-D {key}: {e}")))?,
                    );
                }
                "io.tmp.dirs" => {
                    spill_dir =
                        Some(sluice_engine::spill::first_tmp_dir(value).ok_or_else(|| {
                            CliError::Option(format!("-D {key}={value}: expected a directory"))
                        })?);
                }
                "taskmanager.network.memory.buffers-per-channel" => {
                    let credits = value.parse().ok().filter(|c| *c > 0).ok_or_else(|| {
                        CliError::Option(format!("-D {key}={value}: expected a positive integer"))
                    })?;
                    exchange = exchange.with_credits_per_channel(credits);
                }
                "taskmanager.network.compression.codec" => {
                    let codec = sluice_flight::codec::Compression::parse(value)
                        .map_err(|e| CliError::Option(format!("-D {e}")))?;
                    exchange = exchange.with_compression(codec);
                }
                other => {
                    return Err(CliError::Option(format!(
                        "-D {other}: unknown option for a taskmanager (known: \
                         heartbeat.interval, taskmanager.network.memory.buffers-per-channel, \
                         taskmanager.network.compression.codec, \
                         taskmanager.memory.managed.size, io.tmp.dirs, s3.*, \
                         high-availability.etcd.lease-ttl, high-availability.etcd.retry-delay)"
                    )));
                }
            }
        }
        Ok(TaskManagerConfig {
            jobmanager,
            ha,
            slots: self.slots,
            rpc: SocketAddr::new(self.host, self.rpc_port),
            data_port: self.data_port,
            heartbeat_interval,
            batch_size: self.batch_size,
            exchange,
            flight_port: self.flight_port,
            metrics_port: self.metrics_port,
            flight_token: flight_token(self.flight_token.clone()),
            stores: crate::checkpoint::s3::state_stores(s3),
            managed_memory,
            spill_dir,
        })
    }

    /// Runs the TaskManager with `functions` until SIGTERM or SIGINT: prints
    /// `rpc listening on ADDR` and `data listening on ADDR` once bound (what cluster scripts
    /// and tests read), as `sluice taskmanager` does.
    pub fn run(&self, functions: UserFunctions) -> Result<(), CliError> {
        let config = self.config()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(CliError::Io)?;
        runtime
            .block_on(run_with_functions(
                config,
                functions,
                |bound| {
                    // Formatted first, so one write puts all lines out: a reader that stops
                    // after the lines it wants does not make a later line fail.
                    let lines = format!(
                        "rpc listening on {}\ndata listening on {}\nflight listening on {}\n\
                         metrics listening on {}\n",
                        bound.rpc, bound.data, bound.flight, bound.metrics
                    );
                    print!("{lines}");
                },
                crate::jobmanager::termination_signal(),
            ))
            .map_err(CliError::Io)
    }
}

/// The Flight bearer token: the flag, else `$SLUICE_FLIGHT_TOKEN`; empty means none.
pub fn flight_token(flag: Option<String>) -> Option<String> {
    flag.or_else(|| std::env::var("SLUICE_FLIGHT_TOKEN").ok())
        .filter(|t| !t.is_empty())
}

/// A duration option ("10s", "500ms"), more than zero.
fn duration_option(key: &str, value: &str) -> Result<Duration, CliError> {
    let duration = sluice_engine::checkpoint::parse_duration(key, value)
        .map_err(|e| CliError::Option(e.to_string()))?;
    if duration.is_zero() {
        return Err(CliError::Option(format!(
            "-D {key}={value}: must be more than zero"
        )));
    }
    Ok(duration)
}

/// `KEY=VALUE` of a `-D` option.
pub fn parse_option(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!("expected KEY=VALUE, got '{text}'")),
    }
}
