//! [`SinkTableService`]: the Flight service over a [`SinkTableCatalog`], speaking plain Arrow
//! Flight and a subset of Flight SQL on one port.
//!
//! The service is two layers. The outer one, [`SinkTableService`], implements `FlightService`:
//! it checks the bearer token of every call (see [`super::auth`]), answers `Handshake`,
//! `ListFlights`, `GetSchema` and everything addressed by a PATH descriptor or a table ticket,
//! and hands Flight SQL commands and tickets to the inner layer, `FlightSql`, an
//! `arrow_flight::sql::server::FlightSqlService` (whose blanket `FlightService` does the
//! command dispatch). The outer layer exists because that blanket implementation serves
//! neither `ListFlights` nor `GetSchema`.
//!
//! Nothing is kept between calls: a FlightInfo's tickets carry everything `DoGet` needs (the
//! table, the partition, and for a statement the projection, predicate and limit), so any
//! server holding a partition can serve its ticket. A table's FlightInfo has one endpoint per
//! [`PartitionLocation`](super::PartitionLocation); an endpoint without a location is read from
//! the server that answered.
//!
//! `DoGet` streams the batches [`SinkTableCatalog::scan`] returns, which share their buffers
//! with the table: the only copy is the IPC encoding into gRPC messages, each at most about
//! [`SinkTableService::with_max_message_bytes`] (a larger batch is sent as slices).

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::{FlightDataEncoderBuilder, GRPC_TARGET_MAX_FLIGHT_SIZE_BYTES};
use arrow_flight::error::FlightError;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{
    GetCatalogsBuilder, GetTablesBuilder, SqlInfoData, SqlInfoDataBuilder,
};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, Command, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandPreparedStatementQuery, CommandStatementQuery, ProstMessageExt, SqlInfo,
    SqlSupportedTransaction, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, IpcMessage, PollInfo, PutResult, SchemaAsIpc,
    SchemaResult, Ticket,
};
use bytes::Bytes;
use futures::{Stream, TryStreamExt, stream};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use super::auth::BearerAuth;
use super::sql::{ScanPlan, find_name, like_matches, parse_select};
use super::ticket::{StatementHandle, TableTicket};
use super::{CATALOG_NAME, SCHEMA_NAME, ScanError, SinkTableCatalog, SinkTableInfo, TABLE_TYPE};
use crate::{Error, Result};

type BoxedStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The Flight (and Flight SQL) service over a catalog of sink tables. Cheap to clone.
///
/// ```
/// # use std::sync::Arc;
/// # use sluice_flight::sink_table::{SinkTableCatalog, SinkTableService};
/// fn router(catalog: Arc<dyn SinkTableCatalog>) -> tonic::transport::server::Router {
///     let service = SinkTableService::new(catalog).with_token(Some("s3cret".into()));
///     tonic::transport::Server::builder().add_service(service.into_server())
/// }
/// ```
#[derive(Clone)]
pub struct SinkTableService {
    shared: Arc<Shared>,
    sql: FlightSql,
}

/// What both layers read.
struct Shared {
    catalog: Arc<dyn SinkTableCatalog>,
    auth: BearerAuth,
    max_message_bytes: usize,
    sql_info: SqlInfoData,
}

/// The Flight SQL layer: commands and statement tickets.
#[derive(Clone)]
struct FlightSql {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SinkTableService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkTableService")
            .field("auth", &self.shared.auth)
            .field("max_message_bytes", &self.shared.max_message_bytes)
            .finish_non_exhaustive()
    }
}

impl SinkTableService {
    /// Serves `catalog`, open to every client, with messages of at most about 2 MiB.
    pub fn new(catalog: Arc<dyn SinkTableCatalog>) -> Self {
        Self::build(
            catalog,
            BearerAuth::default(),
            GRPC_TARGET_MAX_FLIGHT_SIZE_BYTES,
        )
    }

    fn build(
        catalog: Arc<dyn SinkTableCatalog>,
        auth: BearerAuth,
        max_message_bytes: usize,
    ) -> Self {
        let shared = Arc::new(Shared {
            catalog,
            auth,
            max_message_bytes,
            sql_info: sql_info(),
        });
        SinkTableService {
            sql: FlightSql {
                shared: shared.clone(),
            },
            shared,
        }
    }

