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

/// A TaskManager's lazily connected client of one JobMaster, calling it with a few retries:
/// the report and acknowledgement forwarders send through it in order.
pub struct JobMasterCaller {
    address: String,
    client: Option<proto::job_master_client::JobMasterClient<tonic::transport::Channel>>,
}

impl JobMasterCaller {
    pub fn new(address: String) -> Self {
        JobMasterCaller {
            address,
            client: None,
        }
    }

    /// Runs `call` with the client (connecting first when needed; a tonic client is a cheap
    /// handle to one connection) up to `attempts` times, pausing `pause` × the attempt number
    /// between tries and reconnecting after a failure; `on_retry(error, attempt)` is told of
    /// each failure that is retried. Returns the last error when every attempt failed.
    pub async fn call<F>(
        &mut self,
        attempts: u32,
        pause: std::time::Duration,
        mut call: impl FnMut(proto::job_master_client::JobMasterClient<tonic::transport::Channel>) -> F,
        mut on_retry: impl FnMut(&str, u32),
    ) -> Result<(), String>
    where
        F: std::future::Future<Output = Result<(), tonic::Status>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match self.connected().await {
                Ok(client) => call(client.clone())
                    .await
                    .map_err(|e| e.message().to_string()),
                Err(error) => Err(error),
            };
            let Err(error) = result else {
                return Ok(());
            };
            self.client = None;
            if attempt >= attempts {
                return Err(error);
            }
            on_retry(&error, attempt);
            tokio::time::sleep(pause * attempt).await;
        }
    }

    async fn connected(
        &mut self,
    ) -> Result<&mut proto::job_master_client::JobMasterClient<tonic::transport::Channel>, String>
    {
        if self.client.is_none() {
            // Bounded: a JobMaster that accepts connections but does not answer (a paused
            // process) fails the call instead of holding the reports behind it.
            let channel = tonic::transport::Endpoint::from_shared(endpoint_uri(&self.address))
                .map_err(|e| e.to_string())?
                .connect_timeout(std::time::Duration::from_secs(5))
                .timeout(std::time::Duration::from_secs(10))
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            let client = proto::job_master_client::JobMasterClient::new(channel);
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }
}
