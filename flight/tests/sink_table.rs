//! The sink-table Flight service over loopback, read by arrow-flight's Flight and Flight SQL
//! clients: listing, describing and reading tables, SQL statements, the catalog commands and
//! bearer-token authentication. The catalog is an in-memory stand-in for the engine's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use arrow::array::{Array, AsArray, BinaryArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTables, SqlInfo};
use arrow_flight::{FlightClient, FlightDescriptor, FlightInfo, IpcMessage, Ticket};
use futures::TryStreamExt;
use sluice_flight::sink_table::{
    PartitionLocation, ScanError, SinkTableCatalog, SinkTableInfo, SinkTableServer,
    SinkTableService,
};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;

/// Two local partitions of `numbers` (x = 0..50 and 50..100, in batches of 10), an empty
/// table, and a table whose one partition lives on another server.
struct TestCatalog {
    numbers: [Vec<RecordBatch>; 2],
}

fn numbers_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("x", DataType::Int64, false),
        Field::new("label", DataType::Utf8, true),
    ]))
}

fn numbers(range: std::ops::Range<i64>) -> Vec<RecordBatch> {
    range
        .step_by(10)
        .map(|start| {
            let x: Vec<i64> = (start..start + 10).collect();
            let label: StringArray = x.iter().map(|x| Some(format!("n{x}"))).collect();
            RecordBatch::try_new(
                numbers_schema(),
                vec![Arc::new(Int64Array::from(x)), Arc::new(label)],
            )
            .unwrap()
        })
        .collect()
}

impl TestCatalog {
    fn new() -> Self {
        TestCatalog {
            numbers: [numbers(0..50), numbers(50..100)],
        }
    }
}

fn local(partition: u32) -> PartitionLocation {
    PartitionLocation {
        partition: Some(partition),
        location: None,
    }
}

impl SinkTableCatalog for TestCatalog {
    fn tables(&self) -> Vec<SinkTableInfo> {
        let table = |name: &str, schema: SchemaRef, rows, partitions| SinkTableInfo {
            name: name.into(),
            schema,
            job_id: "job-1".into(),
            job_state: "RUNNING".into(),
            primary_key: if name == "numbers" {
                vec!["x".into(), "label".into()]
            } else {
                Vec::new()
            },
            rows,
            partitions,
        };
        vec![
            table(
                "empty",
                numbers_schema(),
                Some(0),
                vec![PartitionLocation {
                    partition: None,
                    location: None,
                }],
            ),
            table(
                "numbers",
                numbers_schema(),
                Some(100),
                vec![local(0), local(1)],
            ),
            table(
                "remote_t",
                numbers_schema(),
                None,
                vec![PartitionLocation {
                    partition: Some(0),
                    location: Some("grpc://10.1.2.3:4567".into()),
                }],
            ),
        ]
    }

    fn scan(
        &self,
        table: &str,
        partition: Option<u32>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), ScanError> {
        match (table, partition) {
            ("numbers", Some(p @ (0 | 1))) => {
                Ok((numbers_schema(), self.numbers[p as usize].clone()))
            }
            ("numbers", None) => Ok((numbers_schema(), self.numbers.concat())),
            ("numbers", Some(p)) => Err(ScanError::Failed(format!("no partition {p} here"))),
            ("empty", _) => Ok((numbers_schema(), Vec::new())),
            ("remote_t", _) => Err(ScanError::Failed(
                "its partition is on another server".into(),
            )),
            (other, _) => Err(ScanError::NotFound(other.into())),
        }
    }
}

/// A server on a free loopback port; dropping it shuts the server down.
struct TestServer {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<sluice_flight::Result<()>>,
}

impl TestServer {
    async fn start(token: Option<&str>) -> Result<Self> {
        let service =
            SinkTableService::new(Arc::new(TestCatalog::new())).with_token(token.map(String::from));
        let server = SinkTableServer::bind("127.0.0.1:0".parse()?, service).await?;
        let address = server.address();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            stopped.await.ok();
        }));
        Ok(TestServer {
            address,
            stop: Some(stop),
            task,
        })
    }

    async fn channel(&self) -> Result<Channel> {
        Ok(Channel::from_shared(format!("http://{}", self.address))?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await?)
    }

    async fn client(&self) -> Result<FlightClient> {
        Ok(FlightClient::new(self.channel().await?))
    }

    async fn sql_client(&self) -> Result<FlightSqlServiceClient<Channel>> {
        Ok(FlightSqlServiceClient::new(self.channel().await?))
    }

    async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .context("the server did not stop")???;
        Ok(())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn code(error: &FlightError) -> Option<Code> {
    match error {
        FlightError::Tonic(status) => Some(status.code()),
        _ => None,
    }
}