    /// Requires `authorization: Bearer <token>` on every call but `Handshake`; `None` (or an
    /// empty token) leaves the service open.
    pub fn with_token(self, token: Option<String>) -> Self {
        let max = self.shared.max_message_bytes;
        Self::build(self.shared.catalog.clone(), BearerAuth::new(token), max)
    }

    /// The approximate largest `DoGet` message in bytes (default 2 MiB, under gRPC's usual
    /// 4 MiB receive limit): larger batches are sent as several slices.
    pub fn with_max_message_bytes(self, bytes: usize) -> Self {
        let auth = self.shared.auth.clone();
        Self::build(self.shared.catalog.clone(), auth, bytes.max(1))
    }

    /// `true` when calls need a bearer token.
    pub fn requires_token(&self) -> bool {
        self.shared.auth.is_required()
    }

    /// The tonic service, to add to a server (see [`super::SinkTableServer`] for one of its
    /// own).
    pub fn into_server(self) -> FlightServiceServer<Self> {
        FlightServiceServer::new(self)
    }

    fn check(&self, metadata: &tonic::metadata::MetadataMap) -> Result<(), Status> {
        self.shared.auth.check(metadata).map_err(|e| e.to_status())
    }
}

/// What `CommandGetSqlInfo` answers.
fn sql_info() -> SqlInfoData {
    let mut info = SqlInfoDataBuilder::new();
    info.append(SqlInfo::FlightSqlServerName, "Sluice");
    info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    info.append(SqlInfo::FlightSqlServerArrowVersion, arrow::ARROW_VERSION);
    info.append(SqlInfo::FlightSqlServerReadOnly, true);
    info.append(SqlInfo::FlightSqlServerSql, true);
    info.append(SqlInfo::FlightSqlServerSubstrait, false);
    info.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    info.append(SqlInfo::FlightSqlServerCancel, false);
    info.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    info.append(SqlInfo::SqlDdlCatalog, false);
    info.append(SqlInfo::SqlDdlSchema, false);
    info.append(SqlInfo::SqlDdlTable, false);
    info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    info.append(SqlInfo::SqlAllTablesAreSelectable, true);
    info.append(SqlInfo::SqlSearchStringEscape, "\\");
    info.append(SqlInfo::SqlSupportsColumnAliasing, true);
    info.build()
        .expect("a fixed list of SqlInfo values of the types the builder takes")
}

impl Shared {
    /// The catalog's entry for `name`: the exact name, else the only case-insensitive match.
    fn table(&self, name: &str) -> Result<SinkTableInfo> {
        let mut tables = self.catalog.tables();
        match find_name(tables.iter().map(|t| t.name.as_str()), name) {
            Some(index) => Ok(tables.swap_remove(index)),
            None => Err(Error::TableNotFound {
                table: name.to_string(),
                available: tables.into_iter().map(|t| t.name).collect(),
            }),
        }
    }

