//! `WITH (…)` options → the engine's [`SourceSpec`] / [`SinkSpec`].
//!
//! Connectors by their Flink names:
//! - `datagen` (source): every option except `connector` goes to [`DatagenSource`] unchanged.
//! - `filesystem` (source and sink): `path`, `format` = `csv` | `json` | `parquet`, and the
//!   format's options with Flink's names (`csv.field-delimiter`, `json.ignore-parse-errors`, …).
//! - `nexmark` (source): one table per connector: `table` = `person` | `auction` | `bid`
//!   (default `bid`), `events` (also `nexmark.events.num`; number of generated events, all
//!   tables together), `rate` (also `nexmark.rate`; events per second of event time, which sets
//!   the spacing of event timestamps), `rate.limited` (also `nexmark.rate.limited`; `true`
//!   produces the events in wall time at that rate) and `seed`.
//! - `print` (sink): `print-identifier`, `standard-error`.
//! - `blackhole` (sink).

use std::collections::BTreeMap;

use sluice_datasets::nexmark::{NexmarkConfig, NexmarkTable};

use super::catalog::Table;
use crate::connector::{
    DatagenSource, FileFormat, FileSinkSpec, FileSourceSpec, NexmarkSource, SinkSpec, SourceSpec,
};
use crate::{Error, Result};

fn options_without_connector(table: &Table) -> BTreeMap<String, String> {
    table
        .options
        .iter()
        .filter(|(k, _)| k.as_str() != "connector")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn config_error(table: &Table, key: &str, value: &str, message: &str) -> Error {
    Error::Config {
        key: format!("{key}' of table '{}", table.name),
        value: value.to_string(),
        message: message.to_string(),
    }
}

fn file_format(table: &Table) -> Result<FileFormat> {
    match table.options.get("format").map(String::as_str) {
        Some("csv") => Ok(FileFormat::Csv),
        Some("parquet") => Ok(FileFormat::Parquet),
        Some("json") => Ok(FileFormat::Json),
        Some(other) => Err(config_error(
            table,
            "format",
            other,
            "supported formats: csv, json, parquet",
        )),
        None => Err(config_error(
            table,
            "format",
            "",
            "the filesystem connector needs 'format' (csv, json or parquet)",
        )),
    }
}

fn path(table: &Table) -> Result<String> {
    table
        .options
        .get("path")
        .cloned()
        .ok_or_else(|| config_error(table, "path", "", "the filesystem connector needs 'path'"))
}

/// The source of `table` (physical columns only).
pub fn source_spec(table: &Table) -> Result<SourceSpec> {
    let schema = table.physical_schema();
    match table.connector()? {
        "datagen" => Ok(SourceSpec::Datagen(DatagenSource::new(
            schema,
            options_without_connector(table),
        ))),
        "filesystem" => Ok(SourceSpec::Filesystem(FileSourceSpec {
            path: path(table)?,
            format: file_format(table)?,
            schema,
            options: options_without_connector(table)
                .into_iter()
                .filter(|(k, _)| k != "path" && k != "format")
                .collect(),
            partition_keys: table.partition_keys.clone(),
            predicate: None,
            dictionaries: false,
        })),
        "nexmark" => {
            let mut config = NexmarkConfig::default();
            let mut nexmark_table = NexmarkTable::Bid;
            let mut rate_limited = false;
            for (key, value) in options_without_connector(table) {
                let number = || {
                    value.parse::<u64>().map_err(|_| {
                        config_error(table, &key, &value, "expected a non-negative integer")
                    })
                };
                match key.as_str() {
                    "table" => {
                        nexmark_table = NexmarkTable::ALL
                            .into_iter()
                            .find(|t| t.name() == value)
                            .ok_or_else(|| {
                            config_error(table, &key, &value, "expected person, auction or bid")
                        })?;
                    }
                    "events" | "nexmark.events.num" => config = config.with_events(Some(number()?)),
                    "rate" | "nexmark.rate" => config = config.with_first_event_rate(number()?),
                    "seed" | "nexmark.seed" => config = config.with_seed(number()?),
                    "rate.limited" | "nexmark.rate.limited" => {
                        rate_limited = value.parse::<bool>().map_err(|_| {
                            config_error(table, &key, &value, "expected true or false")
                        })?;
                    }
                    _ => {
                        return Err(config_error(
                            table,
                            &key,
                            &value,
                            "unknown nexmark option (known: table, events, rate, rate.limited, seed)",
                        ));
                    }
                }
            }
            Ok(SourceSpec::Nexmark(
                NexmarkSource::new(nexmark_table, config).with_rate_limit(rate_limited),
            ))
        }
        "print" | "blackhole" | "flight" => Err(Error::sql(
            format!("table '{}'", table.name),
            format!(
                "the {} connector is a sink and cannot be read",
                table.connector()?
            ),
        )),
        other => Err(unknown_connector(table, other)),
    }
}

/// The sink of `table`.
pub fn sink_spec(table: &Table) -> Result<SinkSpec> {
    match table.connector()? {
        "blackhole" => Ok(SinkSpec::Blackhole),
        "print" => Ok(SinkSpec::Print {
            identifier: table.options.get("print-identifier").cloned(),
            standard_error: table
                .options
                .get("standard-error")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        }),
        "filesystem" => Ok(SinkSpec::Filesystem(FileSinkSpec {
            path: path(table)?,
            format: file_format(table)?,
            options: options_without_connector(table)
                .into_iter()
                .filter(|(k, _)| k != "path" && k != "format")
                .collect(),
            partition_keys: table.partition_keys.clone(),
            overwrite: None,
        })),
        "flight" => {
            let mut max_bytes = None;
            for (key, value) in options_without_connector(table) {
                match key.as_str() {
                    "sink.max-bytes" => {
                        max_bytes = Some(
                            crate::connector::sink_table::parse_memory_size(&key, &value)
                                .map_err(|e| config_error(table, &key, &value, &e.to_string()))?,
                        )
                    }
                    _ => {
                        return Err(config_error(
                            table,
                            &key,
                            &value,
                            "unknown flight option (known: sink.max-bytes)",
                        ));
                    }
                }
            }
            Ok(SinkSpec::Flight {
                name: table.name.clone(),
                primary_key: table.primary_key.clone(),
                max_bytes,
            })
        }
        "datagen" | "nexmark" => Err(Error::sql(
            format!("table '{}'", table.name),
            format!(
                "the {} connector is a source and cannot be written",
                table.connector()?
            ),
        )),
        other => Err(unknown_connector(table, other)),
    }
}

fn unknown_connector(table: &Table, name: &str) -> Error {
    config_error(
        table,
        "connector",
        name,
        "unknown connector (known: datagen, filesystem, nexmark, print, blackhole, flight)",
    )
}