fn xs(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

async fn read_all(client: &mut FlightClient, info: &FlightInfo) -> Result<Vec<Vec<RecordBatch>>> {
    let mut per_endpoint = Vec::new();
    for endpoint in &info.endpoint {
        let ticket = endpoint
            .ticket
            .clone()
            .context("an endpoint without a ticket")?;
        per_endpoint.push(client.do_get(ticket).await?.try_collect().await?);
    }
    Ok(per_endpoint)
}

async fn read_all_sql(
    client: &mut FlightSqlServiceClient<Channel>,
    info: &FlightInfo,
) -> Result<Vec<Vec<RecordBatch>>> {
    let mut per_endpoint = Vec::new();
    for endpoint in &info.endpoint {
        let ticket = endpoint
            .ticket
            .clone()
            .context("an endpoint without a ticket")?;
        per_endpoint.push(client.do_get(ticket).await?.try_collect().await?);
    }
    Ok(per_endpoint)
}

#[tokio::test]
async fn list_flights_lists_every_table() -> Result<()> {
    let server = TestServer::start(None).await?;
    let mut client = server.client().await?;
    let infos: Vec<FlightInfo> = client
        .list_flights(Vec::<u8>::new())
        .await?
        .try_collect()
        .await?;
    let names: Vec<Vec<String>> = infos
        .iter()
        .map(|i| i.flight_descriptor.as_ref().unwrap().path.clone())
        .collect();
    assert_eq!(names, [["empty"], ["numbers"], ["remote_t"]]);
    let numbers = &infos[1];
    assert_eq!(numbers.total_records, 100);
    assert_eq!(numbers.endpoint.len(), 2);
    assert_eq!(Schema::try_from(numbers.clone())?, *numbers_schema());
    let metadata: serde_json::Value = serde_json::from_slice(&numbers.app_metadata)?;
    assert_eq!(metadata["job_state"], "RUNNING");
    // Rows unknown: -1, as the Flight spec says.
    assert_eq!(infos[2].total_records, -1);
    server.stop().await
}

#[tokio::test]
async fn get_flight_info_and_do_get_every_endpoint() -> Result<()> {
    let server = TestServer::start(None).await?;
    let mut client = server.client().await?;
    let descriptor = FlightDescriptor::new_path(vec!["numbers".into()]);
    let info = client.get_flight_info(descriptor.clone()).await?;
    assert_eq!(info.endpoint.len(), 2);
    assert!(info.endpoint.iter().all(|e| e.location.is_empty()));
    assert_eq!(client.get_schema(descriptor).await?, *numbers_schema());

    let catalog = TestCatalog::new();
    let read = read_all(&mut client, &info).await?;
    for (partition, batches) in read.iter().enumerate() {
        assert_eq!(
            batches, &catalog.numbers[partition],
            "partition {partition}"
        );
    }
    assert_eq!(xs(&read.concat()), (0..100).collect::<Vec<_>>());

    // The table name matches case-insensitively when unique.
    let info = client
        .get_flight_info(FlightDescriptor::new_path(vec!["NUMBERS".into()]))
        .await?;
    assert_eq!(info.flight_descriptor.unwrap().path, ["numbers"]);

    // An empty table: its schema, no rows.
    let info = client
        .get_flight_info(FlightDescriptor::new_path(vec!["empty".into()]))
        .await?;
    let stream = client
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await?;
    let batches: Vec<RecordBatch> = stream.try_collect().await?;
    assert!(batches.is_empty());

    // A partition on another server: its location, as the catalog says.
    let info = client
        .get_flight_info(FlightDescriptor::new_path(vec!["remote_t".into()]))
        .await?;
    assert_eq!(info.endpoint[0].location[0].uri, "grpc://10.1.2.3:4567");
    server.stop().await
}

#[tokio::test]
async fn bad_requests_get_errors_naming_the_problem() -> Result<()> {
    let server = TestServer::start(None).await?;
    let mut client = server.client().await?;

    let error = client
        .get_flight_info(FlightDescriptor::new_path(vec!["nope".into()]))
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(Code::NotFound));
    let text = error.to_string();
    assert!(text.contains("no sink table 'nope'"), "{text}");
    assert!(
        text.contains("available: empty, numbers, remote_t"),
        "{text}"
    );
    let error = client
        .get_schema(FlightDescriptor::new_path(vec!["nope".into()]))
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(Code::NotFound));

    let error = client
        .get_flight_info(FlightDescriptor::new_path(vec!["a".into(), "b".into()]))
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(Code::InvalidArgument));

    for garbage in [&b"\xff\xff\xffnot a ticket"[..], b""] {
        let result = match client.do_get(Ticket::new(garbage.to_vec())).await {
            Ok(stream) => stream.try_collect::<Vec<_>>().await.map(|_| ()),
            Err(e) => Err(e),
        };
        let error = result.unwrap_err();
        assert_eq!(code(&error), Some(Code::InvalidArgument), "{error}");
    }

    // A scan that fails: unavailable, naming the table.
    let info = client
        .get_flight_info(FlightDescriptor::new_path(vec!["remote_t".into()]))
        .await?;
    let error = client
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(Code::Unavailable));
    assert!(
        error.to_string().contains("sink table 'remote_t'"),
        "{error}"
    );

    // Sink tables are read-only.
    let result = match client.do_put(futures::stream::empty()).await {
        Ok(stream) => stream.try_collect::<Vec<_>>().await.map(|_| ()),
        Err(e) => Err(e),
    };
    let error = result.unwrap_err();
    assert_eq!(code(&error), Some(Code::Unimplemented), "{error}");
    assert!(error.to_string().contains("read-only"), "{error}");
    server.stop().await
}

