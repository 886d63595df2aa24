//! Errors raised by the dataset generators.
//!
//! Almost every failure here is bad user input (an invalid option, an
//! unsupported column type, a bad split); I/O and Parquet failures only occur
//! when writing TPC-H files. [`Error::is_retryable`] answers "retry or fail?"
//! for restart strategies.

use std::path::PathBuf;

use arrow::datatypes::DataType;
use arrow::error::ArrowError;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while configuring or running a generator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option key is not known. `suggestion` is the nearest valid key, if any is close.
    #[error("unknown option '{key}'{}", suggestion_suffix(.suggestion))]
    UnknownOption {
        /// The key as written by the user.
        key: String,
        /// The closest valid key.
        suggestion: Option<String>,
    },

    /// A `fields.<name>.*` option names a column that is not in the schema.
    #[error("option '{key}' refers to unknown field '{field}'")]
    UnknownField {
        /// The field name taken from the key.
        field: String,
        /// The full option key.
        key: String,
    },

    /// An option has a value that cannot be used.
    #[error("{key} = '{value}' {reason}")]
    InvalidOption {
        /// The option key.
        key: String,
        /// The value as written by the user.
        value: String,
        /// Why the value is rejected, phrased to follow the value ("is not a number").
        reason: String,
    },

    /// A required option is missing.
    #[error("option '{key}' is required {reason}")]
    MissingOption {
        /// The missing key.
        key: String,
        /// When it is required.
        reason: String,
    },

    /// A column type the generator cannot produce.
    #[error("field '{field}' has unsupported type {data_type}")]
    UnsupportedType {
        /// The column name.
        field: String,
        /// Its Arrow type.
        data_type: DataType,
    },

    /// A configuration value (outside an option map) is out of range.
    #[error("invalid configuration: {what}")]
    InvalidConfig {
        /// What is wrong, naming the setting and the allowed range.
        what: String,
    },

    /// Arrow rejected a batch the generator built; this is a bug in the generator.
    #[error("internal error (a bug) while building {what}")]
    Arrow {
        /// The batch or column being built.
        what: String,
        /// The Arrow error.
        #[source]
        source: ArrowError,
    },

    /// A broken invariant inside the generator; this is a bug.
    #[error("internal error (a bug): {what}")]
    Internal {
        /// What went wrong.
        what: String,
    },

    /// Writing a Parquet file failed.
    #[error("failed to write Parquet file {}", .path.display())]
    Parquet {
        /// The file being written.
        path: PathBuf,
        /// The Parquet error.
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// A file-system operation failed.
    #[error("I/O error on {}", .path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether retrying the same operation may succeed.
    ///
    /// Only I/O errors may be transient; every other error is deterministic
    /// (the same input fails the same way).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Io { .. } | Error::Parquet { .. } => true,
            Error::UnknownOption { .. }
            | Error::UnknownField { .. }
            | Error::InvalidOption { .. }
            | Error::MissingOption { .. }
            | Error::UnsupportedType { .. }
            | Error::InvalidConfig { .. }
            | Error::Arrow { .. }
            | Error::Internal { .. } => false,
        }
    }

    pub(crate) fn invalid_option(
        key: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidOption {
            key: key.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_config(what: impl Into<String>) -> Self {
        Error::InvalidConfig { what: what.into() }
    }

    pub(crate) fn arrow(what: impl Into<String>) -> impl FnOnce(ArrowError) -> Self {
        let what = what.into();
        move |source| Error::Arrow { what, source }
    }
}

fn suggestion_suffix(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean '{s}'?)"),
        None => String::new(),
    }
}
