//! Sink tables over Arrow Flight: any Flight client (pyarrow, ADBC's Flight SQL driver, DuckDB
//! through ADBC, JDBC tools) reads the rows a job's `'connector' = 'flight'` sinks hold.
//!
//! - [`catalog`](SinkTableCatalog): what is served — the tables a process knows and where
//!   their partitions are read. The engine's sink-table registry implements it.
//! - [`SinkTableService`]: the tonic service. Plain Flight: `ListFlights` lists the tables,
//!   `GetFlightInfo`/`GetSchema` with a PATH descriptor `[table]` describe one (one endpoint
//!   per partition), `DoGet` streams a partition's rows. Flight SQL (a subset):
//!   `SELECT * | column [AS alias], … FROM table [WHERE predicate] [LIMIT n]` (the predicate
//!   runs on the engine's vectorized expressions; `LIMIT` applies per endpoint), prepared
//!   statements without parameters, and the catalog commands (`GetCatalogs` → `sluice`,
//!   `GetDbSchemas` → `default`, `GetTables`, `GetTableTypes` → `TABLE`, `GetPrimaryKeys`,
//!   `GetSqlInfo`).
//! - Authentication (optional): a bearer token on every call, obtained from `Handshake` with
//!   basic credentials whose password is the token.
//! - [`SinkTableServer`] / [`serve`]: a gRPC server of its own, until a shutdown future ends.
//!
//! Calls are stateless: tickets carry the table, the partition and the statement.

mod auth;
mod catalog;
mod server;
mod service;
mod sql;
mod ticket;

pub use catalog::{PartitionLocation, ScanError, SinkTableCatalog, SinkTableInfo};
pub use server::{SinkTableServer, serve};
pub use service::SinkTableService;

/// The one catalog the Flight SQL commands list.
pub const CATALOG_NAME: &str = "sluice";
/// The one schema (of [`CATALOG_NAME`]) the Flight SQL commands list; it holds every table.
pub const SCHEMA_NAME: &str = "default";
/// The table type of every sink table.
pub const TABLE_TYPE: &str = "TABLE";
