//! The receiving end of a remote channel.
//!
//! The server's network task decodes the channel's messages into a bounded queue whose capacity
//! is the channel's credit; the consuming slot pops from it ([`FlightInput`]) and each popped
//! element releases one credit, which the credit stream (the response direction of the
//! `DoExchange` call) sends back to the producer.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use arrow_flight::FlightData;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError, bounded};
use futures::Stream;
use futures::task::AtomicWaker;
use sluice_engine::element::StreamElement;
use sluice_engine::ids::{AttemptNumber, JobId};
use sluice_engine::runtime::exchange::{InputChannel, SlotWaker};

use crate::codec::credit_message;
use crate::ticket::ChannelTicket;
use crate::{Error, Result};

/// The state the network task and the consuming slot share.
pub(super) struct Inbound {
    ticket: ChannelTicket,
    credits: u32,
    sender: Sender<StreamElement>,
    receiver: Receiver<StreamElement>,
    consumer: OnceLock<SlotWaker>,
    /// The producer's address, set when its stream opens.
    peer: OnceLock<String>,
    /// Credits released by the consumer and not yet granted.
    released: AtomicU32,
    credit_waker: AtomicWaker,
    /// End-of-input arrived, or the stream failed: no more credit is granted.
    finished: AtomicBool,
    failure: OnceLock<String>,
}

impl Inbound {
    fn new(ticket: ChannelTicket, credits: u32) -> Self {
        let (sender, receiver) = bounded(credits as usize);
        Inbound {
            ticket,
            credits,
            sender,
            receiver,
            consumer: OnceLock::new(),
            peer: OnceLock::new(),
            released: AtomicU32::new(0),
            credit_waker: AtomicWaker::new(),
            finished: AtomicBool::new(false),
            failure: OnceLock::new(),
        }
    }

    /// Called by the network task for each decoded element. Fails when the producer sent more
    /// elements than it had credit for.
    pub(super) fn push(&self, element: StreamElement) -> Result<()> {
        let end = matches!(element, StreamElement::EndOfInput);
        match self.sender.try_send(element) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                return Err(Error::Codec {
                    stream: self.describe(),
                    message: format!(
                        "the producer sent more elements than its {} credits",
                        self.credits
                    ),
                });
            }
        }
        if end {
            self.finished.store(true, Ordering::Release);
            self.credit_waker.wake();
        }
        if let Some(consumer) = self.consumer.get() {
            consumer.wake();
        }
        Ok(())
    }

    /// Fails the channel (the stream broke or sent garbage) unless it already ended.
    pub(super) fn fail(&self, message: String) {
        if self.finished.load(Ordering::Acquire) {
            return;
        }
        let _ = self.failure.set(message);
        self.finished.store(true, Ordering::Release);
        self.credit_waker.wake();
        if let Some(consumer) = self.consumer.get() {
            consumer.wake();
        }
    }

    /// The channel and its producer, for errors and logs.
    pub(super) fn describe(&self) -> String {
        match self.peer.get() {
            Some(peer) => format!("{} from TaskManager at {peer}", self.ticket),
            None => self.ticket.to_string(),
        }
    }

    fn release_credit(&self) {
        if self.released.fetch_add(1, Ordering::AcqRel) == 0 {
            self.credit_waker.wake();
        }
    }
}

/// Which channels have a receiving end in this process, by ticket. An entry lives until both
/// its stream and its consumer have taken it (either may come first), or until its job attempt
/// is released here; touched only while channels are set up, never per element.
pub(super) struct InboundRegistry {
    credits: u32,
    entries: Mutex<HashMap<ChannelTicket, Entry>>,
    /// Job attempts whose tasks here have ended: streams opening for them are refused, so no
    /// entry (and none of the batches it would buffer) outlives its job.
    released: Mutex<HashSet<(JobId, AttemptNumber)>>,
}

struct Entry {
    inbound: Arc<Inbound>,
    stream_taken: bool,
    consumer_taken: bool,
}

impl InboundRegistry {
    pub(super) fn new(credits: u32) -> Self {
        InboundRegistry {
            credits,
            entries: Mutex::new(HashMap::new()),
            released: Mutex::new(HashSet::new()),
        }
    }

    /// The tasks of `job`'s attempt `attempt` here have ended: fails the receiving ends they
    /// left half-open (a producer whose consumer never started, or a consumer whose producer
    /// never connected), dropping what they buffer, and refuses streams that open later.
    /// Returns how many ends were failed.
    pub(super) fn release_job(&self, job: &JobId, attempt: AttemptNumber) -> usize {
        self.released
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((job.clone(), attempt));
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut failed = 0;
        entries.retain(|ticket, entry| {
            if ticket.job != *job || ticket.attempt != attempt {
                return true;
            }
            entry.inbound.fail(format!(
                "job {job} (attempt {}) ended on the receiving TaskManager",
                attempt.0
            ));
            while entry.inbound.receiver.try_recv().is_ok() {}
            failed += 1;
            false
        });
        failed
    }