    fn scan(&self, table: &str, partition: Option<u32>) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        self.catalog.scan(table, partition).map_err(|e| match e {
            ScanError::NotFound(_) => Error::TableNotFound {
                table: table.to_string(),
                available: self.catalog.tables().into_iter().map(|t| t.name).collect(),
            },
            ScanError::Failed(message) => Error::ScanFailed {
                table: table.to_string(),
                message,
            },
        })
    }

    /// The FlightInfo of a whole table (a PATH descriptor).
    fn table_info(&self, table: &SinkTableInfo) -> Result<FlightInfo> {
        let endpoints = table
            .partitions
            .iter()
            .map(|p| {
                let ticket = TableTicket {
                    table: table.name.clone(),
                    partition: p.partition,
                };
                endpoint(ticket.encode(), p.location.as_deref())
            })
            .collect();
        let metadata = serde_json::json!({
            "job_id": table.job_id,
            "job_state": table.job_state,
            "primary_key": table.primary_key,
        });
        Ok(FlightInfo::new()
            .try_with_schema(&table.schema)
            .map_err(|e| schema_error(&table.name, e))?
            .with_descriptor(FlightDescriptor::new_path(vec![table.name.clone()]))
            .with_endpoints(endpoints)
            .with_total_records(table.rows.map_or(-1, saturating_i64))
            .with_app_metadata(Bytes::from(metadata.to_string())))
    }

    /// The FlightInfo of a statement: one endpoint per partition of its table.
    fn statement_info(&self, sql: &str, descriptor: FlightDescriptor) -> Result<FlightInfo> {
        let query = parse_select(sql)?;
        let table = self.table(&query.table)?;
        let plan = query.plan(&table.schema)?;
        let endpoints = table
            .partitions
            .iter()
            .map(|p| {
                let handle = StatementHandle::new(&query, &table.name, p.partition);
                let ticket = TicketStatementQuery {
                    statement_handle: handle.to_bytes(),
                };
                endpoint(
                    ticket.as_any().encode_to_vec().into(),
                    p.location.as_deref(),
                )
            })
            .collect();
        let total_records = match table.rows {
            Some(rows) if plan.keeps_every_row() => saturating_i64(rows),
            _ => -1,
        };
        Ok(FlightInfo::new()
            .try_with_schema(plan.schema())
            .map_err(|e| schema_error(&table.name, e))?
            .with_descriptor(descriptor)
            .with_endpoints(endpoints)
            .with_total_records(total_records))
    }

    /// Streams `plan` over the rows of `table` (one partition or all held here).
    fn do_get(
        &self,
        table: &str,
        partition: Option<u32>,
        plan: impl FnOnce(&SchemaRef) -> Result<ScanPlan>,
    ) -> Result<BoxedStream<FlightData>> {
        let (schema, batches) = self.scan(table, partition)?;
        let plan = plan(&schema)?;
        debug!(
            table,
            partition,
            batches = batches.len(),
            "sink-table DoGet"
        );
        let schema = plan.schema().clone();
        Ok(self.encode(schema, stream::iter(plan.scan(batches))))
    }

    /// Encodes `batches` as a `DoGet` response.
    fn encode(
        &self,
        schema: SchemaRef,
        batches: impl Stream<Item = Result<RecordBatch>> + Send + 'static,
    ) -> BoxedStream<FlightData> {
        let batches = batches.map_err(|e| FlightError::Tonic(Box::new(e.to_status())));
        Box::pin(
            FlightDataEncoderBuilder::new()
                .with_schema(schema)
                .with_max_flight_data_size(self.max_message_bytes)
                .build(batches)
                .map_err(Status::from),
        )
    }

    /// Encodes one metadata batch (catalogs, tables, SQL info) as a `DoGet` response.
    fn encode_batch(&self, batch: RecordBatch) -> BoxedStream<FlightData> {
        self.encode(batch.schema(), stream::iter([Ok(batch)]))
    }

    /// The schema of the result of a Flight SQL command (for `GetSchema`).
    fn command_schema(&self, command: Command) -> Result<SchemaRef> {
        match command {
            Command::CommandStatementQuery(CommandStatementQuery { query, .. }) => {
                self.statement_schema(&query)
            }
            Command::CommandPreparedStatementQuery(prepared) => {
                self.statement_schema(&prepared_sql(&prepared.prepared_statement_handle)?)
            }
            Command::CommandGetCatalogs(_) => Ok(GetCatalogsBuilder::new().schema()),
            Command::CommandGetDbSchemas(command) => Ok(command.into_builder().schema()),
            Command::CommandGetTables(command) => Ok(command.into_builder().schema()),
            Command::CommandGetTableTypes(command) => Ok(command.into_builder().schema()),
            Command::CommandGetSqlInfo(_) => Ok(self.sql_info.schema()),
            Command::CommandGetPrimaryKeys(_) => Ok(primary_keys_schema()),
            other => Err(unsupported_command(other.type_url())),
        }
    }

    fn statement_schema(&self, sql: &str) -> Result<SchemaRef> {
        let query = parse_select(sql)?;
        let table = self.table(&query.table)?;
        Ok(query.plan(&table.schema)?.schema().clone())
    }

    fn tables_batch(&self, command: CommandGetTables) -> Result<RecordBatch> {
        let name_pattern = command.table_name_filter_pattern.clone();
        let mut builder = GetTablesBuilder::new(
            command.catalog,
            command.db_schema_filter_pattern,
            // Names are matched here, with `like_matches`.
            None::<String>,
            command.table_types,
            command.include_schema,
        );
        for table in self.catalog.tables() {
            if name_pattern
                .as_deref()
                .is_none_or(|pattern| like_matches(pattern, &table.name))
            {
                builder
                    .append(
                        CATALOG_NAME,
                        SCHEMA_NAME,
                        &table.name,
                        TABLE_TYPE,
                        &table.schema,
                    )
                    .map_err(|e| schema_error(&table.name, e))?;
            }
        }
        builder
            .build()
            .map_err(|e| Error::Internal(format!("building GetTables: {e}")))
    }

    /// The primary key columns of an upsert table, in key order; none for an append-only
    /// table, an unknown one, or another catalog or schema.
    fn primary_keys_batch(&self, command: &CommandGetPrimaryKeys) -> Result<RecordBatch> {
        let ours = command.catalog.as_deref().is_none_or(|c| c == CATALOG_NAME)
            && command
                .db_schema
                .as_deref()
                .is_none_or(|s| s == SCHEMA_NAME);
        let (name, key) = match self.table(&command.table) {
            Ok(table) if ours => (table.name, table.primary_key),
            Ok(_) | Err(Error::TableNotFound { .. }) => (command.table.clone(), Vec::new()),
            Err(e) => return Err(e),
        };
        let rows = key.len();
        let sequence = (1..=rows).map(|i| i32::try_from(i).unwrap_or(i32::MAX));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![CATALOG_NAME; rows])),
            Arc::new(StringArray::from(vec![SCHEMA_NAME; rows])),
            Arc::new(StringArray::from(vec![name.as_str(); rows])),
            Arc::new(StringArray::from(key)),
            Arc::new(StringArray::new_null(rows)),
            Arc::new(Int32Array::from_iter_values(sequence)),
        ];
        RecordBatch::try_new(primary_keys_schema(), columns)
            .map_err(|e| Error::Internal(format!("building GetPrimaryKeys: {e}")))
    }
}

