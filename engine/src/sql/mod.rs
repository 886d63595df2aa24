//! The Flink SQL front end: a [`Session`] parses a script and runs its statements.
//!
//! Module map: [`parser`] (statements, Flink syntax `sqlparser` does not read), [`catalog`]
//! (tables and views), [`types`] (SQL → Arrow types), [`expr`] (SQL → engine expressions),
//! [`connector`] (`WITH` options → sources and sinks), [`planner`] (queries → DataStream calls),
//! `window_join` (joins of window aggregations), `group_window` (legacy group windows →
//! window TVFs), and `pushdown` and `predicate_pushdown` (the columns a Parquet scan reads and
//! the filter conjuncts it prunes row groups and pages with).
//!
//! Statements:
//! - `CREATE [TEMPORARY] TABLE … WITH (…)`, `CREATE [TEMPORARY] VIEW v [(a, b)] AS …`,
//!   `SHOW TABLES`, `DESCRIBE t`, `EXPLAIN <query or INSERT>` (the JobGraph as text),
//!   `DROP TABLE` / `DROP VIEW [IF EXISTS] name`.
//! - `SET 'key' = 'value'`: `execution.runtime-mode` (`streaming` | `batch`),
//!   `parallelism.default`, `table.exec.source.idle-timeout` (e.g. `5 s`, `500 ms`, `0` = off),
//!   `pipeline.name`; `table.exec.mini-batch.*` are accepted and ignored (Sluice always works on
//!   batches); checkpoint keys (`execution.checkpointing.*`, 1.x `state.checkpoints.*` aliases) and
//!   `restart-strategy.*` configure the local runtime's checkpoints and restarts;
//!   `execution.savepoint.path` restores the following jobs from a savepoint or retained
//!   checkpoint (local or `s3://`); `s3.*` set up the S3 checkpoint store
//!   ([`crate::checkpoint::S3Config`]); `taskmanager.memory.managed.size` (e.g. `256mb`) and
//!   `io.tmp.dirs` set the local runtime's managed memory and spill directory
//!   ([`crate::spill`]); `execution.batch-shuffle-mode` (`ALL_EXCHANGES_PIPELINED`, the
//!   default, or `ALL_EXCHANGES_BLOCKING`) says whether batch jobs run stage by stage over
//!   materialised exchanges ([`crate::graph::BatchShuffleMode`]);
//!   `table.optimizer.agg-phase-strategy` (`AUTO`, the default, `ONE_PHASE` or `TWO_PHASE`)
//!   says whether batch aggregations fold each subtask's rows before their exchange
//!   ([`crate::graph::AggregatePhase`]); other keys fail.
//! - `SELECT …` runs at once as its own job into a collecting sink ([`Outcome::Table`], or
//!   [`Outcome::Changelog`] when the result is updating in streaming mode; in batch mode an
//!   updating result, e.g. of an outer join, is folded into its final rows: each `+I`/`+U`
//!   adds a row, each `-U`/`-D` removes an equal one).
//! - `INSERT INTO t SELECT …` — statement set semantics: every `INSERT` of a script (or of an
//!   `EXECUTE STATEMENT SET BEGIN … END;` / `BEGIN STATEMENT SET; … END;` block) joins one job,
//!   which runs at `END` or, for INSERTs outside a block, at the end of the script
//!   ([`Session::finish`]). Settings in force when the job runs apply to it. A column list
//!   (`INSERT INTO t (a, c) …`) fills the other columns with NULL; `PARTITION (k = 'v')` gives
//!   static partition values; `INSERT OVERWRITE` (batch mode, filesystem tables) replaces the
//!   table's files, or the partitions that receive rows.
//! - A bounded `SELECT … ORDER BY` is collected by one subtask, so its rows come back sorted.
//!
//! Streaming mode plans non-windowed aggregations as changelogs (`+I`, `-U`, `+U`); batch mode
//! emits final results at end of input. Window aggregations fire on watermarks in both (a
//! bounded input ends with the maximum watermark, which fires every window).
//!
//! Errors name the statement's line and column, and the table, column or expression at fault.

pub mod catalog;
pub mod connector;
pub mod expr;
mod group_window;
pub mod parser;
pub mod planner;
mod predicate_pushdown;
mod pushdown;
mod render;
mod system_time;
pub mod types;
mod window_join;

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int8Type, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sqlparser::ast::{
    ColumnOption, CreateTable, CreateTableOptions, Expr as SqlExpr, SqlOption, Statement,
    TableConstraint, TableObject,
};
use tracing::info;

use self::catalog::{Catalog, Column, Table, Watermark};
use self::parser::{Located, ParsedStatement, Position};
use self::planner::Planner;
use crate::api::{DataStream, StreamEnvironment};
use crate::checkpoint::{CheckpointConfig, RestartStrategy, parse_duration};
use crate::element::{ROW_KIND_COLUMN, RowKind};
use crate::expr::col;
use crate::graph::{AggregatePhaseStrategy, BatchShuffleMode, JobGraph, OperatorSpec};
use crate::runtime::{JobResult, LocalRuntime, RuntimeConfig};
use crate::{Error, Result};

/// The name of the collecting sink of a `SELECT`.
const RESULT_SINK: &str = "result";

