//! The `sluice` executable.
//!
//! ```text
//! sluice nexmark --query q1 --events 10000000 [--parallelism P] [--slots S]   # embedded local mode
//! sluice run GRAPH.json [--slots S]                                        # a JobGraph from JSON
//! sluice savepoint JOB-ID [TARGET-DIR] [--stop]                          # savepoint a local job
//!                                    (directories may be s3://bucket/prefix URLs, see -D s3.*)
//! sluice savepoint JOB-ID TARGET-DIR --jobmanager URL [--stop]        # savepoint a cluster job
//! sluice stop JOB-ID --savepointPath DIR --jobmanager URL            # stop with a savepoint
//! sluice sql -f SCRIPT.sql [--parallelism P] [--slots S] [-D KEY=VALUE]… [-s SAVEPOINT]
//!                                                                          # a Flink SQL script
//! sluice sql [--parallelism P] [--slots S]                                   # the SQL client
//! sluice jobmanager [--rpc-port P] [--rest-port R]                      # a cluster's JobManager
//!        [--ha etcd --etcd-endpoints URL[,URL...] --cluster-id ID]       #   (highly available)
//! sluice taskmanager --jobmanager HOST:P [--slots N] [--rpc-port P]     # a cluster's TaskManager
//! sluice taskmanager --ha etcd --etcd-endpoints URL --cluster-id ID     #   (following the leader)
//! sluice submit FILE.sql|FILE.json --jobmanager URL                     # submit, print the job id
//! sluice list --jobmanager URL                                          # the cluster's jobs
//! sluice cancel JOB-ID --jobmanager URL                                 # cancel a cluster job
//! sluice application FILE.sql [--rpc-port P] [--rest-port R] [-D KEY=VALUE]…
//!                                                   # a JobManager dedicated to one job
//! ```
//!
//! Ctrl-C while a `sluice sql` job runs cancels the job: `Job <id> cancelled`, and a script
//! exits with 130 (see `sluice_coordinator::interrupt`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice_coordinator::interrupt;
use sluice_coordinator::local::{LocalOptions, run_job};
use sluice_datasets::nexmark::NexmarkConfig;
use sluice_engine::api::StreamEnvironment;
use sluice_engine::api::nexmark::{NexmarkQuery, add_query};
use sluice_engine::checkpoint::{S3Config, StatePath};
use sluice_engine::connector::SinkSpec;
use sluice_engine::graph::JobGraph;
use sluice_engine::runtime::{CancelRequest, JobEnvironment};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Stateful computations over data streams, on Apache Arrow"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct LocalArgs {
    /// Slots of the embedded TaskManager (worker threads); default: one per core.
    #[arg(long)]
    slots: Option<usize>,
    /// Rows per batch produced by sources.
    #[arg(long)]
    batch_size: Option<usize>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SinkChoice {
    Blackhole,
    Print,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a Nexmark query over the generator on the embedded local mode.
    Nexmark {
        /// q0 (pass-through), q1 (currency conversion), q2 (selection), count (bids per auction),
        /// hop (hopping-window count per auction) or join (interval join of bids and auctions).
        #[arg(long, default_value = "q1")]
        query: String,
        /// Number of generated events (bids are 92 % of them).
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        /// Parallelism of every operator.
        #[arg(long, default_value_t = 1)]
        parallelism: u32,
        /// Generator seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where the results go.
        #[arg(long, value_enum, default_value = "blackhole")]
        sink: SinkChoice,
        /// Print the JobGraph as JSON instead of running it.
        #[arg(long)]
        print_graph: bool,
        #[command(flatten)]
        local: LocalArgs,
    },
    /// Runs a Flink SQL script on the embedded local mode. SELECT results go to stdout (a
    /// table, or a changelog for updating results); the INSERTs of the script run as one job
    /// whose per-operator result goes to stderr. Without `-f`: the interactive SQL client, which
    /// runs each statement as it is entered (piped stdin: statements without prompts, failing if
    /// any statement failed).
    Sql {
        /// The script (statements end with `;`); without it, the interactive client.
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// An init script run first, as Flink's `sql-client.sh -i`: `SET` and DDL only (e.g.
        /// the `tables.sql` that `sluice-datasets tpch` writes next to its tables).
        #[arg(short = 'i', long = "init", value_name = "FILE")]
        init: Option<PathBuf>,
        /// Default parallelism (`parallelism.default`; a SET in the script overrides it).
        #[arg(long, default_value_t = 1)]
        parallelism: u32,
        /// A configuration option, as Flink's `-D`: `-D execution.checkpointing.interval=10s`,
        /// or one of the S3 checkpoint store's `s3.endpoint`, `s3.access-key`,
        /// `s3.secret-key`, `s3.region`, `s3.path.style.access`. Applied before the script, so
        /// a SET in the script overrides it. Repeatable.
        #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = parse_option)]
        options: Vec<(String, String)>,
        /// Restore the job from a savepoint or a retained checkpoint: a directory holding
        /// `_metadata` (e.g. `<checkpoint dir>/<job-id>/chk-<n>`, local or `s3://…`), as
        /// Flink's `--fromSavepoint`. Operators find their state by name, so the script must
        /// build the same operators; the parallelism may differ.
        #[arg(short = 's', long = "from-savepoint", value_name = "PATH", value_parser = parse_location)]
        from_savepoint: Option<StatePath>,
        /// Serve the `'connector' = 'flight'` sink tables over Arrow Flight (and Flight SQL) on
        /// this port (0 picks a free one; `flight listening on ADDR` goes to stderr) while the
        /// job runs, and after a bounded job ended, until interrupted (Ctrl-C).
        #[arg(long, value_name = "PORT")]
        flight_port: Option<u16>,
        /// Address the Flight service binds.
        #[arg(long, default_value = "127.0.0.1")]
        flight_host: std::net::IpAddr,
        /// Require this bearer token on every Flight call (default: `$SLUICE_FLIGHT_TOKEN`,
        /// else none).
        #[arg(long, value_name = "TOKEN")]
        flight_token: Option<String>,
        #[command(flatten)]
        local: LocalArgs,
    },
    /// Takes a savepoint of a job (as Flink's `flink savepoint <jobId> [targetDirectory]`) and
    /// prints `Savepoint completed. Path: <dir>`. Without `--jobmanager`, of a job running in a
    /// local `sluice sql` process on this machine; with it, of a cluster job, over the REST API
    /// (the target must then be an absolute directory every TaskManager can write). The
    /// default target is the job's checkpoint directory. The job must checkpoint
    /// (`execution.checkpointing.interval`). With `--stop` the job stops after the savepoint,
    /// its sinks committed up to it (Flink's `flink stop --savepointPath`).
    Savepoint {
        /// The job id, as the job printed it at its start (or `sluice submit` printed it).
        job_id: String,
        /// Where the savepoint directory goes (a directory or an s3:// URL).
        #[arg(value_parser = parse_location)]
        target_dir: Option<StatePath>,
        /// Where the savepoint directory goes (same as TARGET-DIR).
        #[arg(short = 'd', long = "dir", conflicts_with = "target_dir", value_parser = parse_location)]
        dir: Option<StatePath>,
        /// Stop the job after the savepoint.
        #[arg(long)]
        stop: bool,
        /// The JobManager's REST address, http://HOST:PORT, for a cluster job.
        #[arg(long)]
        jobmanager: Option<String>,
    },
    /// Stops a cluster job with a savepoint (Flink's `flink stop`): its sinks commit up to the
    /// savepoint, and a job restored from it goes on from there. Prints
    /// `Savepoint completed. Path: <dir>`.
    Stop {
        job_id: String,
        /// Where the savepoint directory goes (a directory every TaskManager can write, or an
        /// s3:// URL).
        #[arg(short = 'p', long = "savepointPath", value_name = "DIR", value_parser = parse_location)]
        savepoint_path: Option<StatePath>,
        /// The JobManager's REST address, http://HOST:PORT.
        #[arg(long, default_value = "http://127.0.0.1:8081")]
        jobmanager: String,
    },
    /// Runs an application cluster: a JobManager dedicated to one SQL script's job. It plans
    /// the script at once (a bad script fails before anything starts), serves the RPC and REST
    /// APIs as `sluice jobmanager` does, waits until TaskManagers offer the slots the job needs
    /// (at most `slot.request.timeout`), submits the job, and exits when the job ends: 0 when
    /// it finished, 1 when it failed or was cancelled. Prints `rpc listening on ADDR`,
    /// `rest listening on ADDR` and `Job has been submitted with JobID ID` on stdout. Its
    /// TaskManagers are not stopped: they lose their JobManager and keep retrying to register.
    Application {
        /// The Flink SQL script; its INSERTs become the job.
        file: PathBuf,
        /// Address to bind (and advertise to TaskManagers).
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Port of the RPC services (TaskManagers connect here); 0 picks a free port.
        #[arg(long, default_value_t = 6123)]
        rpc_port: u16,
        /// Port of the REST API; 0 picks a free port.
        #[arg(long, default_value_t = 8081)]
        rest_port: u16,
        /// Default parallelism (`parallelism.default`; a SET in the script overrides it).
        #[arg(long)]
        parallelism: Option<u32>,
        /// A configuration option: those of `sluice jobmanager`, and `slot.request.timeout`
        /// (how long to wait for TaskManagers to offer enough slots; default 5min).
        /// Repeatable.
        #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = parse_option)]
        options: Vec<(String, String)>,
    },
    /// Runs a cluster's JobManager: the Dispatcher (REST API), the ResourceManager and one
    /// JobMaster per job. Prints `rpc listening on ADDR` and `rest listening on ADDR`; stops on
    /// SIGTERM or SIGINT.
    Jobmanager {
        /// Address to bind (and advertise to TaskManagers).
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Port of the RPC services (TaskManagers connect here); 0 picks a free port.
        #[arg(long, default_value_t = 6123)]
        rpc_port: u16,
        /// Port of the REST API; 0 picks a free port.
        #[arg(long, default_value_t = 8081)]
        rest_port: u16,
        /// A configuration option: `heartbeat.interval`, `heartbeat.timeout`,
        /// `slot.request.timeout` (durations such as `10s` or `500ms`),
        /// `rest.server.max-content-length` (bytes), `parallelism.default`, the defaults of
        /// every job's `execution.checkpointing.*` and `restart-strategy.*`, the S3
        /// checkpoint store's `s3.*` settings (unset: the `AWS_*` environment variables), and
        /// with `--ha etcd`, `high-availability.etcd.lease-ttl` (default 5s) and
        /// `high-availability.etcd.retry-delay` (default 1s). Repeatable.
        #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = parse_option)]
        options: Vec<(String, String)>,
        #[command(flatten)]
        ha: sluice_coordinator::cli::HaArgs,
        /// Serve the jobs' `'connector' = 'flight'` sink tables over Arrow Flight (and Flight
        /// SQL) on this port: one endpoint per TaskManager partition (0 picks a free port).
        #[arg(long, value_name = "PORT")]
        flight_port: Option<u16>,
        /// Require this bearer token on every sink-table Flight call (default:
        /// `$SLUICE_FLIGHT_TOKEN`, else none); give the TaskManagers the same one.
        #[arg(long, value_name = "TOKEN")]
        flight_token: Option<String>,
    },
    /// Runs a cluster's TaskManager: registers with the JobManager, offers its slots,
    /// heartbeats and runs the tasks deployed to it. Prints `rpc listening on ADDR` and
    /// `data listening on ADDR`; stops on SIGTERM or SIGINT.
    Taskmanager(sluice_coordinator::cli::TaskManagerArgs),
    /// Submits a job to a cluster: a Flink SQL script (its INSERTs become one job) or a
    /// JobGraph as JSON. Prints the job id.
    Submit {
        file: PathBuf,
        /// The JobManager's REST address, http://HOST:PORT.
        #[arg(long, default_value = "http://127.0.0.1:8081")]
        jobmanager: String,
    },
    /// Lists a cluster's jobs: id, state, name.
    List {
        /// The JobManager's REST address, http://HOST:PORT.
        #[arg(long, default_value = "http://127.0.0.1:8081")]
        jobmanager: String,
    },
    /// Cancels a cluster job.
    Cancel {
        job_id: String,
        /// The JobManager's REST address, http://HOST:PORT.
        #[arg(long, default_value = "http://127.0.0.1:8081")]
        jobmanager: String,
    },
    /// Runs a JobGraph read from a JSON file on the embedded local mode.
    Run {
        graph: PathBuf,
        #[command(flatten)]
        local: LocalArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Cluster processes log their life cycle (registrations, lost TaskManagers, job states);
    // local jobs say where they take savepoint requests.
    let default_filter = match cli.command {
        Command::Jobmanager { .. } | Command::Taskmanager { .. } | Command::Application { .. } => {
            "warn,sluice_coordinator=info,sluice_engine::runtime=info"
        }
        _ => "warn,sluice_engine::runtime::control=info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    // Ctrl-C while a `sluice sql` job runs cancels the job (see `interrupt`).
    let cancel = CancelRequest::new();
    let outcome = run(cli, &cancel);
    sluice_engine::alloc::skip_purges_at_exit();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if let Some(message) = error
                .downcast_ref::<sluice_engine::Error>()
                .and_then(|e| interrupt::cancelled_message(e, &cancel))
            {
                eprintln!("{message}");
                return ExitCode::from(interrupt::EXIT_CODE);
            }
            // Sluice errors carry their causes in their own message; `{:#}` would repeat them.
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn options(local: &LocalArgs) -> LocalOptions {
    LocalOptions {
        slots: local.slots,
        batch_size: local.batch_size,
    }
}

fn run(cli: Cli, cancel: &CancelRequest) -> anyhow::Result<()> {
    match cli.command {
        Command::Nexmark {
            query,
            events,
            parallelism,
            seed,
            sink,
            print_graph,
            local,
        } => {
            let query: NexmarkQuery = query.parse()?;
            let env =
                StreamEnvironment::new(format!("nexmark-{query}")).with_parallelism(parallelism);
            let config = NexmarkConfig::default()
                .with_seed(seed)
                .with_events(Some(events));
            let sink = match sink {
                SinkChoice::Blackhole => SinkSpec::Blackhole,
                SinkChoice::Print => SinkSpec::Print {
                    identifier: None,
                    standard_error: false,
                },
            };
            add_query(&env, query, config, sink)?;
            let (graph, registry) = env.build()?;
            if print_graph {
                println!("{}", graph.to_json()?);
                return Ok(());
            }
            let job_env = JobEnvironment {
                registry,
                ..Default::default()
            };
            let result = run_job(&graph, &job_env, &options(&local))?;
            eprint!("{result}");
            let seconds = result.wall_time.as_secs_f64();
            eprintln!(
                "{events} events in {seconds:.3} s: {:.2} M events/s at parallelism {parallelism}",
                events as f64 / seconds / 1e6
            );
            Ok(())
        }
        Command::Sql {
            file,
            init,
            parallelism,
            options,
            from_savepoint,
            flight_port,
            flight_host,
            flight_token,
            local,
        } => {
            interrupt::install(cancel.clone())
                .map_err(|e| anyhow::anyhow!("install the Ctrl-C handler: {e}"))?;
            let sink_tables = sluice_engine::connector::SinkTables::new();
            let catalog =
                sluice_coordinator::sink_tables::LocalSinkCatalog::new(sink_tables.clone());
            let served = match flight_port {
                Some(port) => Some(serve_sink_tables(
                    catalog.clone(),
                    std::net::SocketAddr::new(flight_host, port),
                    flight_token
                        .or_else(|| std::env::var("SLUICE_FLIGHT_TOKEN").ok())
                        .filter(|t| !t.is_empty()),
                )?),
                None => None,
            };
            // A script's jobs show their progress on stderr (the interactive client's do not:
            // its prompt shares the terminal).
            let progress = file.as_ref().map(|_| {
                sluice_coordinator::progress::ProgressDisplay::new(
                    sluice_coordinator::progress::Style::for_stderr(),
                ) as std::sync::Arc<dyn sluice_engine::runtime::JobObserver>
            });
            let mut session = sql_session(
                parallelism,
                &local,
                from_savepoint,
                cancel,
                sink_tables,
                progress,
            );
            for (key, value) in &options {
                session
                    .set_option(key, value)
                    .map_err(|e| anyhow::anyhow!("-D {key}={value}: {e}"))?;
            }
            if let Some(init) = &init {
                sluice_coordinator::sql_client::run_init_script(&mut session, init)?;
            }
            catalog.set_job("local", "RUNNING");
            let result = match file {
                Some(file) => run_sql(&file, session),
                None => sluice_coordinator::sql_client::run(session, cancel.clone()),
            };
            let job_id = cancel
                .job_id()
                .map_or_else(|| "local".to_string(), |id| id.0);
            match (&result, served) {
                (Ok(()), Some(address)) => {
                    catalog.set_job(&job_id, "FINISHED");
                    eprintln!(
                        "the job ended; serving its sink tables on {address} until interrupted \
                         (Ctrl-C)"
                    );
                    loop {
                        std::thread::park();
                    }
                }
                (Err(_), _) => catalog.set_job(&job_id, "FAILED"),
                (Ok(()), None) => catalog.set_job(&job_id, "FINISHED"),
            }
            result
        }
        Command::Savepoint {
            job_id,
            target_dir,
            dir,
            stop,
            jobmanager,
        } => {
            if job_id.is_empty() || !job_id.chars().all(|c| c.is_ascii_alphanumeric()) {
                anyhow::bail!("'{job_id}' is not a job id (hexadecimal, as printed at job start)");
            }
            let target = dir.or(target_dir).map(absolute).transpose()?;
            let path = match jobmanager {
                Some(jobmanager) => cluster_savepoint(&jobmanager, &job_id, target, stop)?,
                None => {
                    let socket = control_dir().join(format!("{job_id}.sock"));
                    sluice_engine::runtime::request_savepoint(&socket, target.as_ref(), stop)?
                }
            };
            println!("Savepoint completed. Path: {path}");
            Ok(())
        }
        Command::Stop {
            job_id,
            savepoint_path,
            jobmanager,
        } => {
            if job_id.is_empty() || !job_id.chars().all(|c| c.is_ascii_alphanumeric()) {
                anyhow::bail!(
                    "'{job_id}' is not a job id (hexadecimal, as `sluice submit` printed it)"
                );
            }
            let target = savepoint_path.map(absolute).transpose()?;
            let path = cluster_savepoint(&jobmanager, &job_id, target, true)?;
            println!("Savepoint completed. Path: {path}");
            Ok(())
        }
        Command::Application {
            file,
            host,
            rpc_port,
            rest_port,
            parallelism,
            options,
        } => run_application(
            &file,
            std::net::SocketAddr::new(host, rpc_port),
            std::net::SocketAddr::new(host, rest_port),
            parallelism,
            &options,
        ),
        Command::Jobmanager {
            host,
            rpc_port,
            rest_port,
            options,
            ha,
            flight_port,
            flight_token,
        } => {
            let mut options = options;
            let ha = ha.config(&mut options)?;
            let mut config = jobmanager_config(&options)?;
            config.ha = ha;
            config.flight_port = flight_port;
            config.flight_token = sluice_coordinator::cli::flight_token(flight_token);
            let runtime = tokio_runtime()?;
            runtime.block_on(sluice_coordinator::jobmanager::run(
                config,
                std::net::SocketAddr::new(host, rpc_port),
                std::net::SocketAddr::new(host, rest_port),
                |bound| {
                    // Formatted first, so one write puts all lines out: a reader that stops
                    // after the lines it wants does not make a later line fail.
                    let mut lines = format!(
                        "rpc listening on {}\nrest listening on {}\n",
                        bound.rpc, bound.rest
                    );
                    if let Some(flight) = bound.flight {
                        lines.push_str(&format!("flight listening on {flight}\n"));
                    }
                    print!("{lines}");
                },
                sluice_coordinator::jobmanager::termination_signal(),
            ))?;
            Ok(())
        }
        Command::Taskmanager(args) => {
            args.run(sluice_engine::api::UserFunctions::new())?;
            Ok(())
        }
        Command::Submit { file, jobmanager } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("read '{}': {e}", file.display()))?;
            let content_type = if file.extension().is_some_and(|e| e == "json") {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            let response = sluice_coordinator::rest_client::request(
                &jobmanager,
                "POST",
                "/jobs",
                Some((content_type, text.as_bytes())),
            )?;
            if response.status != 202 {
                anyhow::bail!(
                    "submit '{}': {} (HTTP {})",
                    file.display(),
                    response.error_message(),
                    response.status
                );
            }
            let json = response.json()?;
            let id = json["jobid"].as_str().ok_or_else(|| {
                anyhow::anyhow!("the JobManager answered without a job id: {json}")
            })?;
            println!("{id}");
            Ok(())
        }
        Command::List { jobmanager } => {
            let response = sluice_coordinator::rest_client::request(
                &jobmanager,
                "GET",
                "/jobs/overview",
                None,
            )?;
            if response.status != 200 {
                anyhow::bail!("{} (HTTP {})", response.error_message(), response.status);
            }
            let json = response.json()?;
            let jobs = json["jobs"].as_array().cloned().unwrap_or_default();
            if jobs.is_empty() {
                println!("No jobs.");
            }
            for job in jobs {
                println!(
                    "{} : {} : {}",
                    job["jid"].as_str().unwrap_or("?"),
                    job["state"].as_str().unwrap_or("?"),
                    job["name"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        Command::Cancel { job_id, jobmanager } => {
            if job_id.is_empty() || !job_id.chars().all(|c| c.is_ascii_alphanumeric()) {
                anyhow::bail!(
                    "'{job_id}' is not a job id (hexadecimal, as `sluice submit` printed it)"
                );
            }
            let response = sluice_coordinator::rest_client::request(
                &jobmanager,
                "PATCH",
                &format!("/jobs/{job_id}?mode=cancel"),
                None,
            )?;
            if response.status != 202 {
                anyhow::bail!(
                    "cancel {job_id}: {} (HTTP {})",
                    response.error_message(),
                    response.status
                );
            }
            println!("Cancelled job {job_id}.");
            Ok(())
        }
        Command::Run { graph, local } => {
            let json = std::fs::read_to_string(&graph)
                .map_err(|e| anyhow::anyhow!("read '{}': {e}", graph.display()))?;
            let graph = JobGraph::from_json(&json)?;
            let result = run_job(&graph, &JobEnvironment::default(), &options(&local))?;
            eprint!("{result}");
            Ok(())
        }
    }
}

/// How long `sluice savepoint --jobmanager` waits for the savepoint: a savepoint of a large
/// state can take minutes; past this the request may still complete, and the error says how
/// to ask.
const SAVEPOINT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// A savepoint of cluster job `job_id` over the REST API; returns its directory.
fn cluster_savepoint(
    jobmanager: &str,
    job_id: &str,
    target: Option<StatePath>,
    stop: bool,
) -> anyhow::Result<StatePath> {
    Ok(sluice_coordinator::rest_client::savepoint(
        jobmanager,
        job_id,
        target.as_ref(),
        stop,
        SAVEPOINT_TIMEOUT,
    )?)
}

/// `sluice application`: plans the script, then runs a JobManager until the job ends.
fn run_application(
    file: &std::path::Path,
    rpc: std::net::SocketAddr,
    rest: std::net::SocketAddr,
    parallelism: Option<u32>,
    options: &[(String, String)],
) -> anyhow::Result<()> {
    use sluice_coordinator::job_master::JobState;
    use sluice_coordinator::jobmanager::{ApplicationConfig, ApplicationEvent};

    let mut application = ApplicationConfig::default();
    let mut jobmanager_options = Vec::new();
    for (key, value) in options {
        match key.as_str() {
            "slot.request.timeout" => {
                application.slot_request_timeout = duration_option(key, value)?
            }
            _ => jobmanager_options.push((key.clone(), value.clone())),
        }
    }
    let mut config = jobmanager_config(&jobmanager_options)?;
    if let Some(parallelism) = parallelism {
        if parallelism == 0 {
            anyhow::bail!("--parallelism must be at least 1");
        }
        config.parallelism = parallelism;
    }
    let script = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("read '{}': {e}", file.display()))?;
    // Planned before any port is bound: a bad script fails at once, not after TaskManagers came.
    config.slot_request_timeout = application.slot_request_timeout;
    let planned = sluice_coordinator::dispatcher::Cluster::new(config.clone(), String::new())
        .plan(&script)
        .map_err(|e| anyhow::anyhow!("'{}': {e}", file.display()))?;
    let runtime = tokio_runtime()?;
    let outcome = runtime.block_on(sluice_coordinator::jobmanager::run_application(
        config,
        application,
        planned,
        rpc,
        rest,
        |bound| {
            println!("rpc listening on {}", bound.rpc);
            println!("rest listening on {}", bound.rest);
        },
        |event| match event {
            ApplicationEvent::WaitingForSlots { needed, available } => eprintln!(
                "Waiting for TaskManagers to offer {needed} slot(s) ({available} free now)"
            ),
            ApplicationEvent::Submitted(id) => {
                println!("Job has been submitted with JobID {id}")
            }
        },
        sluice_coordinator::jobmanager::termination_signal(),
    ))?;
    let seconds = outcome.duration_ms as f64 / 1000.0;
    match outcome.state {
        JobState::Finished => {
            println!(
                "Job '{}' ({}) finished in {seconds:.3} s",
                outcome.name, outcome.job_id
            );
            Ok(())
        }
        state => anyhow::bail!(
            "Job '{}' ({}) ended as {state} after {seconds:.3} s: {}",
            outcome.name,
            outcome.job_id,
            outcome
                .failure
                .as_deref()
                .unwrap_or("no failure cause recorded")
        ),
    }
}

/// A multi-threaded tokio runtime for the cluster processes.
fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("start the async runtime: {e}"))
}

/// A duration option ("10s", "500ms").
fn duration_option(key: &str, value: &str) -> anyhow::Result<std::time::Duration> {
    let duration = sluice_engine::checkpoint::parse_duration(key, value)?;
    if duration.is_zero() {
        anyhow::bail!("-D {key}={value}: must be more than zero");
    }
    Ok(duration)
}

/// The JobManager's configuration from its `-D` options.
fn jobmanager_config(
    options: &[(String, String)],
) -> anyhow::Result<sluice_coordinator::dispatcher::JobManagerConfig> {
    let mut config = sluice_coordinator::dispatcher::JobManagerConfig::default();
    let mut s3 = S3Config::default();
    for (key, value) in options {
        match key.as_str() {
            key if S3Config::is_s3_key(key) => s3.set(key, value)?,
            "heartbeat.interval" => config.heartbeat_interval = duration_option(key, value)?,
            "heartbeat.timeout" => config.heartbeat_timeout = duration_option(key, value)?,
            "rest.server.max-content-length" => {
                config.max_content_length = value
                    .parse()
                    .map_err(|_| anyhow::anyhow!("-D {key}={value}: expected a number of bytes"))?
            }
            "parallelism.default" => {
                config.parallelism = value.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                    anyhow::anyhow!("-D {key}={value}: expected a positive integer")
                })?
            }
            "slot.request.timeout" => config.slot_request_timeout = duration_option(key, value)?,
            key if key.starts_with("execution.checkpointing.")
                || key.starts_with("restart-strategy") =>
            {
                config
                    .checkpoint_options
                    .push((key.to_string(), value.to_string()))
            }
            other => anyhow::bail!(
                "-D {other}: unknown option for a jobmanager (known: heartbeat.interval, \
                 heartbeat.timeout, rest.server.max-content-length, parallelism.default, \
                 slot.request.timeout, execution.checkpointing.*, restart-strategy.*, s3.*, \
                 high-availability.etcd.lease-ttl, high-availability.etcd.retry-delay)"
            ),
        }
    }
    config.stores = sluice_coordinator::checkpoint::s3::state_stores(s3);
    if config.heartbeat_timeout <= config.heartbeat_interval {
        anyhow::bail!(
            "heartbeat.timeout ({} ms) must be longer than heartbeat.interval ({} ms)",
            config.heartbeat_timeout.as_millis(),
            config.heartbeat_interval.as_millis()
        );
    }
    Ok(config)
}

/// Where running local jobs listen for job control: `$TMPDIR/sluice`.
fn control_dir() -> PathBuf {
    std::env::temp_dir().join("sluice")
}

/// `path` made absolute against the current directory when it is local (the job runs
/// elsewhere); URLs stay as they are.
fn absolute(path: StatePath) -> anyhow::Result<StatePath> {
    match path {
        StatePath::Local(local) => std::path::absolute(&local)
            .map(StatePath::Local)
            .map_err(|e| anyhow::anyhow!("'{}': {e}", local.display())),
        url => Ok(url),
    }
}

/// A checkpoint or savepoint location: a local path, `file://` URI or `s3://` URL.
fn parse_location(text: &str) -> Result<StatePath, String> {
    StatePath::parse(text)
}

/// `KEY=VALUE` of a `-D` option.
fn parse_option(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!("expected KEY=VALUE, got '{text}'")),
    }
}

