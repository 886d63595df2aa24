//! Errors of the Flight crate.
//!
//! Each variant says what a caller can do: a malformed message from a peer or a bad setting
//! (fix the peer or the config), a lost peer (retry: restart the job's tasks), a sink-table
//! client's bad request (unknown table, unsupported SQL, malformed ticket, missing token: fix
//! the request), or a bug.
//! [`Error::into_engine`] is the one mapping to the engine's error (which the runtime's restart
//! strategy reads) and [`Error::to_status`] the one mapping to a gRPC status.

/// The Flight crate's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Flight message could not be decoded: names the stream (channel or peer) and what is
    /// wrong with the message.
    #[error("malformed Flight message on {stream}: {message}")]
    Codec { stream: String, message: String },

    /// Arrow IPC encoding or decoding failed.
    #[error("{context}: {source}")]
    Arrow {
        context: String,
        #[source]
        source: arrow::error::ArrowError,
    },

    /// A setting has a value outside its allowed range.
    #[error("config '{key}' = '{value}': {message}")]
    Config {
        key: String,
        value: String,
        message: String,
    },

    /// A remote TaskManager cannot be reached, or its stream broke. Names the peer's address.
    #[error("TaskManager at {address} is unavailable: {message}")]
    PeerUnavailable { address: String, message: String },

    /// The Flight server could not be started (address in use, bad address).
    #[error("cannot serve Flight on {address}: {message}")]
    Serve { address: String, message: String },

    /// A channel of a job attempt whose tasks on this TaskManager have already ended (a late
    /// stream of a failed or cancelled attempt). A new attempt has channels of its own.
    #[error("{channel} belongs to a job attempt that already ended on this TaskManager")]
    AttemptEnded { channel: String },

    /// A client asked for a sink table that this process does not serve. Lists the tables it
    /// does serve.
    #[error("no sink table '{table}' (available: {})", list_or_none(available))]
    TableNotFound {
        table: String,
        available: Vec<String>,
    },

    /// A sink table exists but its rows cannot be read now (its job is restarting, its
    /// partition moved): reading again later may succeed.
    #[error("sink table '{table}' cannot be read: {message}")]
    ScanFailed { table: String, message: String },

    /// A SQL statement the sink-table service does not support, or that does not fit the
    /// table (unknown column, a predicate that is not Boolean). Names the statement.
    #[error("statement '{statement}': {message}")]
    Query { statement: String, message: String },

    /// A ticket, descriptor or command a client sent that the service cannot read.
    #[error("malformed {what}: {message}")]
    Request { what: String, message: String },

    /// A call without the bearer token the service requires, or with a wrong one.
    #[error("missing or wrong bearer token")]
    Unauthenticated,

    /// A broken invariant inside the crate.
    #[error("internal error in sluice-flight (this is a bug): {0}")]
    Internal(String),
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// The Flight crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// `true` when the same operation may succeed if tried again (a lost or restarting peer).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::PeerUnavailable { .. }
            | Error::AttemptEnded { .. }
            | Error::ScanFailed { .. } => true,
            Error::Codec { .. }
            | Error::Arrow { .. }
            | Error::Config { .. }
            | Error::Serve { .. }
            | Error::TableNotFound { .. }
            | Error::Query { .. }
            | Error::Request { .. }
            | Error::Unauthenticated
            | Error::Internal(_) => false,
        }
    }

    /// The engine's view of this error, for the channel traits of the exchange seam.
    pub fn into_engine(self) -> sluice_engine::Error {
        match self {
            Error::PeerUnavailable { address, message } => sluice_engine::Error::Unavailable {
                what: format!("TaskManager at {address}"),
                message,
            },
            Error::Config {
                key,
                value,
                message,
            } => sluice_engine::Error::Config {
                key,
                value,
                message,
            },
            Error::Arrow { context, source } => sluice_engine::Error::Arrow { context, source },
            Error::Codec { stream, message } => sluice_engine::Error::Data {
                location: format!("Flight stream {stream}"),
                message,
            },
            Error::Serve { .. } => sluice_engine::Error::Unavailable {
                what: "the Flight server".into(),
                message: self.to_string(),
            },
            Error::AttemptEnded { channel } => sluice_engine::Error::Unavailable {
                what: channel,
                message: "its job attempt already ended on this TaskManager".into(),
            },
            Error::ScanFailed { table, message } => sluice_engine::Error::Unavailable {
                what: format!("sink table '{table}'"),
                message,
            },
            Error::TableNotFound { .. } | Error::Query { .. } | Error::Request { .. } => {
                sluice_engine::Error::Data {
                    location: "a sink-table request".into(),
                    message: self.to_string(),
                }
            }
            Error::Unauthenticated => sluice_engine::Error::Config {
                key: "bearer token".into(),
                value: "(hidden)".into(),
                message: self.to_string(),
            },
            Error::Internal(message) => sluice_engine::Error::Internal(message),
        }
    }

    /// The gRPC status a Flight handler answers with.
    pub fn to_status(&self) -> tonic::Status {
        match self {
            Error::Codec { .. } | Error::Arrow { .. } | Error::Config { .. } => {
                tonic::Status::invalid_argument(self.to_string())
            }
            Error::PeerUnavailable { .. } | Error::Serve { .. } => {
                tonic::Status::unavailable(self.to_string())
            }
            Error::AttemptEnded { .. } => tonic::Status::failed_precondition(self.to_string()),
            Error::TableNotFound { .. } => tonic::Status::not_found(self.to_string()),
            Error::ScanFailed { .. } => tonic::Status::unavailable(self.to_string()),
            Error::Query { .. } | Error::Request { .. } => {
                tonic::Status::invalid_argument(self.to_string())
            }
            Error::Unauthenticated => tonic::Status::unauthenticated(self.to_string()),
            Error::Internal(_) => tonic::Status::internal(self.to_string()),
        }
    }
}

impl From<Error> for sluice_engine::Error {
    fn from(error: Error) -> Self {
        error.into_engine()
    }
}