/// What a statement produced.
#[derive(Debug)]
pub enum Outcome {
    /// A DDL or `SET` statement succeeded.
    Done,
    /// `INSERT` added to the pending statement set.
    Pending,
    /// Text to show (`SHOW TABLES`, `DESCRIBE`, `EXPLAIN`).
    Text(String),
    /// The rows of an insert-only `SELECT`.
    Table {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    /// The changes of an updating `SELECT` (first column `_row_kind`).
    Changelog {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    /// A statement set (the `INSERT`s) ran.
    Job(JobResult),
}

impl Outcome {
    /// The rows as text, one `Vec` per row; a changelog's rows start with `+I`, `-U`, …; text
    /// outcomes give one row per line (tab-separated values).
    pub fn rows(&self) -> Result<Vec<Vec<String>>> {
        let batches = match self {
            Outcome::Table { batches, .. } | Outcome::Changelog { batches, .. } => batches,
            Outcome::Text(text) => {
                return Ok(text
                    .lines()
                    .map(|l| l.split('\t').map(str::to_string).collect())
                    .collect());
            }
            _ => return Ok(Vec::new()),
        };
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in batches {
            let kinds = batch
                .schema()
                .index_of(ROW_KIND_COLUMN)
                .ok()
                .map(|i| batch.column(i).as_primitive::<Int8Type>().clone());
            let formatters = batch
                .columns()
                .iter()
                .zip(batch.schema().fields())
                .filter(|(_, f)| f.name() != ROW_KIND_COLUMN)
                .map(|(c, _)| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::arrow("format a result", e))?;
            for row in 0..batch.num_rows() {
                let mut values = Vec::with_capacity(formatters.len() + 1);
                if let Some(kinds) = &kinds {
                    let kind = RowKind::from_i8(kinds.value(row)).unwrap_or(RowKind::Insert);
                    values.push(kind.short_string().to_string());
                }
                for f in &formatters {
                    values.push(f.value(row).to_string());
                }
                rows.push(values);
            }
        }
        Ok(rows)
    }

    /// Renders the outcome as the SQL client would show it.
    pub fn render(&self) -> Result<String> {
        Ok(match self {
            Outcome::Done | Outcome::Pending | Outcome::Job(_) => String::new(),
            Outcome::Text(text) => text.clone(),
            Outcome::Table { schema, batches } => format!("{}\n", render::table(schema, batches)?),
            Outcome::Changelog { .. } => {
                let mut out = String::new();
                for row in self.rows()? {
                    let (kind, values) = row
                        .split_first()
                        .map_or(("+I", &row[..]), |(k, v)| (k.as_str(), v));
                    let _ = writeln!(out, "{kind}[{}]", values.join(", "));
                }
                out
            }
        })
    }
}

/// Checkpoint keys (Flink 2.x names) that `SET` accepts.
const CHECKPOINT_KEYS: &[&str] = &[
    "execution.checkpointing.interval",
    "execution.checkpointing.timeout",
    "execution.checkpointing.min-pause",
    "execution.checkpointing.dir",
    "execution.checkpointing.num-retained",
    "execution.checkpointing.incremental",
];

/// Flink 1.x names accepted as aliases of the 2.x checkpoint keys.
const CHECKPOINT_ALIASES: &[(&str, &str)] = &[
    ("state.checkpoints.dir", "execution.checkpointing.dir"),
    (
        "state.checkpoints.num-retained",
        "execution.checkpointing.num-retained",
    ),
    (
        "state.backend.incremental",
        "execution.checkpointing.incremental",
    ),
];

/// Restart strategy keys.
const RESTART_KEYS: &[&str] = &[
    "restart-strategy.type",
    "restart-strategy.fixed-delay.attempts",
    "restart-strategy.fixed-delay.delay",
];

/// Session settings with their defaults.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Default parallelism of every operator (`parallelism.default`); default 1.
    pub parallelism: u32,
    /// The local runtime's configuration (slots, batch size, idle timeout).
    pub runtime: RuntimeConfig,
    /// Where the jobs' `'connector' = 'flight'` sinks keep their tables (shared with a Flight
    /// service that serves them, e.g. `sluice sql -f FILE --flight-port P`).
    pub sink_tables: crate::connector::SinkTables,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            parallelism: 1,
            runtime: RuntimeConfig::default(),
            sink_tables: Default::default(),
        }
    }
}

/// A SQL session: catalog, settings and the pending statement set.
pub struct Session {
    catalog: Catalog,
    config: SessionConfig,
    streaming: bool,
    /// How batch jobs' exchanges move data (`execution.batch-shuffle-mode`).
    batch_shuffle_mode: BatchShuffleMode,
    /// Whether batch aggregations run in two phases (`table.optimizer.agg-phase-strategy`).
    agg_phase_strategy: AggregatePhaseStrategy,
    job_name: Option<String>,
    pending: Option<StreamEnvironment>,
    in_statement_set: bool,
    /// Checkpoint and restart settings as `SET`, by canonical key.
    durability: std::collections::BTreeMap<String, String>,
}