/// The result schema of `CommandGetPrimaryKeys`, as the Flight SQL spec gives it.
fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

fn saturating_i64(rows: u64) -> i64 {
    i64::try_from(rows).unwrap_or(i64::MAX)
}

/// Every Arrow schema has an IPC form: failing to encode one is a bug.
fn schema_error(table: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("encoding the schema of sink table '{table}': {e}"))
}

fn endpoint(ticket: Bytes, location: Option<&str>) -> FlightEndpoint {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
    match location {
        Some(uri) => endpoint.with_location(uri),
        None => endpoint,
    }
}

fn unsupported_command(type_url: &str) -> Error {
    Error::Request {
        what: "Flight SQL request".into(),
        message: format!(
            "'{type_url}' is not served; the sink-table service serves CommandStatementQuery \
             (and prepared statements without parameters), CommandGetCatalogs, \
             CommandGetDbSchemas, CommandGetTables, CommandGetTableTypes, CommandGetPrimaryKeys \
             and CommandGetSqlInfo"
        ),
    }
}

/// The SQL text of a prepared statement: its handle is the statement itself (prepared
/// statements hold no server state here).
fn prepared_sql(handle: &[u8]) -> Result<String> {
    String::from_utf8(handle.to_vec()).map_err(|_| Error::Request {
        what: "prepared statement handle".into(),
        message: "not a statement prepared by this service".into(),
    })
}

fn schema_bytes(schema: &SchemaRef) -> Result<Bytes> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e| Error::Internal(format!("encoding a statement's schema: {e}")))?;
    Ok(message.0)
}

fn not_served(method: &str) -> Status {
    Status::unimplemented(format!(
        "{method} is not served: sink tables are read-only (ListFlights, GetFlightInfo, \
         GetSchema, DoGet and Flight SQL queries are)"
    ))
}

