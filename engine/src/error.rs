//! Errors of the engine.
//!
//! Every variant says what a caller can do about it: fix the user input (plan, config, data,
//! expression), retry, free resources, or report a bug. [`Error::is_retryable`] is the one
//! question restart strategies ask.

use std::path::PathBuf;

/// The engine's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job graph is invalid: a cycle, a schema mismatch, an unknown column, an impossible edge.
    #[error("invalid job graph at vertex '{vertex}': {message}")]
    Plan { vertex: String, message: String },

    /// An expression does not type-check or names an unknown column.
    #[error("expression error: {message}")]
    Expression { message: String },

    /// A SQL statement is invalid or unsupported. `location` names the statement and its
    /// line/column in the script (and the table or column where one is to blame).
    #[error("SQL error at {location}: {message}")]
    Sql { location: String, message: String },

    /// A configuration key has a value outside its allowed range.
    #[error("config '{key}' = '{value}': {message}")]
    Config {
        key: String,
        value: String,
        message: String,
    },

    /// A row of input data could not be read. Names the source, file, line and column.
    #[error("malformed data in {location}: {message}")]
    Data { location: String, message: String },

    /// A file or directory could not be read or written.
    #[error("{action} '{path}': {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Checkpoint storage on an object store failed an operation (`PUT`, `GET`, `LIST`, …) on
    /// `location` (a URL). `retryable`: the store may answer later (a lost connection, a
    /// server error), as opposed to a denied request or a missing bucket.
    #[error("checkpoint storage: {operation} {location}: {message}")]
    Storage {
        operation: &'static str,
        location: String,
        message: String,
        retryable: bool,
    },

    /// An Arrow kernel failed (usually an overflow or a cast of a bad value).
    #[error("{context}: {source}")]
    Arrow {
        context: String,
        #[source]
        source: arrow::error::ArrowError,
    },

    /// Parquet read/write failed.
    #[error("{context}: {source}")]
    Parquet {
        context: String,
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// A task of a running job failed. Wraps the cause with the operator and subtask.
    #[error("operator '{operator}' (subtask {subtask}) failed: {source}")]
    Task {
        operator: String,
        subtask: u32,
        #[source]
        source: Box<Error>,
    },

    /// A task panicked. The message is the panic payload.
    #[error("operator '{operator}' (subtask {subtask}) panicked: {message} (this is a bug)")]
    Panic {
        operator: String,
        subtask: u32,
        message: String,
    },

    /// A peer (another task, a remote TaskManager) went away; the operation may succeed later.
    #[error("{what} is unavailable: {message}")]
    Unavailable { what: String, message: String },

    /// A feature the user asked for that Sluice does not offer yet.
    #[error("{feature} is not supported yet")]
    Unsupported { feature: String },

    /// The job was cancelled.
    #[error("job cancelled")]
    Cancelled,

    /// A broken invariant inside the engine.
    #[error("internal error (this is a bug): {0}")]
    Internal(String),
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// `true` when the same operation may succeed if tried again (a lost peer, an I/O hiccup);
    /// `false` for bad user input and bugs, which fail the same way every time.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable { .. } => true,
            Error::Storage { retryable, .. } => *retryable,
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            Error::Task { source, .. } => source.is_retryable(),
            Error::Plan { .. }
            | Error::Sql { .. }
            | Error::Expression { .. }
            | Error::Config { .. }
            | Error::Data { .. }
            | Error::Arrow { .. }
            | Error::Parquet { .. }
            | Error::Panic { .. }
            | Error::Unsupported { .. }
            | Error::Cancelled
            | Error::Internal(_) => false,
        }
    }

    /// Shorthand for an [`Error::Plan`] at `vertex`.
    pub fn plan(vertex: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Plan {
            vertex: vertex.into(),
            message: message.into(),
        }
    }

    /// Shorthand for an [`Error::Sql`].
    pub fn sql(location: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Sql {
            location: location.into(),
            message: message.into(),
        }
    }

    /// Shorthand for an [`Error::Expression`].
    pub fn expr(message: impl Into<String>) -> Self {
        Error::Expression {
            message: message.into(),
        }
    }

    /// Shorthand for an [`Error::Unsupported`].
    pub fn unsupported(feature: impl Into<String>) -> Self {
        Error::Unsupported {
            feature: feature.into(),
        }
    }

    /// Shorthand for an [`Error::Arrow`] with context.
    pub fn arrow(context: impl Into<String>, source: arrow::error::ArrowError) -> Self {
        Error::Arrow {
            context: context.into(),
            source,
        }
    }

    /// Shorthand for an [`Error::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for an [`Error::Data`].
    pub fn data(location: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Data {
            location: location.into(),
            message: message.into(),
        }
    }
}
