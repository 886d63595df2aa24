//! Control RPC (gRPC with tonic): the code generated from `proto/sluice.proto` and the one
//! place where errors become [`tonic::Status`].

/// Messages and services generated from `proto/sluice.proto`.
pub mod proto {
    tonic::include_proto!("sluice.control");
}

use sluice_engine::Error;

/// An engine error as a gRPC status: user input → InvalidArgument, retryable → Unavailable,
/// everything else → Internal.
pub fn status(error: &Error) -> tonic::Status {
    match error {
        Error::Plan { .. }
        | Error::Expression { .. }
        | Error::Sql { .. }
        | Error::Config { .. }
        | Error::Data { .. }
        | Error::Unsupported { .. } => tonic::Status::invalid_argument(error.to_string()),
        error if error.is_retryable() => tonic::Status::unavailable(error.to_string()),
        error => tonic::Status::internal(error.to_string()),
    }
}

/// `http://ADDR` for a tonic endpoint, accepting ADDR with or without a scheme.
pub fn endpoint_uri(address: &str) -> String {
    if address.starts_with("http://") || address.starts_with("https://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}