fn to_status<T>(result: Result<T>) -> Result<T, Status> {
    result.map_err(|e| e.to_status())
}

#[tonic::async_trait]
impl FlightService for SinkTableService {
    type HandshakeStream = BoxedStream<HandshakeResponse>;
    type ListFlightsStream = BoxedStream<FlightInfo>;
    type DoGetStream = BoxedStream<FlightData>;
    type DoPutStream = BoxedStream<PutResult>;
    type DoExchangeStream = BoxedStream<FlightData>;
    type DoActionStream = BoxedStream<arrow_flight::Result>;
    type ListActionsStream = BoxedStream<ActionType>;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let bearer = to_status(self.shared.auth.handshake(request.metadata()))?;
        let header = MetadataValue::try_from(format!("Bearer {bearer}"))
            .map_err(|_| Status::internal("the bearer token is not a valid header value"))?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: Bytes::from(bearer),
        };
        let mut response: Response<Self::HandshakeStream> =
            Response::new(Box::pin(stream::iter([Ok(reply)])));
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    /// Every table of the catalog; the criteria are ignored.
    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        self.check(request.metadata())?;
        let infos: Vec<Result<FlightInfo, Status>> = self
            .shared
            .catalog
            .tables()
            .iter()
            .map(|table| to_status(self.shared.table_info(table)))
            .collect();
        Ok(Response::new(Box::pin(stream::iter(infos))))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(request.metadata())?;
        match request.get_ref().r#type() {
            DescriptorType::Path => {
                let name = to_status(path_table(request.get_ref()))?;
                let table = to_status(self.shared.table(&name))?;
                Ok(Response::new(to_status(self.shared.table_info(&table))?))
            }
            DescriptorType::Cmd => self.sql.get_flight_info(request).await,
            DescriptorType::Unknown => Err(Status::invalid_argument(
                "a FlightDescriptor of unknown type: send PATH [table] or a Flight SQL command",
            )),
        }
    }

    /// Answers at once: every query here is complete when its FlightInfo is.
    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        let info = self.get_flight_info(request).await?.into_inner();
        Ok(Response::new(PollInfo {
            info: Some(info),
            flight_descriptor: None,
            progress: Some(1.0),
            expiration_time: None,
        }))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        self.check(request.metadata())?;
        let descriptor = request.get_ref();
        let schema = match descriptor.r#type() {
            DescriptorType::Path => {
                let name = to_status(path_table(descriptor))?;
                to_status(self.shared.table(&name))?.schema
            }
            DescriptorType::Cmd => {
                let command = Any::decode(descriptor.cmd.as_ref())
                    .map_err(|e| e.to_string())
                    .and_then(|any| Command::try_from(any).map_err(|e| e.to_string()))
                    .map_err(|message| {
                        Error::Request {
                            what: "Flight SQL command".into(),
                            message,
                        }
                        .to_status()
                    })?;
                to_status(self.shared.command_schema(command))?
            }
            DescriptorType::Unknown => {
                return Err(Status::invalid_argument(
                    "a FlightDescriptor of unknown type: send PATH [table] or a Flight SQL command",
                ));
            }
        };
        let result: SchemaResult = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
        Ok(Response::new(result))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        self.check(request.metadata())?;
        match TableTicket::from_ticket(&request.get_ref().ticket) {
            Some(ticket) => {
                let ticket = to_status(ticket)?;
                let stream = to_status(self.shared.do_get(
                    &ticket.table,
                    ticket.partition,
                    |schema| Ok(ScanPlan::all(schema.clone())),
                ))?;
                Ok(Response::new(stream))
            }
            None => self.sql.do_get(request).await,
        }
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        self.check(request.metadata())?;
        Err(not_served("DoPut"))
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        self.check(request.metadata())?;
        Err(not_served("DoExchange"))
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        self.check(request.metadata())?;
        self.sql.do_action(request).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        self.check(request.metadata())?;
        let actions = [
            ActionType {
                r#type: "CreatePreparedStatement".into(),
                description: "Prepares a SELECT (no parameters). Request: \
                              ActionCreatePreparedStatementRequest; response: \
                              ActionCreatePreparedStatementResult"
                    .into(),
            },
            ActionType {
                r#type: "ClosePreparedStatement".into(),
                description: "Closes a prepared statement. Request: \
                              ActionClosePreparedStatementRequest"
                    .into(),
            },
        ];
        Ok(Response::new(Box::pin(stream::iter(actions.map(Ok)))))
    }
}

