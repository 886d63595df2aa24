//! Cancelling a running job from outside the runtime: the `sluice` client's Ctrl-C.
//!
//! A [`CancelRequest`] is shared between whoever may ask (a signal handler thread) and the
//! runtime ([`super::RuntimeConfig::with_cancel_request`]). While a job runs, a watcher thread
//! owned by its [`super::JobHandle`] sleeps until the request is made, then cancels the job
//! exactly as [`super::JobHandle::cancel`] does: every task stops, sinks commit nothing more
//! (exactly-once sinks keep only what completed checkpoints committed), and
//! [`super::JobHandle::wait`] returns [`crate::Error::Cancelled`]. The request stays made until
//! [`CancelRequest::clear`], so a job submitted after it is cancelled at once.
//!
//! One job at a time per request: the client runs its jobs one after another.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::info;

use crate::ids::JobId;
use crate::{Error, Result};

/// How long the watcher sleeps between looks at the request when nobody wakes it; a request
/// wakes it at once, so this only bounds the cost of a missed wake-up.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// A request to cancel the running job. Cheap to clone; usable from any thread.
#[derive(Debug, Clone, Default)]
pub struct CancelRequest {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    requested: AtomicBool,
    /// The job most recently submitted with this request.
    job: Mutex<Option<JobId>>,
    /// The watcher of the running job, to wake; `None` while no job runs.
    watcher: Mutex<Option<std::thread::Thread>>,
}

impl CancelRequest {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for the running job (or the next one) to be cancelled. Returns whether a job was
    /// running to hear it. Does not block; safe to call from a signal-handling thread.
    pub fn request(&self) -> bool {
        self.inner.requested.store(true, Ordering::Release);
        let watcher = self.inner.watcher.lock().unwrap_or_else(|p| p.into_inner());
        match watcher.as_ref() {
            Some(thread) => {
                thread.unpark();
                true
            }
            None => false,
        }
    }

    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::Acquire)
    }

    /// Withdraws the request, e.g. before the client runs its next statement.
    pub fn clear(&self) {
        self.inner.requested.store(false, Ordering::Release);
    }

    /// The job most recently submitted with this request (the one a request cancelled).
    pub fn job_id(&self) -> Option<JobId> {
        self.inner
            .job
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The thread that cancels one job when its request is made; stops when dropped.
pub(crate) struct CancelWatcher {
    request: CancelRequest,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CancelWatcher {
    /// Watches `request` for the job `job_id`; `cancel` cancels the job.
    pub(crate) fn start(
        request: &CancelRequest,
        job_id: &JobId,
        cancel: impl FnOnce() + Send + 'static,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (watched, stopped, id) = (request.clone(), stop.clone(), job_id.clone());
        let thread = std::thread::Builder::new()
            .name("sluice-cancel".into())
            .spawn(move || {
                while !stopped.load(Ordering::Acquire) {
                    if watched.is_requested() {
                        info!(job_id = %id, "cancelling the job on request");
                        cancel();
                        return;
                    }
                    std::thread::park_timeout(WATCH_INTERVAL);
                }
            })
            .map_err(|e| Error::io("start the cancel watcher", "sluice-cancel", e))?;
        *request.inner.job.lock().unwrap_or_else(|p| p.into_inner()) = Some(job_id.clone());
        *request
            .inner
            .watcher
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(thread.thread().clone());
        // A request made before the watcher was registered is seen by its first look.
        Ok(CancelWatcher {
            request: request.clone(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for CancelWatcher {
    fn drop(&mut self) {
        *self
            .request
            .inner
            .watcher
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Waits (to a deadline) until `count` reaches `n`.
    fn wait_for(count: &AtomicUsize, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while count.load(Ordering::Acquire) < n {
            assert!(
                std::time::Instant::now() < deadline,
                "no cancel within 10 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_request_cancels_the_watched_job_once() {
        let request = CancelRequest::new();
        assert!(!request.request(), "no job runs yet");
        request.clear();
        let cancels = Arc::new(AtomicUsize::new(0));
        let counted = cancels.clone();
        let watcher = CancelWatcher::start(&request, &JobId("job-1".into()), move || {
            counted.fetch_add(1, Ordering::AcqRel);
        })
        .unwrap();
        assert_eq!(request.job_id(), Some(JobId("job-1".into())));
        assert!(request.request(), "the watcher hears it");
        wait_for(&cancels, 1);
        drop(watcher);
        assert_eq!(cancels.load(Ordering::Acquire), 1);
        assert!(!request.request(), "no job runs after the watcher is gone");
    }

    #[test]
    fn a_watcher_dropped_without_a_request_cancels_nothing() {
        let request = CancelRequest::new();
        let cancels = Arc::new(AtomicUsize::new(0));
        let counted = cancels.clone();
        let watcher = CancelWatcher::start(&request, &JobId("job-2".into()), move || {
            counted.fetch_add(1, Ordering::AcqRel);
        })
        .unwrap();
        drop(watcher);
        assert_eq!(cancels.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_request_made_before_the_job_cancels_it_at_once() {
        let request = CancelRequest::new();
        request.request();
        let cancels = Arc::new(AtomicUsize::new(0));
        let counted = cancels.clone();
        let watcher = CancelWatcher::start(&request, &JobId("job-3".into()), move || {
            counted.fetch_add(1, Ordering::AcqRel);
        })
        .unwrap();
        wait_for(&cancels, 1);
        drop(watcher);
        assert_eq!(cancels.load(Ordering::Acquire), 1);
    }
}
