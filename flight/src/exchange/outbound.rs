//! The sending end of a remote channel.
//!
//! The producing slot spends a credit per element and pushes the element into a queue that the
//! channel's network task drains: it encodes the elements as Flight messages, streams them in
//! a `DoExchange` call and adds the credits granted in the response direction.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use arrow_flight::FlightData;
use futures::StreamExt;
use sluice_engine::element::StreamElement;
use sluice_engine::runtime::exchange::{OutputChannel, SlotWaker};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tonic::transport::Channel;
use tracing::debug;

use super::metrics::{ExchangeCounters, message_bytes};
use super::request;
use crate::codec::{Compression, ElementEncoder, FlightMessage, open_message, parse_credit};
use crate::ticket::ChannelTicket;
use crate::{Error, Result};

/// The state the network task and the producing slot share.
struct Outbound {
    /// The receiver's address, named in every error.
    address: String,
    credits: AtomicU32,
    producer: SlotWaker,
    /// Set by a producer that found no credit; the next grant wakes it.
    producer_waiting: AtomicBool,
    /// Set when end-of-input has been handed to the network.
    end_sent: AtomicBool,
    failure: OnceLock<String>,
    counters: Arc<ExchangeCounters>,
}

impl Outbound {
    fn take_credit(&self) -> bool {
        self.credits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
            .is_ok()
    }

    fn grant(&self, credits: u32) {
        self.counters.granted(credits);
        // SeqCst pairs with the producer's flag store and credit re-check (a store followed by
        // a load on another atomic on both sides).
        self.credits.fetch_add(credits, Ordering::SeqCst);
        if self.producer_waiting.swap(false, Ordering::SeqCst) {
            self.producer.wake();
        }
    }

    fn fail(&self, message: String) {
        let _ = self.failure.set(message);
        self.producer.wake();
    }

    fn error(&self, message: &str) -> sluice_engine::Error {
        Error::PeerUnavailable {
            address: self.address.clone(),
            message: message.to_string(),
        }
        .into_engine()
    }
}

/// The producing task's end of a remote channel.
pub(super) struct FlightOutput {
    queue: UnboundedSender<StreamElement>,
    outbound: Arc<Outbound>,
}

impl OutputChannel for FlightOutput {
    fn try_send(&mut self, element: StreamElement) -> sluice_engine::Result<Option<StreamElement>> {
        let outbound = &self.outbound;
        if let Some(failure) = outbound.failure.get() {
            return Err(outbound.error(failure));
        }
        if let StreamElement::Batch(batch) = &element
            && batch.num_rows() == 0
        {
            return Ok(None);
        }
        if !outbound.take_credit() {
            outbound.counters.stalled();
            outbound.producer_waiting.store(true, Ordering::SeqCst);
            // A grant may have arrived between the failed take and the flag store; retrying
            // once closes that window so no wake-up is lost.
            if !outbound.take_credit() {
                return Ok(Some(element));
            }
        }
        if self.queue.send(element).is_err() {
            let failure = outbound
                .failure
                .get()
                .map_or("the channel's network task stopped", String::as_str);
            return Err(outbound.error(failure));
        }
        Ok(None)
    }
}

/// What the producing TaskManager's channels share.
pub(super) struct ProducerSide {
    /// This TaskManager's Flight address, which receivers name in their errors.
    pub address: String,
    pub compression: Compression,
    pub counters: Arc<ExchangeCounters>,
}

/// Opens the sending end of `ticket` towards the TaskManager at `address` and spawns its
/// network task on `runtime`.
pub(super) fn open(
    runtime: &tokio::runtime::Handle,
    client: Channel,
    ticket: ChannelTicket,
    address: &str,
    producer: SlotWaker,
    side: ProducerSide,
) -> Result<FlightOutput> {
    let ProducerSide {
        address: producer_address,
        compression,
        counters,
    } = side;
    let encoder = ElementEncoder::new(compression)?;
    let (queue, elements) = unbounded_channel();
    let outbound = Arc::new(Outbound {
        address: address.to_string(),
        credits: AtomicU32::new(0),
        producer,
        producer_waiting: AtomicBool::new(false),
        end_sent: AtomicBool::new(false),
        failure: OnceLock::new(),
        counters,
    });
    let task = outbound.clone();
    runtime.spawn(async move {
        let result = drive(
            client,
            ticket.clone(),
            elements,
            encoder,
            &task,
            producer_address,
        )
        .await;
        match result {
            Ok(()) => debug!(channel = %ticket, "exchange channel finished"),
            Err(message) => {
                debug!(channel = %ticket, address = %task.address, error = %message, "exchange channel failed");
                task.fail(message);
            }
        }
    });
    Ok(FlightOutput { queue, outbound })
}

/// Streams the channel's elements and collects its credits until the receiver has ended the
/// call. The error names what broke; the caller adds the address.
async fn drive(
    client: Channel,
    ticket: ChannelTicket,
    elements: UnboundedReceiver<StreamElement>,
    encoder: ElementEncoder,
    outbound: &Arc<Outbound>,
    producer_address: String,
) -> Result<(), String> {
    let sender = outbound.clone();
    let messages = futures::stream::unfold(
        (elements, encoder, false),
        move |(mut elements, mut encoder, ended)| {
            let sender = sender.clone();
            async move {
                if ended {
                    return None;
                }
                let element = elements.recv().await?;
                let end = matches!(element, StreamElement::EndOfInput);
                let mut out = Vec::new();
                if let Err(e) = encoder.encode_chunked(&element, &mut out) {
                    sender.fail(e.to_string());
                    return None;
                }
                if end {
                    sender.end_sent.store(true, Ordering::Release);
                }
                for message in &out {
                    sender.counters.sent(
                        message_bytes(&message.data)
                            + message.body.iter().map(|b| b.len() as u64).sum::<u64>(),
                    );
                }
                Some((futures::stream::iter(out), (elements, encoder, end)))
            }
        },
    )
    .flatten();
    let open = FlightMessage {
        data: open_message(&ticket, &producer_address),
        body: Vec::new(),
    };
    let request = futures::stream::once(async move { open })
        .chain(messages)
        .boxed();
    // Credit grants are a few bytes each.
    let mut credits = request::do_exchange(client, request, 64 << 10).await?;
    loop {
        match credits.message().await {
            Ok(Some(data)) => outbound.grant(read_credit(&data, &outbound.address)?),
            Ok(None) => {
                return if outbound.end_sent.load(Ordering::Acquire) {
                    Ok(())
                } else {
                    Err("the receiver closed the channel before end-of-input".into())
                };
            }
            Err(status) => return Err(request::describe_status(&status)),
        }
    }
}

fn read_credit(data: &FlightData, address: &str) -> Result<u32, String> {
    parse_credit(data, &format!("credit stream from {address}")).map_err(|e| e.to_string())
}