/// The table a PATH descriptor names.
fn path_table(descriptor: &FlightDescriptor) -> Result<String> {
    match descriptor.path.as_slice() {
        [name] => Ok(name.clone()),
        path => Err(Error::Request {
            what: "FlightDescriptor".into(),
            message: format!(
                "a sink table's descriptor is PATH [table], not a path of {} parts ({path:?})",
                path.len()
            ),
        }),
    }
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let info = self
            .shared
            .statement_info(&query.query, request.into_inner());
        Ok(Response::new(to_status(info)?))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let sql = to_status(prepared_sql(&query.prepared_statement_handle))?;
        let info = self.shared.statement_info(&sql, request.into_inner());
        Ok(Response::new(to_status(info)?))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = GetCatalogsBuilder::new().schema();
        command_info(query.as_any(), &schema, request.into_inner())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        command_info(query.as_any(), &schema, request.into_inner())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        command_info(query.as_any(), &schema, request.into_inner())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        command_info(query.as_any(), &schema, request.into_inner())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.shared.sql_info.schema();
        command_info(query.as_any(), &schema, request.into_inner())
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(query.as_any(), &primary_keys_schema(), request.into_inner())
    }

    async fn get_flight_info_fallback(
        &self,
        command: Command,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(unsupported_command(command.type_url()).to_status())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let handle = to_status(StatementHandle::from_bytes(&ticket.statement_handle))?;
        let query = to_status(handle.to_query())?;
        let stream = self
            .shared
            .do_get(&handle.table, handle.partition, |schema| query.plan(schema));
        Ok(Response::new(to_status(stream)?))
    }

    /// A prepared statement read directly (its FlightInfo hands out statement tickets): every
    /// partition held here.
    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let sql = to_status(prepared_sql(&query.prepared_statement_handle))?;
        let query = to_status(parse_select(&sql))?;
        let table = to_status(self.shared.table(&query.table))?;
        let stream = self
            .shared
            .do_get(&table.name, None, |schema| query.plan(schema));
        Ok(Response::new(to_status(stream)?))
    }

    async fn do_get_catalogs(
        &self,
        _query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = GetCatalogsBuilder::new();
        builder.append(CATALOG_NAME);
        let batch = builder
            .build()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(self.shared.encode_batch(batch)))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG_NAME, SCHEMA_NAME);
        let batch = builder
            .build()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(self.shared.encode_batch(batch)))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = to_status(self.shared.tables_batch(query))?;
        Ok(Response::new(self.shared.encode_batch(batch)))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(TABLE_TYPE);
        let batch = builder
            .build()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(self.shared.encode_batch(batch)))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = query
            .into_builder(&self.shared.sql_info)
            .build()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(self.shared.encode_batch(batch)))
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = to_status(self.shared.primary_keys_batch(&query))?;
        Ok(Response::new(self.shared.encode_batch(batch)))
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Err(Error::Request {
            what: "ticket".into(),
            message: format!(
                "'{}' is not a ticket of the sink-table service (use the tickets its \
                 FlightInfos hand out)",
                message.type_url
            ),
        }
        .to_status())
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let schema = to_status(self.shared.statement_schema(&query.query))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: Bytes::from(query.query),
            dataset_schema: to_status(schema_bytes(&schema))?,
            parameter_schema: Bytes::new(),
        })
    }

    /// Prepared statements hold no state here: closing one has nothing to release.
    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Ok(())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// The FlightInfo of a metadata command: its schema and one endpoint on this server whose
/// ticket is the command itself.
fn command_info(
    command: Any,
    schema: &SchemaRef,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_descriptor(descriptor)
        .with_endpoint(endpoint(command.encode_to_vec().into(), None));
    Ok(Response::new(info))
}
