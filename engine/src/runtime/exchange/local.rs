//! In-process channels: a bounded queue between two slot threads of one TaskManager.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError, bounded};

use super::{ChannelId, ExchangeFactory, InputChannel, OutputChannel, SlotWaker};
use crate::element::StreamElement;
use crate::{Error, Result};

/// The state both ends of a local channel share.
struct Shared {
    consumer: OnceLock<SlotWaker>,
    producer: OnceLock<SlotWaker>,
    /// Set by a producer that found the queue full; the consumer wakes it after a receive.
    producer_waiting: AtomicBool,
}

struct Pair {
    sender: Option<Sender<StreamElement>>,
    receiver: Option<Receiver<StreamElement>>,
    shared: Arc<Shared>,
}

/// Creates in-process channels of `capacity` elements each.
///
/// The capacity bounds memory: with batches of at most N rows, a channel holds at most
/// `capacity × N` rows in flight. The map below is only touched while a job is being set up.
pub struct LocalExchange {
    capacity: usize,
    pairs: Mutex<HashMap<ChannelId, Pair>>,
}

impl LocalExchange {
    pub fn new(capacity: usize) -> Self {
        LocalExchange {
            capacity: capacity.max(1),
            pairs: Mutex::new(HashMap::new()),
        }
    }

    fn with_pair<T>(&self, id: ChannelId, f: impl FnOnce(&mut Pair) -> T) -> T {
        let mut pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        let pair = pairs.entry(id).or_insert_with(|| {
            let (sender, receiver) = bounded(self.capacity);
            Pair {
                sender: Some(sender),
                receiver: Some(receiver),
                shared: Arc::new(Shared {
                    consumer: OnceLock::new(),
                    producer: OnceLock::new(),
                    producer_waiting: AtomicBool::new(false),
                }),
            }
        });
        f(pair)
    }
}

impl ExchangeFactory for LocalExchange {
    fn output(&self, id: ChannelId, producer: &SlotWaker) -> Result<Box<dyn OutputChannel>> {
        self.with_pair(id, |pair| {
            let sender = pair.sender.take().ok_or_else(|| {
                Error::Internal(format!("output of channel {id:?} requested twice"))
            })?;
            let _ = pair.shared.producer.set(producer.clone());
            Ok(Box::new(LocalOutput {
                sender,
                shared: pair.shared.clone(),
            }) as Box<dyn OutputChannel>)
        })
    }

    fn input(&self, id: ChannelId, consumer: &SlotWaker) -> Result<Box<dyn InputChannel>> {
        self.with_pair(id, |pair| {
            let receiver = pair.receiver.take().ok_or_else(|| {
                Error::Internal(format!("input of channel {id:?} requested twice"))
            })?;
            let _ = pair.shared.consumer.set(consumer.clone());
            Ok(Box::new(LocalInput {
                receiver,
                shared: pair.shared.clone(),
                id,
            }) as Box<dyn InputChannel>)
        })
    }
}

struct LocalOutput {
    sender: Sender<StreamElement>,
    shared: Arc<Shared>,
}

impl OutputChannel for LocalOutput {
    fn try_send(&mut self, element: StreamElement) -> Result<Option<StreamElement>> {
        match self.sender.try_send(element) {
            Ok(()) => {
                if let Some(consumer) = self.shared.consumer.get() {
                    consumer.wake();
                }
                Ok(None)
            }
            Err(TrySendError::Full(element)) => {
                self.shared.producer_waiting.store(true, Ordering::Release);
                // The consumer may have drained the queue between our failed send and the flag
                // store; retrying once closes that window so no wake-up is lost.
                match self.sender.try_send(element) {
                    Ok(()) => {
                        if let Some(consumer) = self.shared.consumer.get() {
                            consumer.wake();
                        }
                        Ok(None)
                    }
                    Err(TrySendError::Full(element)) => Ok(Some(element)),
                    Err(TrySendError::Disconnected(_)) => Err(Error::Unavailable {
                        what: "downstream task".into(),
                        message: "the receiving task has stopped".into(),
                    }),
                }
            }
            Err(TrySendError::Disconnected(_)) => Err(Error::Unavailable {
                what: "downstream task".into(),
                message: "the receiving task has stopped".into(),
            }),
        }
    }
}

struct LocalInput {
    receiver: Receiver<StreamElement>,
    shared: Arc<Shared>,
    id: ChannelId,
}

impl InputChannel for LocalInput {
    fn try_recv(&mut self) -> Result<Option<StreamElement>> {
        match self.receiver.try_recv() {
            Ok(element) => {
                if self.shared.producer_waiting.swap(false, Ordering::AcqRel)
                    && let Some(producer) = self.shared.producer.get()
                {
                    producer.wake();
                }
                Ok(Some(element))
            }
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(Error::Unavailable {
                what: format!("upstream subtask {} of edge {}", self.id.from, self.id.edge),
                message: "it stopped without sending end-of-input".into(),
            }),
        }
    }
}