    fn take(
        &self,
        ticket: &ChannelTicket,
        mark: impl FnOnce(&mut Entry) -> Result<()>,
    ) -> Result<Arc<Inbound>> {
        if self
            .released
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(ticket.job.clone(), ticket.attempt))
        {
            return Err(Error::AttemptEnded {
                channel: ticket.to_string(),
            });
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.entry(ticket.clone()).or_insert_with(|| Entry {
            inbound: Arc::new(Inbound::new(ticket.clone(), self.credits)),
            stream_taken: false,
            consumer_taken: false,
        });
        mark(entry)?;
        let inbound = entry.inbound.clone();
        if entry.stream_taken && entry.consumer_taken {
            entries.remove(ticket);
        }
        Ok(inbound)
    }

    /// The receiving end for a stream that just opened from `peer`.
    pub(super) fn open_stream(&self, ticket: &ChannelTicket, peer: &str) -> Result<Arc<Inbound>> {
        self.take(ticket, |entry| {
            if entry.stream_taken {
                return Err(Error::Codec {
                    stream: format!("{ticket} from TaskManager at {peer}"),
                    message: "a second stream opened the same channel".into(),
                });
            }
            entry.stream_taken = true;
            let _ = entry.inbound.peer.set(peer.to_string());
            Ok(())
        })
    }

    /// The consuming task's end.
    pub(super) fn open_consumer(
        &self,
        ticket: &ChannelTicket,
        consumer: SlotWaker,
    ) -> Result<FlightInput> {
        let inbound = self.take(ticket, |entry| {
            if entry.consumer_taken {
                return Err(Error::Internal(format!(
                    "input of {ticket} requested twice"
                )));
            }
            entry.consumer_taken = true;
            let _ = entry.inbound.consumer.set(consumer);
            Ok(())
        })?;
        Ok(FlightInput { inbound })
    }
}

/// The consuming task's end of a remote channel.
pub(super) struct FlightInput {
    inbound: Arc<Inbound>,
}

impl FlightInput {
    fn took(&self, element: StreamElement) -> StreamElement {
        if !matches!(element, StreamElement::EndOfInput) {
            self.inbound.release_credit();
        }
        element
    }
}

impl InputChannel for FlightInput {
    fn try_recv(&mut self) -> sluice_engine::Result<Option<StreamElement>> {
        match self.inbound.receiver.try_recv() {
            Ok(element) => Ok(Some(self.took(element))),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                let Some(failure) = self.inbound.failure.get() else {
                    return Ok(None);
                };
                // Elements pushed before the failure are still delivered first.
                match self.inbound.receiver.try_recv() {
                    Ok(element) => Ok(Some(self.took(element))),
                    Err(_) => {
                        let ticket = &self.inbound.ticket;
                        let peer = self
                            .inbound
                            .peer
                            .get()
                            .map_or("an unknown address", String::as_str);
                        Err(sluice_engine::Error::Unavailable {
                            what: format!(
                                "upstream subtask {} of edge {} on TaskManager at {peer}",
                                ticket.channel.from, ticket.channel.edge
                            ),
                            message: failure.clone(),
                        })
                    }
                }
            }
        }
    }
}

/// The response direction of a channel's `DoExchange` call: the initial credit, then one grant
/// for every batch of released credits; ends after end-of-input, or with an error status when
/// the channel failed.
pub(super) struct CreditStream {
    inbound: Arc<Inbound>,
    initial_sent: bool,
    ended: bool,
}

impl CreditStream {
    pub(super) fn new(inbound: Arc<Inbound>) -> Self {
        CreditStream {
            inbound,
            initial_sent: false,
            ended: false,
        }
    }
}

impl Stream for CreditStream {
    type Item = Result<FlightData, tonic::Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if !self.initial_sent {
            self.initial_sent = true;
            return Poll::Ready(Some(Ok(credit_message(self.inbound.credits))));
        }
        let inbound = &self.inbound;
        inbound.credit_waker.register(cx.waker());
        if inbound.finished.load(Ordering::Acquire) {
            let failure = inbound.failure.get().cloned();
            self.ended = true;
            return Poll::Ready(failure.map(|f| Err(tonic::Status::aborted(f))));
        }
        let released = inbound.released.swap(0, Ordering::AcqRel);
        if released > 0 {
            return Poll::Ready(Some(Ok(credit_message(released))));
        }
        Poll::Pending
    }
}