impl Session {
    pub fn new(config: SessionConfig) -> Self {
        Session {
            catalog: Catalog::default(),
            config,
            streaming: true,
            batch_shuffle_mode: BatchShuffleMode::AllExchangesPipelined,
            agg_phase_strategy: AggregatePhaseStrategy::default(),
            job_name: None,
            pending: None,
            in_statement_set: false,
            durability: std::collections::BTreeMap::new(),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Runs a whole script: every statement, then the pending statement set. `on_outcome` sees
    /// each outcome as it is produced.
    pub fn run_script(
        &mut self,
        script: &str,
        on_outcome: &mut dyn FnMut(Outcome) -> Result<()>,
    ) -> Result<()> {
        for statement in parser::parse_script(script)? {
            let outcome = self.execute_statement(&statement)?;
            on_outcome(outcome)?;
        }
        if let Some(outcome) = self.finish()? {
            on_outcome(outcome)?;
        }
        Ok(())
    }

    /// Runs the statements of `sql`; `INSERT`s stay pending until [`Session::finish`] (or the
    /// `END` of a statement set).
    pub fn execute(&mut self, sql: &str) -> Result<Vec<Outcome>> {
        parser::parse_script(sql)?
            .iter()
            .map(|s| self.execute_statement(s))
            .collect()
    }

    /// Plans a script into one job without running it, for submission to a cluster: its
    /// `SET`, `CREATE` and `INSERT` statements as [`Session::run_script`] would, the `INSERT`s
    /// as one JobGraph. A script without `INSERT`, or with a `SELECT` (whose result would have
    /// to come back to the client), is an error.
    pub fn plan_job(
        &mut self,
        script: &str,
    ) -> Result<(JobGraph, crate::operator::OperatorRegistry)> {
        for located in parser::parse_script(script)? {
            if let ParsedStatement::Sql { statement, .. } = &located.statement
                && matches!(statement.as_ref(), Statement::Query(_))
            {
                return Err(locate(
                    Error::sql(
                        "SELECT",
                        "a submitted job writes to tables: use INSERT INTO (SELECT results are \
                         shown by `sluice sql`)",
                    ),
                    located.position,
                ));
            }
            if matches!(located.statement, ParsedStatement::EndStatementSet) {
                // The statement set's INSERTs become the submitted job; nothing runs here.
                if !self.in_statement_set {
                    return Err(locate(
                        Error::sql("END", "END without an open statement set"),
                        located.position,
                    ));
                }
                self.in_statement_set = false;
                continue;
            }
            self.execute_statement(&located)?;
        }
        self.in_statement_set = false;
        let env = self
            .pending
            .take()
            .ok_or_else(|| Error::sql("script", "the script has no INSERT INTO: nothing to run"))?;
        env.build()
    }

    /// Runs the pending `INSERT`s as one job, if any.
    pub fn finish(&mut self) -> Result<Option<Outcome>> {
        self.in_statement_set = false;
        match self.pending.take() {
            Some(env) => Ok(Some(Outcome::Job(self.run(&env)?.0))),
            None => Ok(None),
        }
    }

    fn planner<'a>(&'a self, env: &'a StreamEnvironment) -> Planner<'a> {
        // A partial aggregation holds groups of no key group, so it cannot checkpoint: with
        // checkpoints or a restore, `AUTO` plans one phase.
        let durable = self.restore_path().is_some()
            || self
                .runtime_config()
                .is_ok_and(|config| config.checkpointing.is_some());
        let strategy = match self.agg_phase_strategy {
            AggregatePhaseStrategy::Auto if durable => AggregatePhaseStrategy::OnePhase,
            strategy => strategy,
        };
        Planner::new(&self.catalog, env, self.streaming).with_agg_phase_strategy(strategy)
    }

    fn environment(&self, name: &str) -> StreamEnvironment {
        let env = StreamEnvironment::new(self.job_name.clone().unwrap_or_else(|| name.to_string()))
            .with_parallelism(self.config.parallelism);
        if self.streaming {
            env
        } else {
            env.with_shuffle_mode(self.batch_shuffle_mode)
        }
    }

    fn run(
        &self,
        env: &StreamEnvironment,
    ) -> Result<(JobResult, crate::connector::CollectedResults)> {
        let runtime = LocalRuntime::new(self.runtime_config()?);
        let output = env.execute_with(&runtime, self.config.sink_tables.clone())?;
        Ok((output.result, output.collected))
    }

    fn execute_statement(&mut self, located: &Located) -> Result<Outcome> {
        let position = located.position;
        self.execute_inner(located).map_err(|e| locate(e, position))
    }

    fn execute_inner(&mut self, located: &Located) -> Result<Outcome> {
        match &located.statement {
            ParsedStatement::Set { key, value } => {
                self.set(key, value)?;
                Ok(Outcome::Done)
            }
            ParsedStatement::BeginStatementSet => {
                if self.in_statement_set {
                    return Err(Error::sql(
                        "BEGIN STATEMENT SET",
                        "a statement set is already open",
                    ));
                }
                self.in_statement_set = true;
                Ok(Outcome::Done)
            }
            ParsedStatement::EndStatementSet => {
                if !self.in_statement_set {
                    return Err(Error::sql("END", "END without an open statement set"));
                }
                Ok(self.finish()?.unwrap_or(Outcome::Done))
            }
            ParsedStatement::Sql {
                statement,
                computed,
                watermark,
            } => match statement.as_ref() {
                Statement::CreateTable(create) => {
                    self.create_table(create, computed, watermark.as_deref())?;
                    Ok(Outcome::Done)
                }
                Statement::CreateView(view) => {
                    if view.materialized {
                        return Err(expr::not_supported("MATERIALIZED VIEW"));
                    }
                    let name = object_name(&view.name);
                    let query = if view.columns.is_empty() {
                        (*view.query).clone()
                    } else {
                        renamed_view_query(&view.name, &view.query, &view.columns)?
                    };
                    self.catalog.add_view(&name, query, view.or_replace)?;
                    Ok(Outcome::Done)
                }
                Statement::Query(query) => {
                    if self.in_statement_set {
                        return Err(Error::sql(
                            "statement set",
                            "only INSERT statements may appear in a statement set",
                        ));
                    }
                    let env = self.environment("select");
                    let stream = self.planner(&env).plan(query)?;
                    stream.collect(RESULT_SINK)?;
                    let (_, collected) = self.run(&env)?;
                    let schema = stream.schema();
                    let batches = collected.batches(RESULT_SINK);
                    Ok(
                        if schema.index_of(ROW_KIND_COLUMN).is_ok() && !self.streaming {
                            // Batch mode shows the final result of an updating query (a regular
                            // join over bounded inputs), as Flink's batch mode does.
                            let (schema, batches) = fold_changelog(&schema, &batches)?;
                            Outcome::Table { schema, batches }
                        } else if schema.index_of(ROW_KIND_COLUMN).is_ok() {
                            Outcome::Changelog { schema, batches }
                        } else {
                            Outcome::Table { schema, batches }
                        },
                    )
                }
                Statement::Insert(insert) => {
                    let env = match self.pending.take() {
                        Some(env) => env,
                        None => self.environment("insert"),
                    };
                    let result = self.plan_insert(&env, insert);
                    self.pending = Some(env);
                    result?;
                    Ok(Outcome::Pending)
                }
                Statement::Explain { statement, .. } => {
                    let env = self.environment("explain");
                    match statement.as_ref() {
                        Statement::Query(query) => {
                            self.planner(&env).plan(query)?.collect(RESULT_SINK)?;
                        }
                        Statement::Insert(insert) => self.plan_insert(&env, insert)?,
                        other => {
                            return Err(expr::not_supported(&format!("EXPLAIN of '{other}'")));
                        }
                    }
                    let (graph, _) = env.build()?;
                    Ok(Outcome::Text(explain(&graph)))
                }
                Statement::ShowTables { .. } => {
                    let mut text = String::new();
                    for name in self.catalog.names() {
                        let _ = writeln!(text, "{name}");
                    }
                    Ok(Outcome::Text(text))
                }
                Statement::ExplainTable { table_name, .. } => {
                    let name = object_name(table_name);
                    Ok(Outcome::Text(self.describe(&name)?))
                }
                Statement::Drop {
                    object_type,
                    if_exists,
                    names,
                    ..
                } => {
                    self.drop(*object_type, *if_exists, names)?;
                    Ok(Outcome::Done)
                }
                other => Err(expr::not_supported(&format!(
                    "statement '{}'",
                    first_words(&other.to_string())
                ))),
            },
        }
    }

    /// `DROP TABLE` / `DROP VIEW [IF EXISTS] name, …`: removes each name from the catalog,
    /// in order. Jobs already running keep what they planned.
    fn drop(
        &mut self,
        object_type: sqlparser::ast::ObjectType,
        if_exists: bool,
        names: &[sqlparser::ast::ObjectName],
    ) -> Result<()> {
        use sqlparser::ast::ObjectType;
        for name in names {
            let name = object_name(name);
            match object_type {
                ObjectType::Table => self.catalog.drop_table(&name, if_exists)?,
                ObjectType::View => self.catalog.drop_view(&name, if_exists)?,
                other => return Err(expr::not_supported(&format!("DROP {other}"))),
            }
        }
        Ok(())
    }

    fn describe(&self, name: &str) -> Result<String> {
        let mut text = String::new();
        match self.catalog.relation(name)? {
            catalog::Relation::Table(table) => {
                let _ = writeln!(text, "name\ttype\tnull\tkey\textras\twatermark");
                for column in &table.columns {
                    let key = if table.primary_key.contains(&column.name) {
                        "PRI"
                    } else {
                        ""
                    };
                    let extras = match &column.computed {
                        Some(e) => format!("AS {e}"),
                        None => String::new(),
                    };
                    let watermark = match &table.watermark {
                        Some(w) if w.column == column.name => {
                            format!("{} - {} ms", w.column, w.delay_ms)
                        }
                        _ => String::new(),
                    };
                    let _ = writeln!(
                        text,
                        "{}\t{}\t{}\t{key}\t{extras}\t{watermark}",
                        column.name,
                        types::sql_name(&column.data_type),
                        if key.is_empty() { "TRUE" } else { "FALSE" }
                    );
                }
            }
            catalog::Relation::View(query) => {
                let env = self.environment("describe");
                let stream = self.planner(&env).plan(query)?;
                let _ = writeln!(text, "name\ttype");
                for field in stream.schema().fields() {
                    let _ = writeln!(
                        text,
                        "{}\t{}",
                        field.name(),
                        types::sql_name(field.data_type())
                    );
                }
            }
        }
        Ok(text)
    }

    /// The runtime configuration a job runs with: the session's, plus the checkpoint and
    /// restart settings made with `SET`.
    fn runtime_config(&self) -> Result<RuntimeConfig> {
        let options = || {
            self.durability
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
        };
        let mut config = self.config.runtime.clone();
        config.checkpointing = CheckpointConfig::from_options(options())?;
        config.restart_strategy = RestartStrategy::from_options(options())?;
        Ok(config)
    }

    /// The checkpoint settings made with `SET` (or [`Session::set_option`]); `None` when
    /// checkpointing is off.
    pub fn checkpoint_config(&self) -> Result<Option<CheckpointConfig>> {
        Ok(self.runtime_config()?.checkpointing)
    }

    /// The savepoint or checkpoint the next jobs restore from (`execution.savepoint.path`, or
    /// the runtime configuration's [`RuntimeConfig::initial_restore`]).
    pub fn restore_path(&self) -> Option<&crate::checkpoint::StatePath> {
        self.config.runtime.initial_restore.as_ref()
    }

    /// The `s3.*` settings made with `SET` (or [`Session::set_option`]).
    pub fn s3_config(&self) -> &crate::checkpoint::S3Config {
        &self.config.runtime.state_stores.s3
    }

    /// The restart strategy set with `SET 'restart-strategy…'` (or [`Session::set_option`]).
    pub fn restart_strategy(&self) -> Result<RestartStrategy> {
        Ok(self.runtime_config()?.restart_strategy)
    }

    /// Sets a configuration option as `SET 'key' = 'value'` does (the CLI's `-D key=value`).
    pub fn set_option(&mut self, key: &str, value: &str) -> Result<()> {
        self.set(key, value)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let bad = |message: &str| Error::Config {
            key: key.to_string(),
            value: value.to_string(),
            message: message.to_string(),
        };
        match key {
            "execution.runtime-mode" => {
                self.streaming = match value.to_ascii_lowercase().as_str() {
                    "streaming" => true,
                    "batch" => false,
                    _ => return Err(bad("expected 'streaming' or 'batch'")),
                }
            }
            "execution.batch-shuffle-mode" => {
                self.batch_shuffle_mode = BatchShuffleMode::parse(value).ok_or_else(|| {
                    bad("expected 'ALL_EXCHANGES_BLOCKING' or 'ALL_EXCHANGES_PIPELINED'")
                })?;
            }
            "table.optimizer.agg-phase-strategy" => {
                self.agg_phase_strategy = AggregatePhaseStrategy::parse(value)
                    .ok_or_else(|| bad("expected 'AUTO', 'ONE_PHASE' or 'TWO_PHASE'"))?;
            }
            "parallelism.default" => {
                self.config.parallelism = value
                    .parse::<u32>()
                    .ok()
                    .filter(|p| *p >= 1)
                    .ok_or_else(|| bad("expected a positive integer"))?;
            }
            "table.exec.source.idle-timeout" => {
                let timeout = parse_duration(key, value)?;
                self.config.runtime = self
                    .config
                    .runtime
                    .clone()
                    .with_idle_timeout((!timeout.is_zero()).then_some(timeout));
            }
            "pipeline.name" => self.job_name = Some(value.to_string()),
            "taskmanager.memory.managed.size" => {
                let bytes = crate::spill::parse_memory_size(value).map_err(|m| bad(&m))?;
                self.config.runtime = self.config.runtime.clone().with_managed_memory(bytes);
            }
            "io.tmp.dirs" => {
                // Flink takes a list; operators spill into the first directory.
                let dir = crate::spill::first_tmp_dir(value)
                    .ok_or_else(|| bad("expected a directory"))?;
                self.config.runtime = self.config.runtime.clone().with_spill_dir(dir);
            }
            "execution.savepoint.path" => {
                let path = crate::checkpoint::StatePath::parse(value).map_err(|m| bad(&m))?;
                self.config.runtime.initial_restore = Some(path);
            }
            _ if crate::checkpoint::S3Config::is_s3_key(key) => {
                self.config.runtime.state_stores.s3.set(key, value)?;
            }
            _ if key.starts_with("table.exec.mini-batch.") => {
                info!(
                    key,
                    value, "mini-batch settings have no effect: Sluice always processes batches"
                );
            }
            _ if CHECKPOINT_KEYS.contains(&key)
                || CHECKPOINT_ALIASES.iter().any(|(alias, _)| *alias == key)
                || RESTART_KEYS.contains(&key) =>
            {
                let canonical = CHECKPOINT_ALIASES
                    .iter()
                    .find(|(alias, _)| *alias == key)
                    .map_or(key, |(_, name)| *name);
                // Flink writes checkpoint directories as URIs; local paths are what exists here.
                let value = if canonical == "execution.checkpointing.dir" {
                    value.strip_prefix("file://").unwrap_or(value)
                } else {
                    value
                };
                // Each value must parse now; whether the keys add up (an interval needs a
                // directory) is checked when a job runs, since scripts set them one by one.
                let single = [(canonical, value)];
                if canonical != "execution.checkpointing.interval" {
                    CheckpointConfig::from_options(single)?;
                } else {
                    let with_dir = [(canonical, value), ("execution.checkpointing.dir", ".")];
                    CheckpointConfig::from_options(with_dir)?;
                }
                RestartStrategy::from_options(single)?;
                self.durability
                    .insert(canonical.to_string(), value.to_string());
            }
            _ => {
                const KNOWN: &[&str] = &[
                    "execution.runtime-mode",
                    "execution.batch-shuffle-mode",
                    "table.optimizer.agg-phase-strategy",
                    "parallelism.default",
                    "table.exec.source.idle-timeout",
                    "pipeline.name",
                    "table.exec.mini-batch.enabled",
                    "execution.savepoint.path",
                    "taskmanager.memory.managed.size",
                    "io.tmp.dirs",
                ];
                let candidates = KNOWN
                    .iter()
                    .chain(CHECKPOINT_KEYS)
                    .chain(RESTART_KEYS)
                    .chain(crate::checkpoint::S3Config::KEYS)
                    .copied();
                let hint = match crate::expr::closest(&key.to_ascii_lowercase(), candidates) {
                    Some(best) => format!("unknown key (did you mean '{best}'?)"),
                    None => format!(
                        "unknown key (known: {}, {}, {})",
                        KNOWN.join(", "),
                        CHECKPOINT_KEYS.join(", "),
                        RESTART_KEYS.join(", ")
                    ),
                };
                return Err(bad(&hint));
            }
        }
        Ok(())
    }

    fn create_table(
        &mut self,
        create: &CreateTable,
        computed: &[parser::ComputedColumn],
        watermark: Option<&parser::WatermarkClause>,
    ) -> Result<()> {
        let name = object_name(&create.name);
        let at = |message: String| Error::sql(format!("CREATE TABLE {name}"), message);
        if create.query.is_some() {
            return Err(expr::not_supported("CREATE TABLE … AS SELECT"));
        }
        let mut columns: Vec<Column> = Vec::new();
        let mut primary_key: Vec<String> = Vec::new();
        for def in &create.columns {
            let data_type = types::to_arrow(&def.data_type)
                .map_err(|e| at(format!("column '{}': {e}", def.name.value)))?;
            for option in &def.options {
                if let ColumnOption::PrimaryKey(_) = &option.option {
                    primary_key.push(def.name.value.clone());
                }
            }
            columns.push(Column {
                name: def.name.value.clone(),
                data_type,
                computed: None,
            });
        }
        for constraint in &create.constraints {
            match constraint {
                TableConstraint::PrimaryKey(pk) => {
                    for c in &pk.columns {
                        primary_key.push(c.column.expr.to_string());
                    }
                }
                other => return Err(at(format!("constraint '{other}' is not supported yet"))),
            }
        }
        // Computed columns: typed against the physical columns.
        let physical_schema = Arc::new(arrow::datatypes::Schema::new(
            columns
                .iter()
                .map(|c| arrow::datatypes::Field::new(&c.name, c.data_type.clone(), true))
                .collect::<Vec<_>>(),
        ));
        for (inserted, c) in computed.iter().enumerate() {
            let e = expr::convert(&c.expr, &expr::Scope::default())
                .map_err(|e| at(format!("computed column '{}': {e}", c.name)))?;
            let resolved = e
                .resolve(&physical_schema)
                .map_err(|e| at(format!("computed column '{}': {e}", c.name)))?;
            let position = (c.after + inserted).min(columns.len());
            columns.insert(
                position,
                Column {
                    name: c.name.clone(),
                    data_type: resolved.data_type().clone(),
                    computed: Some(e),
                },
            );
        }
        let watermark = match watermark {
            None => None,
            Some(w) => {
                let Some(column) = columns.iter().find(|c| c.name == w.column) else {
                    return Err(at(format!(
                        "unknown watermark column '{}' (columns: {})",
                        w.column,
                        columns
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                };
                if !matches!(column.data_type, arrow::datatypes::DataType::Timestamp(..)) {
                    return Err(at(format!(
                        "the watermark column '{}' must be a TIMESTAMP or TIMESTAMP_LTZ, found {}",
                        w.column,
                        types::sql_name(&column.data_type)
                    )));
                }
                Some(Watermark {
                    column: w.column.clone(),
                    delay_ms: watermark_delay(&w.column, &w.expr).map_err(|e| at(e.to_string()))?,
                })
            }
        };
        let mut options = std::collections::BTreeMap::new();
        let with = match &create.table_options {
            CreateTableOptions::With(options) => options.as_slice(),
            CreateTableOptions::None => &[],
            other => return Err(at(format!("table options '{other}' are not supported yet"))),
        };
        for option in with {
            let SqlOption::KeyValue { key, value } = option else {
                return Err(at(format!("option '{option}': expected 'key' = 'value'")));
            };
            let key = key
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(|i| i.value.clone())
                .unwrap_or_else(|| key.to_string());
            let value = match value {
                SqlExpr::Value(v) => match &v.value {
                    sqlparser::ast::Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                },
                other => other.to_string(),
            };
            options.insert(key, value);
        }
        let partition_keys = partition_keys(create, &columns, &name)?;
        let table = Table {
            name: name.clone(),
            columns,
            watermark,
            primary_key,
            options,
            partition_keys,
        };
        table.connector()?;
        self.catalog.add_table(table, create.if_not_exists)
    }

    fn plan_insert(&self, env: &StreamEnvironment, insert: &sqlparser::ast::Insert) -> Result<()> {
        let TableObject::TableName(name) = &insert.table else {
            return Err(expr::not_supported("INSERT INTO a table function"));
        };
        let name = object_name(name);
        let Some(source) = &insert.source else {
            return Err(expr::not_supported("INSERT without a query"));
        };
        let table = self.catalog.table(&name)?;
        let mut sink = connector::sink_spec(table)?;
        if insert.overwrite {
            sink = overwriting(sink, self.streaming, &name)?;
        }
        let stream = self.planner(env).plan(source)?;
        let aligned = match &insert.partitioned {
            None => align_to_table(&stream, table, &insert.columns)?,
            Some(values) => {
                let (stream, targets) = static_partition(&stream, table, insert, values)?;
                align_to_table(&stream, table, &targets)?
            }
        };
        aligned.sink(&name, sink)
    }
}

/// `INSERT … PARTITION (dt = '…') SELECT …`: the query gives the other columns (all but the
/// static ones, in table order, or the listed ones); the static values are appended as
/// constant columns. Returns the extended stream and the columns it fills, in order.
fn static_partition(
    stream: &DataStream,
    table: &Table,
    insert: &sqlparser::ast::Insert,
    values: &[SqlExpr],
) -> Result<(DataStream, Vec<sqlparser::ast::ObjectName>)> {
    use sqlparser::ast::{BinaryOperator, Ident, ObjectName, Spanned};
    let at = |e: &SqlExpr, message: String| {
        let start = e.span().start;
        Error::sql(
            format!("line {}, column {}", start.line, start.column),
            message,
        )
    };
    let mut statics: Vec<(String, crate::expr::Expr)> = Vec::new();
    for value in values {
        let SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = value
        else {
            return Err(at(
                value,
                format!("PARTITION expects column = value, found '{value}'"),
            ));
        };
        let SqlExpr::Identifier(column) = left.as_ref() else {
            return Err(at(
                value,
                format!("PARTITION expects column = value, found '{value}'"),
            ));
        };
        if !table.partition_keys.contains(&column.value) {
            return Err(at(
                left,
                format!(
                    "'{}' is not a partition column of table '{}' (partition columns: {})",
                    column.value,
                    table.name,
                    table.partition_keys.join(", ")
                ),
            ));
        }
        let literal = expr::convert(right, &expr::Scope::default())?;
        if !matches!(literal, crate::expr::Expr::Literal(_)) {
            return Err(at(
                right,
                format!("a partition value must be a literal, found '{right}'"),
            ));
        }
        statics.push((column.value.clone(), literal));
    }
    let static_names: Vec<&str> = statics.iter().map(|(n, _)| n.as_str()).collect();
    let mut targets: Vec<ObjectName> = if insert.columns.is_empty() {
        table
            .physical_schema()
            .fields()
            .iter()
            .filter(|f| !static_names.contains(&f.name().as_str()))
            .map(|f| ObjectName::from(vec![Ident::new(f.name())]))
            .collect()
    } else {
        insert.columns.clone()
    };
    let schema = stream.schema();
    let mut columns: Vec<(String, crate::expr::Expr)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), col(f.name())))
        .collect();
    for (name, literal) in statics {
        columns.push((format!("$partition_{name}"), literal));
        targets.push(ObjectName::from(vec![Ident::new(&name)]));
    }
    Ok((stream.project(columns)?, targets))
}

/// `INSERT OVERWRITE`: batch mode, a filesystem table.
fn overwriting(
    sink: crate::connector::SinkSpec,
    streaming: bool,
    table: &str,
) -> Result<crate::connector::SinkSpec> {
    if streaming {
        return Err(Error::sql(
            format!("INSERT OVERWRITE {table}"),
            "INSERT OVERWRITE is only supported in batch mode (SET 'execution.runtime-mode' = \
             'batch')",
        ));
    }
    let crate::connector::SinkSpec::Filesystem(mut spec) = sink else {
        return Err(Error::sql(
            format!("INSERT OVERWRITE {table}"),
            format!(
                "the {} connector cannot be overwritten (only filesystem tables can)",
                sink.name()
            ),
        ));
    };
    // Unique per job: the time of planning and the process.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    spec.overwrite = Some(format!("{nanos:x}{:x}", std::process::id()));
    Ok(crate::connector::SinkSpec::Filesystem(spec))
}

/// Projects (and casts) a query's columns onto a table's physical columns, by position.
fn align_to_table(
    stream: &DataStream,
    table: &Table,
    targets: &[sqlparser::ast::ObjectName],
) -> Result<DataStream> {
    let schema = stream.schema();
    let sink = table.physical_schema();
    let updating = schema.index_of(ROW_KIND_COLUMN).is_ok();
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != ROW_KIND_COLUMN)
        .collect();
    if !targets.is_empty() {
        return align_to_columns(stream, table, targets, &fields, updating);
    }
    if fields.len() != sink.fields().len() {
        return Err(Error::sql(
            format!("INSERT INTO {}", table.name),
            format!(
                "the query has {} columns ({}) but table '{}' has {} ({})",
                fields.len(),
                fields
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                table.name,
                sink.fields().len(),
                crate::graph::describe_columns(&sink)
            ),
        ));
    }
    let identity = !updating
        && fields
            .iter()
            .zip(sink.fields().iter())
            .all(|(f, s)| f.name() == s.name() && f.data_type() == s.data_type());
    if identity {
        return Ok(stream.clone());
    }
    let mut columns = Vec::new();
    if updating {
        columns.push((ROW_KIND_COLUMN.to_string(), col(ROW_KIND_COLUMN)));
    }
    for (f, s) in fields.iter().zip(sink.fields().iter()) {
        columns.push((
            s.name().clone(),
            planner::align(col(f.name()), f.data_type(), s.data_type()),
        ));
    }
    stream.project(columns)
}

/// `INSERT INTO t (a, c) SELECT …`: the query's columns go to the listed columns, in order;
/// the table's other physical columns are NULL.
fn align_to_columns(
    stream: &DataStream,
    table: &Table,
    targets: &[sqlparser::ast::ObjectName],
    fields: &[&arrow::datatypes::FieldRef],
    updating: bool,
) -> Result<DataStream> {
    use sqlparser::ast::Spanned;
    let sink = table.physical_schema();
    let at = |name: &sqlparser::ast::ObjectName, message: String| {
        let start = name.span().start;
        Error::sql(
            format!("line {}, column {}", start.line, start.column),
            message,
        )
    };
    let mut positions: Vec<usize> = Vec::with_capacity(targets.len());
    for target in targets {
        let name = object_name(target);
        let Ok(index) = sink.index_of(&name) else {
            let hint = match crate::expr::closest(
                &name,
                sink.fields().iter().map(|f| f.name().as_str()),
            ) {
                Some(best) => format!(" (did you mean '{best}'?)"),
                None => String::new(),
            };
            return Err(at(
                target,
                format!(
                    "unknown column '{name}' of table '{}'{hint}; its columns: {}",
                    table.name,
                    crate::graph::describe_columns(&sink)
                ),
            ));
        };
        if positions.contains(&index) {
            return Err(at(
                target,
                format!(
                    "column '{name}' is listed twice in INSERT INTO {}",
                    table.name
                ),
            ));
        }
        positions.push(index);
    }
    if fields.len() != targets.len() {
        return Err(at(
            &targets[0],
            format!(
                "the query has {} columns ({}) but the INSERT lists {} ({})",
                fields.len(),
                fields
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                targets.len(),
                targets
                    .iter()
                    .map(object_name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let mut columns = Vec::with_capacity(sink.fields().len() + 1);
    if updating {
        columns.push((ROW_KIND_COLUMN.to_string(), col(ROW_KIND_COLUMN)));
    }
    for (index, s) in sink.fields().iter().enumerate() {
        let value = match positions.iter().position(|&p| p == index) {
            Some(i) => planner::align(col(fields[i].name()), fields[i].data_type(), s.data_type()),
            None => crate::expr::Expr::Literal(crate::expr::ScalarValue::Null)
                .cast(s.data_type().clone()),
        };
        columns.push((s.name().clone(), value));
    }
    stream.project(columns)
}

/// The `PARTITIONED BY (a, b)` columns of a `CREATE TABLE`: physical columns of the table.
fn partition_keys(create: &CreateTable, columns: &[Column], table: &str) -> Result<Vec<String>> {
    use sqlparser::ast::HiveDistributionStyle;
    let HiveDistributionStyle::PARTITIONED { columns: keys } = &create.hive_distribution else {
        return Ok(Vec::new());
    };
    let mut names = Vec::with_capacity(keys.len());
    for key in keys {
        let start = key.name.span.start;
        let at = |message: String| {
            Error::sql(
                format!("line {}, column {}", start.line, start.column),
                message,
            )
        };
        if !matches!(key.data_type, sqlparser::ast::DataType::Unspecified) {
            return Err(at(format!(
                "PARTITIONED BY lists columns of the table, without a type (found '{key}')"
            )));
        }
        let name = key.name.value.clone();
        match columns.iter().find(|c| c.name == name) {
            Some(c) if c.computed.is_some() => {
                return Err(at(format!(
                    "partition column '{name}' of table '{table}' is a computed column"
                )));
            }
            Some(_) => {}
            None => {
                return Err(at(format!(
                    "unknown partition column '{name}' of table '{table}' (columns: {})",
                    columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        if names.contains(&name) {
            return Err(at(format!("partition column '{name}' is listed twice")));
        }
        names.push(name);
    }
    Ok(names)
}

/// `col - INTERVAL 'n' unit` or `col` → the delay in milliseconds.
/// The rows a changelog leaves: each `+I`/`+U` adds its row, each `-U`/`-D` removes one equal
/// row added before (rows compare by their displayed values). The result keeps the order in
/// which the remaining rows were added and has no `_row_kind` column.
fn fold_changelog(
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let kind_index = schema
        .index_of(ROW_KIND_COLUMN)
        .map_err(|e| Error::arrow("fold a changelog result", e))?;
    let values: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| i != kind_index)
        .collect();
    let options = FormatOptions::default().with_null("NULL");
    let mut live: std::collections::HashMap<Vec<String>, Vec<(usize, usize)>> =
        std::collections::HashMap::new();
    for (b, batch) in batches.iter().enumerate() {
        let kinds = batch.column(kind_index).as_primitive::<Int8Type>();
        let formatters = values
            .iter()
            .map(|&i| ArrayFormatter::try_new(batch.column(i).as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::arrow("fold a changelog result", e))?;
        for row in 0..batch.num_rows() {
            let key: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            match RowKind::from_i8(kinds.value(row)) {
                Some(RowKind::UpdateBefore | RowKind::Delete) => {
                    if let Some(rows) = live.get_mut(&key) {
                        rows.pop();
                    }
                }
                _ => live.entry(key).or_default().push((b, row)),
            }
        }
    }
    let mut keep: Vec<Vec<bool>> = batches.iter().map(|b| vec![false; b.num_rows()]).collect();
    for (b, row) in live.into_values().flatten() {
        if let Some(slot) = keep.get_mut(b).and_then(|k| k.get_mut(row)) {
            *slot = true;
        }
    }
    let folded_schema = Arc::new(
        schema
            .project(&values)
            .map_err(|e| Error::arrow("fold a changelog result", e))?,
    );
    let mut out = Vec::new();
    for (batch, keep) in batches.iter().zip(keep) {
        let projected = batch
            .project(&values)
            .map_err(|e| Error::arrow("fold a changelog result", e))?;
        let filtered = arrow::compute::filter_record_batch(
            &projected,
            &arrow::array::BooleanArray::from(keep),
        )
        .map_err(|e| Error::arrow("fold a changelog result", e))?;
        if filtered.num_rows() > 0 {
            out.push(filtered);
        }
    }
    Ok((folded_schema, out))
}

fn watermark_delay(column: &str, expr: &SqlExpr) -> Result<i64> {
    let is_column = |e: &SqlExpr| matches!(e, SqlExpr::Identifier(i) if i.value == column);
    match expr {
        e if is_column(e) => Ok(0),
        SqlExpr::BinaryOp {
            left,
            op: sqlparser::ast::BinaryOperator::Minus,
            right,
        } if is_column(left) => match right.as_ref() {
            SqlExpr::Interval(interval) => expr::interval_millis(interval),
            other => Err(expr::not_supported(&format!(
                "watermark delay '{other}' (use INTERVAL 'n' SECOND)"
            ))),
        },
        other => Err(expr::not_supported(&format!(
            "watermark expression '{other}' (use {column} - INTERVAL 'n' SECOND)"
        ))),
    }
}

fn object_name(name: &sqlparser::ast::ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.clone())
        .unwrap_or_else(|| name.to_string())
}

fn first_words(text: &str) -> String {
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Puts the statement's position on planning errors; runtime errors pass unchanged.
fn locate(error: Error, position: Position) -> Error {
    match error {
        Error::Sql { location, message }
            if !location.starts_with("line") && !location.starts_with("statement") =>
        {
            Error::sql(format!("statement at {position}, {location}"), message)
        }
        e @ Error::Sql { .. } => e,
        e @ (Error::Plan { .. } | Error::Expression { .. } | Error::Config { .. }) => {
            Error::sql(format!("statement at {position}"), e.to_string())
        }
        other => other,
    }
}

/// The JobGraph as a readable plan: vertices with kind, parallelism and details, then edges.
pub fn explain(graph: &JobGraph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== JobGraph '{}' ==", graph.name);
    for id in graph.topological_order() {
        let vertex = graph.vertex(id);
        let detail = match &vertex.operator {
            OperatorSpec::Source {
                connector,
                watermark,
            } => {
                let mut d = format!("connector={}", connector.name());
                if let crate::connector::SourceSpec::Filesystem(spec) = connector
                    && let Some(predicate) = &spec.predicate
                {
                    let _ = write!(d, ", predicate={predicate}");
                }
                if let Some(w) = watermark {
                    let _ = write!(
                        d,
                        ", watermark={} - {} ms",
                        w.column, w.max_out_of_orderness_ms
                    );
                }
                d
            }
            OperatorSpec::Filter { predicate } => format!("predicate={predicate}"),
            OperatorSpec::Project { columns, watermark } => {
                let mut d = columns
                    .iter()
                    .map(|(n, e)| {
                        if *e == col(n) {
                            n.clone()
                        } else {
                            format!("{e} AS {n}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                if let Some(w) = watermark {
                    let _ = write!(
                        d,
                        "; watermark={} - {} ms",
                        w.column, w.max_out_of_orderness_ms
                    );
                }
                d
            }
            OperatorSpec::KeyedAggregate(spec) => {
                let phase = match spec.phase {
                    crate::graph::AggregatePhase::Single => "",
                    crate::graph::AggregatePhase::Partial => ", phase=partial",
                    crate::graph::AggregatePhase::Final { .. } => ", phase=final",
                };
                format!(
                    "keys=[{}], aggregates=[{}], emit={:?}{phase}",
                    spec.keys.join(", "),
                    describe_calls(&spec.aggregates),
                    spec.emit
                )
            }
            OperatorSpec::WindowAggregate(spec) => format!(
                "keys=[{}], window={:?}, time={:?}, aggregates=[{}]",
                spec.keys.join(", "),
                spec.window,
                spec.time,
                describe_calls(&spec.aggregates)
            ),
            OperatorSpec::Rank(spec) => spec.describe(),
            OperatorSpec::Sink { connector } => format!("connector={}", connector.name()),
            OperatorSpec::Join(spec) => {
                let keys = format!(
                    "keys=[{}] = [{}]",
                    spec.left_keys.join(", "),
                    spec.right_keys.join(", ")
                );
                match &spec.kind {
                    crate::graph::JoinKind::Regular { join_type }
                    | crate::graph::JoinKind::Hash { join_type } => {
                        format!("{join_type:?} {keys}")
                    }
                    crate::graph::JoinKind::Interval {
                        left_time,
                        right_time,
                        lower_ms,
                        upper_ms,
                    } => format!(
                        "{keys}, right.{right_time} + {lower_ms} ms <= left.{left_time} <= \
                         right.{right_time} + {upper_ms} ms"
                    ),
                    crate::graph::JoinKind::Window {
                        left_time,
                        right_time,
                        size_ms,
                    } => format!("{keys}, tumbling {size_ms} ms on {left_time} / {right_time}"),
                    crate::graph::JoinKind::Subquery { residual, .. } => match residual {
                        Some(residual) => format!("{keys}, residual {residual}"),
                        None => keys,
                    },
                }
            }
            OperatorSpec::Sort(spec) => spec.describe(),
            OperatorSpec::LookupJoin(spec) => spec.describe(),
            OperatorSpec::Union | OperatorSpec::Custom { .. } | OperatorSpec::User { .. } => {
                String::new()
            }
        };
        let order = match vertex.read_first {
            Some(0) => ", reads left first",
            Some(_) => ", reads right first",
            None => "",
        };
        let _ = writeln!(
            out,
            "[{}] {} '{}' parallelism={} {}{order}",
            id.0,
            vertex.operator.kind_name(),
            vertex.name,
            vertex.parallelism,
            detail
        );
    }
    let _ = writeln!(out, "== edges ==");
    // With blocking exchanges, the edges between chains are materialised (stage boundaries).
    let blocking = match graph.shuffle_mode() {
        BatchShuffleMode::AllExchangesBlocking => {
            crate::runtime::ExecutionGraph::new(graph, 1)
                .with_blocking_exchanges()
                .blocking
        }
        BatchShuffleMode::AllExchangesPipelined => vec![false; graph.edges().len()],
    };
    for (edge, blocking) in graph.edges().iter().zip(blocking) {
        let _ = writeln!(
            out,
            "[{}] -> [{}] input {}: {:?}{}",
            edge.source.0,
            edge.target.0,
            edge.input_index,
            edge.partitioning,
            if blocking { ", blocking" } else { "" }
        );
    }
    out
}

fn describe_calls(calls: &[crate::graph::AggregateCall]) -> String {
    calls
        .iter()
        .map(|c| {
            format!(
                "{}({}) AS {}",
                c.function.name(),
                c.input.as_deref().unwrap_or("*"),
                c.output
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CREATE VIEW name (a, b) AS query` as `SELECT * FROM (query) AS name (a, b)`: the column
/// list renames the query's columns in order (the planner checks their number where the view
/// is used, as for a derived table's column list).
fn renamed_view_query(
    view: &sqlparser::ast::ObjectName,
    query: &sqlparser::ast::Query,
    columns: &[sqlparser::ast::ViewColumnDef],
) -> Result<sqlparser::ast::Query> {
    use sqlparser::ast::{Ident, ObjectNamePart, SetExpr, TableAliasColumnDef, TableFactor};
    // The view's name with its place in the script, for errors about the column list.
    let name = match view.0.last() {
        Some(ObjectNamePart::Identifier(ident)) => ident.clone(),
        _ => Ident::new(object_name(view)),
    };
    if let Some(typed) = columns
        .iter()
        .find(|c| c.data_type.is_some() || c.options.is_some())
    {
        return Err(expr::not_supported(&format!(
            "a type or options on view column '{}' of '{}'",
            typed.name, name.value
        )));
    }
    let mut wrapper = sqlparser::parser::Parser::new(&sqlparser::dialect::GenericDialect {})
        .try_with_sql("SELECT * FROM (SELECT 1) AS v")
        .and_then(|mut p| p.parse_query())
        .map_err(|e| Error::Internal(format!("the view wrapper does not parse: {e}")))?;
    let SetExpr::Select(select) = wrapper.body.as_mut() else {
        return Err(Error::Internal("the view wrapper is no SELECT".into()));
    };
    let Some(TableFactor::Derived {
        subquery,
        alias: Some(alias),
        ..
    }) = select.from.first_mut().map(|item| &mut item.relation)
    else {
        return Err(Error::Internal(
            "the view wrapper has no derived table".into(),
        ));
    };
    **subquery = query.clone();
    alias.name = name;
    alias.columns = columns
        .iter()
        .map(|c| TableAliasColumnDef {
            name: c.name.clone(),
            data_type: None,
        })
        .collect();
    Ok(*wrapper)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folded_changelog_keeps_the_rows_not_retracted() {
        use arrow::array::{Int8Array, Int64Array};
        use arrow::datatypes::{DataType, Field, Schema};
        let schema = Arc::new(Schema::new(vec![
            Field::new(ROW_KIND_COLUMN, DataType::Int8, false),
            Field::new("k", DataType::Int64, true),
        ]));
        let batch = |kinds: Vec<i8>, keys: Vec<Option<i64>>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int8Array::from(kinds)),
                    Arc::new(Int64Array::from(keys)),
                ],
            )
            .unwrap()
        };
        let batches = vec![
            batch(vec![0, 0, 0], vec![Some(1), None, Some(1)]),
            batch(vec![3, 0, 3], vec![None, Some(2), Some(1)]),
        ];
        let (folded, out) = fold_changelog(&schema, &batches).unwrap();
        assert_eq!(folded.fields().len(), 1);
        let outcome = Outcome::Table {
            schema: folded,
            batches: out,
        };
        let mut rows = outcome.rows().unwrap();
        rows.sort();
        assert_eq!(rows, vec![vec!["1".to_string()], vec!["2".to_string()]]);
    }

    #[test]
    fn a_sorted_select_renders_in_order() {
        let mut session = Session::new(SessionConfig {
            parallelism: 3,
            runtime: RuntimeConfig::default().with_slots(3),
            ..Default::default()
        });
        session
            .execute("SET 'execution.runtime-mode' = 'batch';")
            .unwrap();
        let outcomes = session
            .execute(
                "SELECT x, y FROM (VALUES (3, 'c'), (1, 'a'), (4, 'd'), (2, 'b'), (5, 'e')) \
                 AS t(x, y) WHERE x > 1 ORDER BY x DESC LIMIT 3;",
            )
            .unwrap();
        let text = outcomes.last().unwrap().render().unwrap();
        let values: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("| ") && !l.contains(" x "))
            .collect();
        assert_eq!(
            values,
            vec!["| 5 | e |", "| 4 | d |", "| 3 | c |"],
            "rendered:\n{text}"
        );
    }

    #[test]
    fn idle_timeout_is_a_duration() {
        let mut session = Session::new(SessionConfig::default());
        session
            .execute("SET 'table.exec.source.idle-timeout' = '500 ms';")
            .unwrap();
        assert_eq!(
            session.config.runtime.idle_timeout,
            Some(std::time::Duration::from_millis(500))
        );
        let err = session
            .execute("SET 'table.exec.source.idle-timeout' = 'soon';")
            .unwrap_err();
        assert!(
            err.to_string().contains("table.exec.source.idle-timeout"),
            "{err}"
        );
    }

    #[test]
    fn unknown_set_key_suggests() {
        let mut session = Session::new(SessionConfig::default());
        let err = session
            .execute("SET 'parallelism.defualt' = '2';")
            .unwrap_err();
        assert!(err.to_string().contains("parallelism.default"), "{err}");
        // Keys arrive one by one; the combination is checked when a job runs.
        session
            .execute("SET 'execution.checkpointing.interval' = '10s';")
            .unwrap();
        let err = session.runtime_config().unwrap_err();
        assert!(
            err.to_string().contains("execution.checkpointing.dir"),
            "{err}"
        );
        session
            .execute("SET 'state.checkpoints.dir' = 'file:///tmp/sluice-checkpoints';")
            .unwrap();
        let checkpoints = session.runtime_config().unwrap().checkpointing.unwrap();
        assert_eq!(checkpoints.interval, std::time::Duration::from_secs(10));
        assert_eq!(
            checkpoints.dir,
            crate::checkpoint::StatePath::Local("/tmp/sluice-checkpoints".into())
        );
        // S3 checkpoints: the store's settings, and a restore path in a bucket.
        session
            .execute("SET 'execution.checkpointing.dir' = 's3://bucket/chk';")
            .unwrap();
        session
            .execute("SET 's3.endpoint' = 'http://127.0.0.1:9000';")
            .unwrap();
        session
            .execute("SET 's3.path.style.access' = 'true';")
            .unwrap();
        session
            .execute("SET 'execution.savepoint.path' = 's3://bucket/sp/savepoint-1';")
            .unwrap();
        let config = session.runtime_config().unwrap();
        assert_eq!(
            config.checkpointing.unwrap().dir.to_string(),
            "s3://bucket/chk"
        );
        assert_eq!(
            config.state_stores.s3.endpoint.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            session.restore_path().map(ToString::to_string).as_deref(),
            Some("s3://bucket/sp/savepoint-1")
        );
        let err = session
            .execute("SET 's3.secret' = 'x';")
            .unwrap_err()
            .to_string();
        assert!(err.contains("s3.secret-key"), "{err}");
        let err = session
            .execute("SET 'execution.checkpointing.dir' = 'gs://bucket/chk';")
            .unwrap_err()
            .to_string();
        assert!(err.contains("gs://"), "{err}");
        let err = session
            .execute("SET 'execution.checkpointing.interval' = 'soon';")
            .unwrap_err();
        assert!(
            err.to_string().contains("execution.checkpointing.interval"),
            "{err}"
        );
        let err = session
            .execute("SET 'execution.checkpointing.intervall' = '10s';")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("did you mean 'execution.checkpointing.interval'"),
            "{err}"
        );
        assert!(!checkpoints.incremental);
        session
            .execute("SET 'execution.checkpointing.incremental' = 'true';")
            .unwrap();
        let checkpoints = session.runtime_config().unwrap().checkpointing.unwrap();
        assert!(checkpoints.incremental);
        let err = session
            .execute("SET 'state.backend.incremental' = 'on';")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("execution.checkpointing.incremental"),
            "{err}"
        );
    }
}