#[tokio::test]
async fn sql_select_where_limit_per_endpoint() -> Result<()> {
    let server = TestServer::start(None).await?;
    let mut sql = server.sql_client().await?;

    let info = sql
        .execute(
            "SELECT * FROM t WHERE x > 5 LIMIT 3".replace(" t ", " numbers "),
            None,
        )
        .await?;
    assert_eq!(info.endpoint.len(), 2, "one endpoint per partition");
    assert_eq!(info.total_records, -1);
    assert_eq!(Schema::try_from(info.clone())?, *numbers_schema());
    let read = read_all_sql(&mut sql, &info).await?;
    // LIMIT applies per endpoint.
    assert_eq!(xs(&read[0]), [6, 7, 8]);
    assert_eq!(xs(&read[1]), [50, 51, 52]);

    // Projection and aliases; the whole table without WHERE/LIMIT has a known row count.
    let info = sql
        .execute(
            "SELECT label AS name, x FROM sluice.default.numbers".into(),
            None,
        )
        .await?;
    assert_eq!(info.total_records, 100);
    let read = read_all_sql(&mut sql, &info).await?.concat();
    let schema = read[0].schema();
    assert_eq!(schema.field(0).name(), "name");
    assert_eq!(read.iter().map(RecordBatch::num_rows).sum::<usize>(), 100);
    assert_eq!(read[0].column(0).as_string::<i32>().value(3), "n3");

    let info = sql
        .execute(
            "SELECT x FROM numbers WHERE label LIKE 'n9_' OR x = 7".into(),
            None,
        )
        .await?;
    let mut found = xs(&read_all_sql(&mut sql, &info).await?.concat());
    found.sort_unstable();
    assert_eq!(found, [7, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99]);

    // A prepared statement (no parameters) runs the same way.
    let mut prepared = sql
        .prepare("SELECT x FROM numbers WHERE x >= 98".into(), None)
        .await?;
    assert_eq!(prepared.dataset_schema()?.field(0).name(), "x");
    let info = prepared.execute().await?;
    assert_eq!(xs(&read_all_sql(&mut sql, &info).await?.concat()), [98, 99]);
    prepared.close().await?;

    // Unsupported SQL and unknown names: InvalidArgument / NotFound, naming the statement.
    let error = sql
        .execute("SELECT x FROM numbers ORDER BY x".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(Code::InvalidArgument));
    let text = error.to_string();
    assert!(text.contains("ORDER BY is not supported"), "{text}");
    assert!(text.contains("SELECT * | column"), "{text}");
    let error = sql
        .execute("SELECT * FROM numbers WHERE nope = 1".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(Code::InvalidArgument));
    assert!(error.to_string().contains("nope"), "{error}");
    let error = sql
        .execute("SELECT * FROM missing".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(Code::NotFound));
    assert!(
        error.to_string().contains("no sink table 'missing'"),
        "{error}"
    );
    let error = sql
        .execute("DELETE FROM numbers".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(Code::InvalidArgument));
    server.stop().await
}

