//! What the sink-table service's tickets carry.
//!
//! A plain Flight ticket ([`TableTicket`]) names a table and a partition; a Flight SQL
//! statement ticket carries a [`StatementHandle`] (inside `TicketStatementQuery`) with the
//! table, the partition, the projection, the predicate as SQL text and the limit, so any
//! server holding the partition can run the statement without state kept between calls.
//! Both are protobuf messages: a table ticket is wrapped in a protobuf `Any` with its own type
//! URL, like every Flight SQL ticket, so one service can tell the two protocols apart.

use bytes::Bytes;
use prost::Message;

use super::sql::{OutputColumn, SelectQuery, parse_predicate};
use crate::{Error, Result};

/// Type URL of a [`TableTicket`] inside its `Any`.
const TABLE_TICKET_TYPE: &str = "type.sluice/sluice.flight.SinkTableTicket";

/// The rows of one partition (or of the whole table) of a sink table.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct TableTicket {
    #[prost(string, tag = "1")]
    pub table: String,
    /// `None`: every partition the answering server holds.
    #[prost(uint32, optional, tag = "2")]
    pub partition: Option<u32>,
}

impl TableTicket {
    /// The ticket's bytes.
    pub(crate) fn encode(&self) -> Bytes {
        arrow_flight::sql::Any {
            type_url: TABLE_TICKET_TYPE.to_string(),
            value: self.encode_to_vec().into(),
        }
        .encode_to_vec()
        .into()
    }

    /// Reads a ticket: `None` when `ticket` is not a table ticket (a Flight SQL ticket, or
    /// garbage the Flight SQL dispatch will reject), an error when it is one but malformed.
    pub(crate) fn from_ticket(ticket: &[u8]) -> Option<Result<Self>> {
        let any = arrow_flight::sql::Any::decode(ticket).ok()?;
        if any.type_url != TABLE_TICKET_TYPE {
            return None;
        }
        Some(
            <TableTicket as Message>::decode(any.value).map_err(|e| Error::Request {
                what: "sink-table ticket".into(),
                message: e.to_string(),
            }),
        )
    }
}

/// A column of a statement's projection.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct HandleColumn {
    #[prost(string, tag = "1")]
    pub column: String,
    #[prost(string, optional, tag = "2")]
    pub alias: Option<String>,
}

/// A statement over one partition of a table: the handle of a `TicketStatementQuery`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct StatementHandle {
    /// The statement as the client sent it, for error messages.
    #[prost(string, tag = "1")]
    pub statement: String,
    /// The table's name as the catalog lists it.
    #[prost(string, tag = "2")]
    pub table: String,
    #[prost(uint32, optional, tag = "3")]
    pub partition: Option<u32>,
    /// The projection; empty for `*`.
    #[prost(message, repeated, tag = "4")]
    pub columns: Vec<HandleColumn>,
    /// `WHERE`, as SQL text.
    #[prost(string, optional, tag = "5")]
    pub predicate: Option<String>,
    /// `LIMIT`, per partition.
    #[prost(uint64, optional, tag = "6")]
    pub limit: Option<u64>,
}

impl StatementHandle {
    /// The handle of `query` over `partition` of `table` (the catalog's name for the table
    /// the query names).
    pub(crate) fn new(query: &SelectQuery, table: &str, partition: Option<u32>) -> Self {
        StatementHandle {
            statement: query.statement.clone(),
            table: table.to_string(),
            partition,
            columns: query
                .columns
                .iter()
                .flatten()
                .map(|c| HandleColumn {
                    column: c.column.clone(),
                    alias: c.alias.clone(),
                })
                .collect(),
            predicate: query.predicate_text(),
            limit: query.limit,
        }
    }

    pub(crate) fn to_bytes(&self) -> Bytes {
        self.encode_to_vec().into()
    }

    pub(crate) fn from_bytes(handle: &[u8]) -> Result<Self> {
        StatementHandle::decode(handle).map_err(|e| Error::Request {
            what: "statement handle".into(),
            message: e.to_string(),
        })
    }

    /// The query this handle runs, with the table's name as the catalog lists it.
    pub(crate) fn to_query(&self) -> Result<SelectQuery> {
        Ok(SelectQuery {
            statement: self.statement.clone(),
            table: self.table.clone(),
            columns: (!self.columns.is_empty()).then(|| {
                self.columns
                    .iter()
                    .map(|c| OutputColumn {
                        column: c.column.clone(),
                        alias: c.alias.clone(),
                    })
                    .collect()
            }),
            predicate: self
                .predicate
                .as_deref()
                .map(|text| parse_predicate(&self.statement, text))
                .transpose()?,
            limit: self.limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink_table::sql::parse_select;

    #[test]
    fn table_ticket_round_trips_and_other_tickets_are_not_taken() {
        let ticket = TableTicket {
            table: "bids".into(),
            partition: Some(3),
        };
        assert_eq!(
            TableTicket::from_ticket(&ticket.encode()).unwrap().unwrap(),
            ticket
        );
        let whole = TableTicket {
            table: "bids".into(),
            partition: None,
        };
        assert_eq!(
            TableTicket::from_ticket(&whole.encode()).unwrap().unwrap(),
            whole
        );
        assert!(TableTicket::from_ticket(b"\xff\xff garbage").is_none());
        let sql = arrow_flight::sql::Any {
            type_url: "type.googleapis.com/arrow.flight.protocol.sql.TicketStatementQuery".into(),
            value: Bytes::new(),
        };
        assert!(TableTicket::from_ticket(&sql.encode_to_vec()).is_none());
        let broken = arrow_flight::sql::Any {
            type_url: TABLE_TICKET_TYPE.into(),
            value: Bytes::from_static(b"\xff\xff\xff"),
        };
        assert!(
            TableTicket::from_ticket(&broken.encode_to_vec())
                .unwrap()
                .is_err()
        );
    }

    #[test]
    fn statement_handle_round_trips_the_query() {
        let query = parse_select(
            "SELECT a, b AS bee FROM t WHERE a > 5 AND b LIKE 'x%' OR c IS NULL LIMIT 3",
        )
        .unwrap();
        let handle = StatementHandle::new(&query, "T", Some(7));
        let back = StatementHandle::from_bytes(&handle.to_bytes()).unwrap();
        assert_eq!(back, handle);
        assert_eq!(back.partition, Some(7));
        let again = back.to_query().unwrap();
        assert_eq!(again.table, "T");
        assert_eq!(again.columns, query.columns);
        assert_eq!(again.predicate, query.predicate);
        assert_eq!(again.limit, Some(3));

        let star = parse_select("SELECT * FROM t").unwrap();
        let handle = StatementHandle::new(&star, "t", None);
        let again = StatementHandle::from_bytes(&handle.to_bytes())
            .unwrap()
            .to_query()
            .unwrap();
        assert_eq!(again.columns, None);
        assert_eq!(again.predicate, None);
        assert_eq!(again.limit, None);
        assert!(StatementHandle::from_bytes(b"\xff\xff\xff").is_err());
    }
}
