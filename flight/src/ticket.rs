//! Names of Flight streams: which channel of which job attempt a stream carries.
//!
//! A producer opens one stream per remote channel and names it in the first message's
//! `FlightDescriptor` (a `CMD` descriptor holding a small JSON object), so the receiving
//! TaskManager can hand the stream to the right input channel.

use std::fmt;

use arrow_flight::FlightDescriptor;
use arrow_flight::flight_descriptor::DescriptorType;
use serde::{Deserialize, Serialize};
use sluice_engine::ids::{AttemptNumber, JobId, SubtaskIndex};
use sluice_engine::runtime::exchange::ChannelId;

use crate::{Error, Result};

/// A TaskManager of a cluster, as the coordinator names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskManagerId(pub String);

impl fmt::Display for TaskManagerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One channel of one attempt of a job: the key of an inbound stream on a Flight server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelTicket {
    pub job: JobId,
    pub attempt: AttemptNumber,
    pub channel: ChannelId,
}

/// The JSON form of a [`ChannelTicket`].
#[derive(Serialize, Deserialize)]
struct TicketJson {
    job: JobId,
    attempt: AttemptNumber,
    edge: u32,
    from: SubtaskIndex,
    to: SubtaskIndex,
}

impl ChannelTicket {
    /// The descriptor a producer sends in the first message of the channel's stream.
    pub fn to_descriptor(&self) -> FlightDescriptor {
        let json = TicketJson {
            job: self.job.clone(),
            attempt: self.attempt,
            edge: self.channel.edge,
            from: self.channel.from,
            to: self.channel.to,
        };
        let bytes = serde_json::to_vec(&json).expect("a ticket always serialises to JSON");
        FlightDescriptor::new_cmd(bytes)
    }

    /// Reads the ticket of a stream's descriptor.
    pub fn from_descriptor(descriptor: &FlightDescriptor) -> Result<Self> {
        if descriptor.r#type() != DescriptorType::Cmd {
            return Err(Error::Codec {
                stream: "an exchange stream".into(),
                message: "the descriptor is not a CMD descriptor naming a channel".into(),
            });
        }
        let json: TicketJson =
            serde_json::from_slice(&descriptor.cmd).map_err(|e| Error::Codec {
                stream: "an exchange stream".into(),
                message: format!("the descriptor does not name a channel: {e}"),
            })?;
        Ok(ChannelTicket {
            job: json.job,
            attempt: json.attempt,
            channel: ChannelId {
                edge: json.edge,
                from: json.from,
                to: json.to,
            },
        })
    }
}

impl fmt::Display for ChannelTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "channel (edge {}, subtask {} -> {}) of job {} attempt {}",
            self.channel.edge, self.channel.from, self.channel.to, self.job, self.attempt
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_round_trip() {
        let ticket = ChannelTicket {
            job: JobId("00ff".into()),
            attempt: AttemptNumber(2),
            channel: ChannelId {
                edge: 3,
                from: SubtaskIndex(1),
                to: SubtaskIndex(4),
            },
        };
        let back = ChannelTicket::from_descriptor(&ticket.to_descriptor()).unwrap();
        assert_eq!(back, ticket);
    }

    #[test]
    fn path_descriptor_is_rejected() {
        let error = ChannelTicket::from_descriptor(&FlightDescriptor::new_path(vec!["x".into()]))
            .unwrap_err();
        assert!(error.to_string().contains("CMD descriptor"), "{error}");
    }
}
