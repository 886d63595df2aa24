//! Ctrl-C in the `sluice` client: cancels the running job instead of killing the process.
//!
//! [`install`] replaces the default SIGINT action (end the process at once) with a thread that
//! waits for SIGINT and makes a [`CancelRequest`], which the runtime watches: the job's tasks
//! stop, sinks commit nothing more, and the job ends with [`sluice_engine::Error::Cancelled`].
//! The caller then reports `Job <id> cancelled` and, for a script, exits with 130 (128 +
//! SIGINT, what a shell reports for a process SIGINT ended). A Ctrl-C while no job runs, or a
//! second one while the first is still cancelling, ends the process with 130 as before.

use sluice_engine::runtime::CancelRequest;
use tokio::signal::unix::{SignalKind, signal};

/// The exit code of a process ended by Ctrl-C (128 + SIGINT), as shells report it.
pub const EXIT_CODE: u8 = 130;

/// Handles SIGINT from now on by making `request` (see the module docs). The handler is in
/// place when this returns; it runs on its own thread for the rest of the process.
pub fn install(request: CancelRequest) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    // Registered here, before returning, so no SIGINT after this call takes the default action.
    let mut interrupts = runtime.block_on(async { signal(SignalKind::interrupt()) })?;
    // The thread lives as long as the process: there is always one handler for SIGINT.
    std::thread::Builder::new()
        .name("sluice-ctrl-c".into())
        .spawn(move || {
            while runtime.block_on(interrupts.recv()).is_some() {
                if request.is_requested() || !request.request() {
                    std::process::exit(i32::from(EXIT_CODE));
                }
            }
        })?;
    Ok(())
}

/// The message for an error that a Ctrl-C caused (`Job <id> cancelled`), or `None` when the
/// error is something else.
pub fn cancelled_message(error: &sluice_engine::Error, request: &CancelRequest) -> Option<String> {
    if !matches!(error, sluice_engine::Error::Cancelled) || !request.is_requested() {
        return None;
    }
    Some(match request.job_id() {
        Some(id) => format!("Job {id} cancelled"),
        None => "Job cancelled".to_string(),
    })
}