#[tokio::test]
async fn catalog_commands() -> Result<()> {
    let server = TestServer::start(None).await?;
    let mut sql = server.sql_client().await?;

    let info = sql.get_catalogs().await?;
    let batches = read_all_sql(&mut sql, &info).await?.concat();
    assert_eq!(batches[0].column(0).as_string::<i32>().value(0), "sluice");
    assert_eq!(batches[0].num_rows(), 1);

    let info = sql.get_db_schemas(CommandGetDbSchemas::default()).await?;
    let batches = read_all_sql(&mut sql, &info).await?.concat();
    assert_eq!(batches[0].num_rows(), 1);
    assert_eq!(batches[0].column(1).as_string::<i32>().value(0), "default");

    let tables = |pattern: Option<&str>, include_schema| CommandGetTables {
        catalog: None,
        db_schema_filter_pattern: None,
        table_name_filter_pattern: pattern.map(String::from),
        table_types: Vec::new(),
        include_schema,
    };
    let names = |batches: &[RecordBatch]| -> Vec<String> {
        batches
            .iter()
            .flat_map(|b| {
                let names = b.column(2).as_string::<i32>();
                (0..names.len())
                    .map(|i| names.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let info = sql.get_tables(tables(None, false)).await?;
    let batches = read_all_sql(&mut sql, &info).await?.concat();
    assert_eq!(names(&batches), ["empty", "numbers", "remote_t"]);
    assert_eq!(batches[0].num_columns(), 4);

    let info = sql.get_tables(tables(Some("%um%"), true)).await?;
    let batches = read_all_sql(&mut sql, &info).await?.concat();
    assert_eq!(names(&batches), ["numbers"]);
    assert_eq!(batches[0].column(3).as_string::<i32>().value(0), "TABLE");
    let schema_bytes = batches[0]
        .column(4)
        .as_any()
        .downcast_ref::<BinaryArray>()
        .unwrap();
    let schema = Schema::try_from(IpcMessage(schema_bytes.value(0).to_vec().into()))?;
    assert_eq!(schema, *numbers_schema());

    let info = sql.get_tables(tables(Some("remote\\_%"), false)).await?;
    assert_eq!(
        names(&read_all_sql(&mut sql, &info).await?.concat()),
        ["remote_t"]
    );
    let info = sql.get_tables(tables(Some("e_pt_"), false)).await?;
    assert_eq!(
        names(&read_all_sql(&mut sql, &info).await?.concat()),
        ["empty"]
    );
    let info = sql.get_tables(tables(Some("nothing%"), false)).await?;
    assert!(names(&read_all_sql(&mut sql, &info).await?.concat()).is_empty());

    let info = sql.get_table_types().await?;
    let batches = read_all_sql(&mut sql, &info).await?.concat();
    assert_eq!(batches[0].column(0).as_string::<i32>().value(0), "TABLE");

    let keys = |table: &str, catalog: Option<&str>| CommandGetPrimaryKeys {
        catalog: catalog.map(String::from),
        db_schema: None,
        table: table.into(),
    };
    let info = sql.get_primary_keys(keys("numbers", None)).await?;
    let batches = read_all_sql(&mut sql, &info).await?.concat();
    let batch = &batches[0];
    let columns = batch.column(3).as_string::<i32>();
    assert_eq!((columns.value(0), columns.value(1)), ("x", "label"));
    assert_eq!(
        batch
            .column(5)
            .as_primitive::<arrow::datatypes::Int32Type>()
            .values(),
        &[1, 2]
    );
    for (table, catalog) in [
        ("empty", None),
        ("missing", None),
        ("numbers", Some("other")),
    ] {
        let info = sql.get_primary_keys(keys(table, catalog)).await?;
        let rows: usize = read_all_sql(&mut sql, &info)
            .await?
            .concat()
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        assert_eq!(rows, 0, "{table} {catalog:?}");
    }

    let info = sql
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
            SqlInfo::FlightSqlServerTransaction,
        ])
        .await?;
    let batches = read_all_sql(&mut sql, &info).await?.concat();
    let batch = &batches[0];
    assert_eq!(batch.num_rows(), 3);
    let values = arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
    assert!(values.contains("Sluice"), "{values}");
    assert!(values.contains("true"), "{values}");
    server.stop().await
}

#[tokio::test]
async fn bearer_token_is_required_when_configured() -> Result<()> {
    let server = TestServer::start(Some("s3cret")).await?;
    let path = FlightDescriptor::new_path(vec!["numbers".into()]);

    // No token, a wrong token: Unauthenticated, on every kind of call.
    let mut client = server.client().await?;
    let error = client.get_flight_info(path.clone()).await.unwrap_err();
    assert_eq!(code(&error), Some(Code::Unauthenticated));
    assert!(
        error.to_string().contains("missing or wrong bearer token"),
        "{error}"
    );
    let error = client
        .list_flights(Vec::<u8>::new())
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(code(&error), Some(Code::Unauthenticated));
    client.add_header("authorization", "Bearer wrong")?;
    let error = client.get_schema(path.clone()).await.unwrap_err();
    assert_eq!(code(&error), Some(Code::Unauthenticated));
    let mut sql = server.sql_client().await?;
    let error = sql.get_catalogs().await.unwrap_err();
    assert_eq!(code(&error), Some(Code::Unauthenticated));

    // The right bearer token.
    let mut client = server.client().await?;
    client.add_header("authorization", "Bearer s3cret")?;
    let info = client.get_flight_info(path.clone()).await?;
    assert_eq!(read_all(&mut client, &info).await?.concat().len(), 10);

    // A ticket does not bypass the check.
    let mut anonymous = server.client().await?;
    let error = anonymous
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(Code::Unauthenticated));

    // Handshake with basic credentials whose password is the token (any user name): the
    // client takes the bearer header from the response and uses it afterwards.
    let mut sql = server.sql_client().await?;
    sql.handshake("alice", "s3cret").await?;
    assert_eq!(sql.token().map(String::as_str), Some("s3cret"));
    let info = sql
        .execute("SELECT x FROM numbers LIMIT 1".into(), None)
        .await?;
    assert_eq!(xs(&read_all_sql(&mut sql, &info).await?.concat()), [0, 50]);

    let mut sql = server.sql_client().await?;
    let error = sql.handshake("alice", "wrong").await.unwrap_err();
    assert!(
        error.to_string().contains("Unauthenticated") || error.to_string().contains("bearer"),
        "{error}"
    );
    assert!(sql.token().is_none());

    // A handshake carrying the bearer header is accepted too.
    let mut client = server.client().await?;
    client.add_header("authorization", "Bearer s3cret")?;
    client.handshake(Vec::<u8>::new()).await?;
    server.stop().await
}

#[tokio::test]
async fn open_server_accepts_handshakes_and_calls_without_token() -> Result<()> {
    let server = TestServer::start(None).await?;
    let mut sql = server.sql_client().await?;
    sql.handshake("anyone", "anything").await?;
    let info = sql
        .execute("SELECT * FROM numbers LIMIT 2".into(), None)
        .await?;
    assert_eq!(
        xs(&read_all_sql(&mut sql, &info).await?.concat()),
        [0, 1, 50, 51]
    );
    let mut client = server.client().await?;
    client.handshake(Vec::<u8>::new()).await?;
    server.stop().await
}

#[tokio::test]
async fn get_schema_poll_and_list_actions_for_flight_sql_commands() -> Result<()> {
    use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
    use prost::Message;

    let server = TestServer::start(None).await?;
    let mut client = server.client().await?;
    let statement = |sql: &str| {
        FlightDescriptor::new_cmd(
            CommandStatementQuery {
                query: sql.into(),
                transaction_id: None,
            }
            .as_any()
            .encode_to_vec(),
        )
    };
    let schema = client
        .get_schema(statement("SELECT label AS l FROM numbers"))
        .await?;
    assert_eq!(schema.fields().len(), 1);
    assert_eq!(schema.field(0).name(), "l");
    let error = client
        .get_schema(statement("SELECT nope FROM numbers"))
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(Code::InvalidArgument));
    let tables = FlightDescriptor::new_cmd(CommandGetTables::default().as_any().encode_to_vec());
    assert_eq!(client.get_schema(tables).await?.fields().len(), 4);

    // PollFlightInfo: complete at once.
    let poll = client
        .poll_flight_info(statement("SELECT * FROM numbers"))
        .await?;
    assert!(poll.flight_descriptor.is_none());
    assert_eq!(poll.info.context("no FlightInfo")?.endpoint.len(), 2);

    let actions: Vec<String> = client
        .list_actions()
        .await?
        .map_ok(|a| a.r#type)
        .try_collect()
        .await?;
    assert_eq!(
        actions,
        ["CreatePreparedStatement", "ClosePreparedStatement"]
    );

    // A Flight SQL command the service does not serve.
    let error = client
        .get_flight_info(FlightDescriptor::new_cmd(
            arrow_flight::sql::CommandGetXdbcTypeInfo { data_type: None }
                .as_any()
                .encode_to_vec(),
        ))
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(Code::Unimplemented));
    server.stop().await
}