/// Serves `catalog` over Arrow Flight on its own thread for the rest of the process; returns
/// the bound address (also printed to stderr as `flight listening on ADDR`).
fn serve_sink_tables(
    catalog: sluice_coordinator::sink_tables::LocalSinkCatalog,
    address: std::net::SocketAddr,
    token: Option<String>,
) -> anyhow::Result<std::net::SocketAddr> {
    use sluice_flight::sink_table::{SinkTableServer, SinkTableService};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sluice-flight")
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("start the Flight service's runtime: {e}"))?;
    let service = SinkTableService::new(std::sync::Arc::new(catalog)).with_token(token);
    let server = runtime
        .block_on(SinkTableServer::bind(address, service))
        .map_err(|e| anyhow::anyhow!("Flight service on {address}: {e}"))?;
    let bound = server.address();
    eprintln!("flight listening on {bound}");
    std::thread::Builder::new()
        .name("sluice-flight".into())
        .spawn(move || {
            if let Err(error) = runtime.block_on(server.serve(std::future::pending())) {
                eprintln!("error: the Flight service on {bound} stopped: {error}");
            }
        })
        .map_err(|e| anyhow::anyhow!("start the Flight service's thread: {e}"))?;
    Ok(bound)
}

fn sql_session(
    parallelism: u32,
    local: &LocalArgs,
    from_savepoint: Option<StatePath>,
    cancel: &CancelRequest,
    sink_tables: sluice_engine::connector::SinkTables,
    progress: Option<std::sync::Arc<dyn sluice_engine::runtime::JobObserver>>,
) -> sluice_engine::sql::Session {
    use sluice_engine::runtime::RuntimeConfig;
    use sluice_engine::sql::{Session, SessionConfig};

    let mut runtime = RuntimeConfig::default()
        .with_initial_restore(from_savepoint)
        .with_state_stores(sluice_coordinator::checkpoint::s3::state_stores(
            S3Config::default(),
        ))
        .with_control_dir(Some(control_dir()))
        .with_cancel_request(Some(cancel.clone()))
        .with_observer(progress);
    if let Some(slots) = local.slots {
        runtime = runtime.with_slots(slots);
    }
    if let Some(rows) = local.batch_size {
        runtime = runtime.with_batch_size(rows);
    }
    Session::new(SessionConfig {
        parallelism,
        runtime,
        sink_tables,
    })
}

fn run_sql(file: &std::path::Path, mut session: sluice_engine::sql::Session) -> anyhow::Result<()> {
    let script = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("read '{}': {e}", file.display()))?;
    // Locks stdout per outcome, never across a job: a `print` sink writes to stdout from the
    // slot threads while the job runs.
    session.run_script(&script, &mut |outcome| {
        sluice_coordinator::sql_client::print_outcome(&outcome, &mut std::io::stdout().lock())
    })?;
    Ok(())
}
