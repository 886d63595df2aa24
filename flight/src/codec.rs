//! Stream elements in Flight messages.
//!
//! A channel's stream is a sequence of `FlightData` messages. Every message carries a small
//! binary header in `app_metadata`:
//!
//! ```text
//! byte 0   header version (1)
//! byte 1   kind: 0 IPC message, 1 watermark, 2 barrier, 3 end-of-input, 4 open, 5 credit
//! then     kind-specific fields, little-endian:
//!          open        UTF-8 Flight address of the producing TaskManager
//!          watermark   i64 milliseconds
//!          barrier     u64 checkpoint id, i64 trigger time in ms, u8 (0 checkpoint, 1 savepoint)
//!          credit      u32 number of elements the receiver has room for
//!          IPC         zero padding (0 to 15 bytes), see below
//! ```
//!
//! Record batches travel as Arrow IPC messages (kind 0): the schema once per stream (again only
//! if it changes), dictionary batches when a dictionary is new or replaced, then the record
//! batch, optionally compressed with LZ4_FRAME or ZSTD ([`Compression`]). Watermarks, barriers
//! and end-of-input are header-only messages, so they stay in order with the data. The *open*
//! message is the first one a producer sends: its descriptor names the channel
//! ([`ChannelTicket`]). *Credit* messages travel the other way, from receiver to producer.
//!
//! The padding of an IPC message's header places `data_body` at a multiple of
//! [`BODY_ALIGNMENT`] bytes from the start of the encoded protobuf message. The receiver's gRPC
//! layer gathers each message into one buffer that starts at an allocator-aligned address, so
//! the body, and with it every Arrow buffer (the IPC writer pads them to 64 bytes), arrives
//! aligned: the IPC reader then uses the received bytes in place instead of copying every
//! buffer that is misaligned for its type. A message that does land misaligned is still read
//! correctly, only with that copy.
//!
//! An empty batch (all rows filtered out) is never sent: [`ElementEncoder::encode`] emits no
//! message for it. A sliced batch is encoded as its slice only (the IPC writer truncates the
//! buffers to the slice).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::{IpcWriteOptions, StreamEncoder};
use arrow::ipc::{CompressionType, MessageHeader, convert, reader, root_as_message};
use arrow::record_batch::RecordBatch;
use arrow_flight::FlightData;
use bytes::Bytes;
use prost::encoding::encoded_len_varint;
use sluice_engine::element::{CheckpointBarrier, SnapshotKind, StreamElement, Watermark};
use sluice_engine::ids::CheckpointId;

use crate::ticket::ChannelTicket;
use crate::{Error, Result};

/// The version of the `app_metadata` header this code writes and reads.
pub const HEADER_VERSION: u8 = 1;

const KIND_IPC: u8 = 0;
const KIND_WATERMARK: u8 = 1;
const KIND_BARRIER: u8 = 2;
const KIND_END_OF_INPUT: u8 = 3;
const KIND_OPEN: u8 = 4;
const KIND_CREDIT: u8 = 5;

/// IPC body compression of batches on the wire (Flink's `taskmanager.network.compression.codec`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    None,
    Lz4Frame,
    Zstd,
}

impl Compression {
    /// The config key that chooses the codec.
    pub const CONFIG_KEY: &'static str = "taskmanager.network.compression.codec";

    /// Reads a config value: `NONE`, `LZ4` (or `LZ4_FRAME`) or `ZSTD`, in any case.
    pub fn parse(value: &str) -> Result<Self> {
        match value.trim().to_ascii_uppercase().as_str() {
            "NONE" | "" => Ok(Compression::None),
            "LZ4" | "LZ4_FRAME" => Ok(Compression::Lz4Frame),
            "ZSTD" => Ok(Compression::Zstd),
            _ => Err(Error::Config {
                key: Self::CONFIG_KEY.into(),
                value: value.into(),
                message: "expected NONE, LZ4 or ZSTD".into(),
            }),
        }
    }

    fn ipc_type(self) -> Option<CompressionType> {
        match self {
            Compression::None => None,
            Compression::Lz4Frame => Some(CompressionType::LZ4_FRAME),
            Compression::Zstd => Some(CompressionType::ZSTD),
        }
    }
}

/// Where `data_body` starts in an IPC message, relative to the start of the encoded protobuf
/// message. 16 is the largest alignment an Arrow native type needs (`i128`, `i256`), and what
/// the allocators we run on guarantee for the buffers the gRPC layer receives into.
pub const BODY_ALIGNMENT: usize = 16;

/// The `app_metadata` of IPC messages: the header and up to `BODY_ALIGNMENT - 1` bytes of
/// padding. Static, so an IPC message carries a slice of it and allocates no metadata.
static IPC_METADATA: [u8; 2 + BODY_ALIGNMENT - 1] = {
    let mut metadata = [0u8; 2 + BODY_ALIGNMENT - 1];
    metadata[0] = HEADER_VERSION;
    metadata[1] = KIND_IPC;
    metadata
};

static END_OF_INPUT_METADATA: [u8; 2] = [HEADER_VERSION, KIND_END_OF_INPUT];

/// Bytes of a length-delimited protobuf field (tag of `tag_len` bytes, length, value).
fn field_len(tag_len: usize, value_len: usize) -> usize {
    if value_len == 0 {
        // proto3 leaves out empty bytes fields.
        return 0;
    }
    tag_len + encoded_len_varint(value_len as u64) + value_len
}

/// An IPC message, without its body of `body_len` bytes, whose `app_metadata` is padded so that, encoded as protobuf (fields in
/// number order: `data_header` = 2, `app_metadata` = 3, `data_body` = 1000 with a two-byte
/// tag), `data_body` starts at a multiple of [`BODY_ALIGNMENT`].
fn ipc_message(header: Vec<u8>, body_len: usize) -> FlightData {
    let unpadded =
        field_len(1, header.len()) + field_len(1, 2) + 2 + encoded_len_varint(body_len as u64);
    let padding = (BODY_ALIGNMENT - unpadded % BODY_ALIGNMENT) % BODY_ALIGNMENT;
    FlightData {
        flight_descriptor: None,
        data_header: header.into(),
        app_metadata: Bytes::from_static(&IPC_METADATA[..2 + padding]),
        data_body: Bytes::new(),
    }
}

fn header(kind: u8) -> [u8; 2] {
    [HEADER_VERSION, kind]
}

/// The first message of a channel's stream: names the channel in its descriptor and, after the
/// header, the Flight address of the producing TaskManager (UTF-8), for the receiver's errors.
pub fn open_message(ticket: &ChannelTicket, producer: &str) -> FlightData {
    let mut metadata = Vec::with_capacity(2 + producer.len());
    metadata.extend_from_slice(&header(KIND_OPEN));
    metadata.extend_from_slice(producer.as_bytes());
    FlightData::new()
        .with_descriptor(ticket.to_descriptor())
        .with_app_metadata(metadata)
}

/// Reads the first message of a stream: the channel it carries and the producer's address.
/// `stream` names the stream (the connection's address) in errors.
pub fn parse_open(data: &FlightData, stream: &str) -> Result<(ChannelTicket, String)> {
    let (kind, fields) = split_header(&data.app_metadata, stream)?;
    if kind != KIND_OPEN {
        return Err(codec_error(
            stream,
            format!("the first message must open a channel, found kind {kind}"),
        ));
    }
    let producer = std::str::from_utf8(fields)
        .map_err(|_| codec_error(stream, "the producer's address is not UTF-8".into()))?;
    let descriptor = data
        .flight_descriptor
        .as_ref()
        .ok_or_else(|| codec_error(stream, "the open message has no descriptor".into()))?;
    Ok((
        ChannelTicket::from_descriptor(descriptor)?,
        producer.to_string(),
    ))
}

/// A credit grant: the receiver has room for `credits` more elements.
pub fn credit_message(credits: u32) -> FlightData {
    let mut metadata = Vec::with_capacity(6);
    metadata.extend_from_slice(&header(KIND_CREDIT));
    metadata.extend_from_slice(&credits.to_le_bytes());
    FlightData::new().with_app_metadata(metadata)
}

/// Reads a credit grant.
pub fn parse_credit(data: &FlightData, stream: &str) -> Result<u32> {
    let (kind, fields) = split_header(&data.app_metadata, stream)?;
    if kind != KIND_CREDIT {
        return Err(codec_error(
            stream,
            format!("expected a credit grant, found kind {kind}"),
        ));
    }
    let credits = read_array::<4>(fields, 0, stream)?;
    Ok(u32::from_le_bytes(credits))
}

fn codec_error(stream: &str, message: String) -> Error {
    Error::Codec {
        stream: stream.into(),
        message,
    }
}

/// Checks the header's version and returns (kind, fields after the header).
fn split_header<'a>(metadata: &'a [u8], stream: &str) -> Result<(u8, &'a [u8])> {
    match metadata {
        [HEADER_VERSION, kind, fields @ ..] => Ok((*kind, fields)),
        [version, _, ..] => Err(codec_error(
            stream,
            format!("unknown header version {version} (this build reads version {HEADER_VERSION})"),
        )),
        _ => Err(codec_error(
            stream,
            format!(
                "app_metadata has {} bytes, shorter than the 2-byte header",
                metadata.len()
            ),
        )),
    }
}

fn read_array<const N: usize>(fields: &[u8], at: usize, stream: &str) -> Result<[u8; N]> {
    fields
        .get(at..at + N)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            codec_error(
                stream,
                format!(
                    "header fields have {} bytes, expected at least {}",
                    fields.len(),
                    at + N
                ),
            )
        })
}

/// A Flight message whose `data_body` is kept as the chunks the IPC writer produced: the
/// batch's own buffers (shared, not copied) and the padding between them, so the exchange can
/// send the body without first gathering it into one buffer.
#[derive(Debug, Clone)]
pub struct FlightMessage {
    /// The message's fields but `data_body`, which is left empty.
    pub data: FlightData,
    /// `data_body`, in order.
    pub body: Vec<Bytes>,
}

impl FlightMessage {
    fn header_only(data: FlightData) -> Self {
        FlightMessage {
            data,
            body: Vec::new(),
        }
    }

    /// Bytes of `data_body`.
    pub fn body_len(&self) -> usize {
        self.body.iter().map(Bytes::len).sum()
    }

    /// The message with its body in one buffer (copies the body unless it is one chunk).
    pub fn into_flight_data(self) -> FlightData {
        let mut data = self.data;
        data.data_body = match <[Bytes; 1]>::try_from(self.body) {
            Ok([body]) => body,
            Err(chunks) => Bytes::from(chunks.concat()),
        };
        data
    }
}

/// Turns the stream elements of one channel into Flight messages. Stateful: remembers the
/// schema and dictionaries already sent on the stream.
pub struct ElementEncoder {
    options: IpcWriteOptions,
    /// The IPC stream of the current schema: writes the schema message first, then
    /// dictionaries and batches, referring to the batches' buffers instead of copying them
    /// (unless compressed).
    stream: Option<(SchemaRef, StreamEncoder)>,
}

impl ElementEncoder {
    pub fn new(compression: Compression) -> Result<Self> {
        let options = IpcWriteOptions::default()
            .try_with_compression(compression.ipc_type())
            .map_err(|source| Error::Arrow {
                context: format!("IPC compression {compression:?}"),
                source,
            })?;
        Ok(ElementEncoder {
            options,
            stream: None,
        })
    }

    /// Appends the messages that carry `element` to `out`: none for an empty batch; the schema
    /// (first batch or changed schema), new dictionaries and the batch for a batch; one
    /// header-only message for the other elements. Copies every body into one buffer; the
    /// exchange uses [`ElementEncoder::encode_chunked`].
    pub fn encode(&mut self, element: &StreamElement, out: &mut Vec<FlightData>) -> Result<()> {
        let mut messages = Vec::new();
        self.encode_chunked(element, &mut messages)?;
        out.extend(messages.into_iter().map(FlightMessage::into_flight_data));
        Ok(())
    }

    /// Like [`ElementEncoder::encode`], with bodies left in chunks that share the batch's
    /// buffers.
    pub fn encode_chunked(
        &mut self,
        element: &StreamElement,
        out: &mut Vec<FlightMessage>,
    ) -> Result<()> {
        match element {
            StreamElement::Batch(batch) => self.encode_batch(batch, out),
            StreamElement::Watermark(watermark) => {
                let mut metadata = Vec::with_capacity(10);
                metadata.extend_from_slice(&header(KIND_WATERMARK));
                metadata.extend_from_slice(&watermark.0.to_le_bytes());
                out.push(FlightMessage::header_only(
                    FlightData::new().with_app_metadata(metadata),
                ));
                Ok(())
            }
            StreamElement::Barrier(barrier) => {
                let mut metadata = Vec::with_capacity(19);
                metadata.extend_from_slice(&header(KIND_BARRIER));
                metadata.extend_from_slice(&barrier.id.0.to_le_bytes());
                metadata.extend_from_slice(&barrier.timestamp_ms.to_le_bytes());
                metadata.push(match barrier.kind {
                    SnapshotKind::Checkpoint => 0,
                    SnapshotKind::Savepoint => 1,
                });
                out.push(FlightMessage::header_only(
                    FlightData::new().with_app_metadata(metadata),
                ));
                Ok(())
            }
            StreamElement::EndOfInput => {
                out.push(FlightMessage::header_only(
                    FlightData::new().with_app_metadata(Bytes::from_static(&END_OF_INPUT_METADATA)),
                ));
                Ok(())
            }
        }
    }

    fn encode_batch(&mut self, batch: &RecordBatch, out: &mut Vec<FlightMessage>) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let arrow_error = |source| Error::Arrow {
            context: "encoding a batch as Arrow IPC".into(),
            source,
        };
        let schema = batch.schema();
        let encoder = match &mut self.stream {
            Some((sent, encoder)) if Arc::ptr_eq(sent, &schema) || **sent == *schema => encoder,
            _ => {
                // A new schema starts a new IPC stream: the schema message, then a new set of
                // dictionaries.
                let encoder = StreamEncoder::try_new_with_options(&schema, self.options.clone())
                    .map_err(arrow_error)?;
                &mut self.stream.insert((schema, encoder)).1
            }
        };
        let buffers = encoder.encode(batch).map_err(arrow_error)?;
        split_ipc_stream(buffers, out)
    }
}

/// Takes the IPC stream messages (continuation marker, metadata length, metadata, body) that
/// `buffers` hold, in order, apart into Flight messages; the bodies stay the buffers' bytes.
fn split_ipc_stream(buffers: Vec<Buffer>, out: &mut Vec<FlightMessage>) -> Result<()> {
    let mut chunks: VecDeque<Bytes> = buffers
        .into_iter()
        .filter(|buffer| !buffer.is_empty())
        .map(Bytes::from_owner)
        .collect();
    while !chunks.is_empty() {
        let prefix = take_copied(&mut chunks, 8)?;
        let (marker, length) = prefix.split_at(4);
        if marker != [0xff; 4] {
            return Err(Error::Internal(format!(
                "the IPC writer produced a message without continuation marker ({marker:?}); \
                 this is a bug"
            )));
        }
        let length = i32::from_le_bytes([length[0], length[1], length[2], length[3]]);
        let length = usize::try_from(length).map_err(|_| {
            Error::Internal(format!(
                "the IPC writer produced a message of length {length}; this is a bug"
            ))
        })?;
        if length == 0 {
            // End of stream: the encoder is never finished, so this does not happen.
            break;
        }
        let header = take_copied(&mut chunks, length)?;
        let body_len = root_as_message(&header)
            .map(|message| message.bodyLength())
            .map_err(|e| {
                Error::Internal(format!(
                    "the IPC writer produced an unreadable message header ({e}); this is a bug"
                ))
            })?;
        let body_len = usize::try_from(body_len).map_err(|_| {
            Error::Internal(format!(
                "the IPC writer produced a body of length {body_len}; this is a bug"
            ))
        })?;
        let body = take_chunks(&mut chunks, body_len)?;
        out.push(FlightMessage {
            data: ipc_message(header, body_len),
            body,
        });
    }
    Ok(())
}

fn short_stream(wanted: usize) -> Error {
    Error::Internal(format!(
        "the IPC writer's output ended {wanted} bytes early; this is a bug"
    ))
}

/// The next `len` bytes of `chunks`, copied (message prefixes and headers: a few hundred bytes).
fn take_copied(chunks: &mut VecDeque<Bytes>, len: usize) -> Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(len);
    for chunk in take_chunks(chunks, len)? {
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The next `len` bytes of `chunks`, as chunks sharing their memory.
fn take_chunks(chunks: &mut VecDeque<Bytes>, mut len: usize) -> Result<Vec<Bytes>> {
    let mut taken = Vec::new();
    while len > 0 {
        let mut chunk = chunks.pop_front().ok_or_else(|| short_stream(len))?;
        if chunk.len() > len {
            chunks.push_front(chunk.split_off(len));
        }
        len -= chunk.len();
        taken.push(chunk);
    }
    Ok(taken)
}

/// Turns the Flight messages of one channel back into stream elements. Stateful: holds the
/// stream's schema and dictionaries.
pub struct ElementDecoder {
    stream: String,
    schema: Option<SchemaRef>,
    dictionaries: HashMap<i64, ArrayRef>,
}

impl ElementDecoder {
    /// A decoder for the stream named `stream` in errors (the channel and the peer).
    pub fn new(stream: impl Into<String>) -> Self {
        ElementDecoder {
            stream: stream.into(),
            schema: None,
            dictionaries: HashMap::new(),
        }
    }

    /// Decodes one message: `Some(element)` when it completes an element, `None` for a schema
    /// or dictionary message.
    pub fn decode(&mut self, data: FlightData) -> Result<Option<StreamElement>> {
        let (kind, fields) = split_header(&data.app_metadata, &self.stream)?;
        match kind {
            KIND_IPC => self.decode_ipc(data),
            KIND_WATERMARK => {
                let millis = read_array::<8>(fields, 0, &self.stream)?;
                Ok(Some(StreamElement::Watermark(Watermark(
                    i64::from_le_bytes(millis),
                ))))
            }
            KIND_BARRIER => {
                let id = u64::from_le_bytes(read_array::<8>(fields, 0, &self.stream)?);
                let timestamp_ms = i64::from_le_bytes(read_array::<8>(fields, 8, &self.stream)?);
                let kind = match read_array::<1>(fields, 16, &self.stream)?[0] {
                    0 => SnapshotKind::Checkpoint,
                    1 => SnapshotKind::Savepoint,
                    other => {
                        return Err(codec_error(
                            &self.stream,
                            format!("unknown barrier kind {other}"),
                        ));
                    }
                };
                Ok(Some(StreamElement::Barrier(CheckpointBarrier {
                    id: CheckpointId(id),
                    timestamp_ms,
                    kind,
                })))
            }
            KIND_END_OF_INPUT => Ok(Some(StreamElement::EndOfInput)),
            KIND_OPEN | KIND_CREDIT => Err(codec_error(
                &self.stream,
                format!("a message of kind {kind} in the middle of a channel's elements"),
            )),
            other => Err(codec_error(
                &self.stream,
                format!("unknown message kind {other}"),
            )),
        }
    }

    fn decode_ipc(&mut self, data: FlightData) -> Result<Option<StreamElement>> {
        let stream = &self.stream;
        let message = root_as_message(&data.data_header).map_err(|e| {
            codec_error(
                stream,
                format!("data_header is not an Arrow IPC message: {e}"),
            )
        })?;
        let arrow_error = |what: &str, source| Error::Arrow {
            context: format!("decoding {what} of Flight stream {stream}"),
            source,
        };
        match message.header_type() {
            MessageHeader::Schema => {
                let ipc_schema = message
                    .header_as_schema()
                    .ok_or_else(|| codec_error(stream, "a schema message without schema".into()))?;
                let schema = convert::try_fb_to_schema(ipc_schema)
                    .map_err(|source| arrow_error("the schema", source))?;
                self.schema = Some(Arc::new(schema));
                self.dictionaries.clear();
                Ok(None)
            }
            MessageHeader::DictionaryBatch => {
                let schema = self.schema.as_ref().ok_or_else(|| {
                    codec_error(stream, "a dictionary batch before the schema".into())
                })?;
                let dictionary = message.header_as_dictionary_batch().ok_or_else(|| {
                    codec_error(stream, "a dictionary message without dictionary".into())
                })?;
                if let Some(batch) = dictionary.data() {
                    check_buffers(ipc_buffers(batch.buffers()), data.data_body.len(), stream)?;
                }
                reader::read_dictionary(
                    &Buffer::from(data.data_body.clone()),
                    dictionary,
                    schema,
                    &mut self.dictionaries,
                    &message.version(),
                )
                .map_err(|source| arrow_error("a dictionary batch", source))?;
                Ok(None)
            }
            MessageHeader::RecordBatch => {
                let schema = self.schema.clone().ok_or_else(|| {
                    codec_error(stream, "a record batch before the schema".into())
                })?;
                let ipc_batch = message.header_as_record_batch().ok_or_else(|| {
                    codec_error(stream, "a record batch message without batch".into())
                })?;
                check_buffers(
                    ipc_buffers(ipc_batch.buffers()),
                    data.data_body.len(),
                    stream,
                )?;
                let batch = reader::read_record_batch(
                    &Buffer::from(data.data_body.clone()),
                    ipc_batch,
                    schema,
                    &self.dictionaries,
                    None,
                    &message.version(),
                )
                .map_err(|source| arrow_error("a record batch", source))?;
                Ok(Some(StreamElement::Batch(batch)))
            }
            other => Err(codec_error(
                stream,
                format!("unexpected IPC message type {other:?}"),
            )),
        }
    }
}

/// (offset, length) of the buffers of an IPC batch header.
fn ipc_buffers<'a>(
    buffers: Option<impl IntoIterator<Item = &'a arrow::ipc::Buffer>>,
) -> impl Iterator<Item = (i64, i64)> {
    buffers
        .into_iter()
        .flatten()
        .map(|buffer| (buffer.offset(), buffer.length()))
}

/// Checks that every buffer an IPC batch header points to lies inside the message body (the
/// IPC reader assumes it and would panic on a truncated body).
fn check_buffers(
    buffers: impl Iterator<Item = (i64, i64)>,
    body_len: usize,
    stream: &str,
) -> Result<()> {
    for (offset, length) in buffers {
        let end = u64::try_from(offset)
            .ok()
            .zip(u64::try_from(length).ok())
            .and_then(|(offset, length)| offset.checked_add(length));
        if end.is_none_or(|end| end > body_len as u64) {
            return Err(codec_error(
                stream,
                format!(
                    "an IPC buffer at offset {offset} of length {length} lies outside the \
                     {body_len}-byte body"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};
    use sluice_engine::ids::{AttemptNumber, JobId, SubtaskIndex};
    use sluice_engine::runtime::exchange::ChannelId;

    fn batch(rows: usize, offset: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("price", DataType::Float64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let ids: Vec<i64> = (0..rows as i64).map(|i| i + offset).collect();
        let prices: Vec<Option<f64>> = ids
            .iter()
            .map(|i| (i % 3 != 0).then_some(*i as f64 * 0.5))
            .collect();
        let names: Vec<String> = ids.iter().map(|i| format!("name-{i}")).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(Float64Array::from(prices)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    fn round_trip(compression: Compression, elements: &[StreamElement]) -> Vec<StreamElement> {
        let mut encoder = ElementEncoder::new(compression).unwrap();
        let mut messages = Vec::new();
        for element in elements {
            encoder.encode(element, &mut messages).unwrap();
        }
        let mut decoder = ElementDecoder::new("test");
        messages
            .into_iter()
            .filter_map(|m| decoder.decode(m).unwrap())
            .collect()
    }

    fn assert_same(left: &[StreamElement], right: &[StreamElement]) {
        assert_eq!(left.len(), right.len(), "{left:?} vs {right:?}");
        for (l, r) in left.iter().zip(right) {
            match (l, r) {
                (StreamElement::Batch(a), StreamElement::Batch(b)) => assert_eq!(a, b),
                (StreamElement::Watermark(a), StreamElement::Watermark(b)) => assert_eq!(a, b),
                (StreamElement::Barrier(a), StreamElement::Barrier(b)) => assert_eq!(a, b),
                (StreamElement::EndOfInput, StreamElement::EndOfInput) => {}
                _ => panic!("{l:?} != {r:?}"),
            }
        }
    }

    fn all_kinds() -> Vec<StreamElement> {
        vec![
            StreamElement::Watermark(Watermark(-5)),
            StreamElement::Batch(batch(100, 0)),
            StreamElement::Barrier(CheckpointBarrier {
                id: CheckpointId(7),
                timestamp_ms: 1_700_000_000_000,
                kind: SnapshotKind::Savepoint,
            }),
            StreamElement::Batch(batch(33, 100)),
            StreamElement::Watermark(Watermark::MAX),
            StreamElement::Barrier(CheckpointBarrier {
                id: CheckpointId(8),
                timestamp_ms: 1,
                kind: SnapshotKind::Checkpoint,
            }),
            StreamElement::EndOfInput,
        ]
    }

    #[test]
    fn every_kind_round_trips_with_each_compression() {
        let elements = all_kinds();
        for compression in [Compression::None, Compression::Lz4Frame, Compression::Zstd] {
            assert_same(&round_trip(compression, &elements), &elements);
        }
    }

    #[test]
    fn schema_is_sent_once_per_stream() {
        let mut encoder = ElementEncoder::new(Compression::None).unwrap();
        let mut messages = Vec::new();
        encoder
            .encode(&StreamElement::Batch(batch(10, 0)), &mut messages)
            .unwrap();
        encoder
            .encode(&StreamElement::Batch(batch(10, 10)), &mut messages)
            .unwrap();
        // Schema, batch, batch.
        assert_eq!(messages.len(), 3);
    }

    #[test]
    fn compression_shrinks_repetitive_batches() {
        let size = |compression| {
            let mut encoder = ElementEncoder::new(compression).unwrap();
            let mut messages = Vec::new();
            let repetitive = RecordBatch::try_new(
                Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)])),
                vec![Arc::new(Int64Array::from_iter_values(
                    (0..8192).map(|i| i % 16),
                ))],
            )
            .unwrap();
            encoder
                .encode(&StreamElement::Batch(repetitive), &mut messages)
                .unwrap();
            messages.iter().map(|m| m.data_body.len()).sum::<usize>()
        };
        let plain = size(Compression::None);
        assert!(size(Compression::Lz4Frame) < plain / 2, "{plain}");
        assert!(size(Compression::Zstd) < plain / 2, "{plain}");
    }

    #[test]
    fn empty_batches_are_never_sent() {
        let mut encoder = ElementEncoder::new(Compression::None).unwrap();
        let mut messages = Vec::new();
        encoder
            .encode(&StreamElement::Batch(batch(0, 0)), &mut messages)
            .unwrap();
        encoder
            .encode(
                &StreamElement::Batch(batch(50, 0).slice(10, 0)),
                &mut messages,
            )
            .unwrap();
        assert!(messages.is_empty());
        let elements = vec![
            StreamElement::Batch(batch(0, 0)),
            StreamElement::Watermark(Watermark(3)),
        ];
        assert_same(
            &round_trip(Compression::None, &elements),
            &[StreamElement::Watermark(Watermark(3))],
        );
    }

    #[test]
    fn sliced_batches_encode_only_the_slice() {
        let full = batch(10_000, 0);
        let slice = full.slice(5_000, 10);
        let mut encoder = ElementEncoder::new(Compression::None).unwrap();
        let mut messages = Vec::new();
        encoder
            .encode(&StreamElement::Batch(slice.clone()), &mut messages)
            .unwrap();
        let body: usize = messages.iter().map(|m| m.data_body.len()).sum();
        assert!(body < 1024, "10 sliced rows took {body} bytes");
        let back = round_trip(
            Compression::Lz4Frame,
            &[StreamElement::Batch(slice.clone())],
        );
        assert_same(&back, &[StreamElement::Batch(slice)]);
    }

    #[test]
    fn dictionaries_are_sent_and_replaced() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "color",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            false,
        )]));
        let make = |values: Vec<&str>| {
            let array: DictionaryArray<Int32Type> = values.into_iter().collect();
            RecordBatch::try_new(schema.clone(), vec![Arc::new(array)]).unwrap()
        };
        let elements = vec![
            StreamElement::Batch(make(vec!["red", "green", "red"])),
            StreamElement::Batch(make(vec!["blue", "blue"])),
            StreamElement::Batch(make(vec!["red", "yellow"])),
        ];
        assert_same(&round_trip(Compression::Zstd, &elements), &elements);
    }

    #[test]
    fn a_changed_schema_is_sent_again() {
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![1, 2]))],
        )
        .unwrap();
        let elements = vec![
            StreamElement::Batch(batch(5, 0)),
            StreamElement::Batch(other),
            StreamElement::Batch(batch(5, 5)),
        ];
        assert_same(&round_trip(Compression::None, &elements), &elements);
    }

    #[test]
    fn malformed_messages_give_clear_errors() {
        let mut decoder = ElementDecoder::new("edge 1 from 127.0.0.1:9");
        let error = decoder
            .decode(FlightData::new().with_app_metadata(vec![1u8]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("edge 1 from 127.0.0.1:9"), "{error}");
        assert!(error.contains("shorter than the 2-byte header"), "{error}");

        let error = decoder
            .decode(FlightData::new().with_app_metadata(vec![9u8, 1]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown header version 9"), "{error}");

        let error = decoder
            .decode(FlightData::new().with_app_metadata(vec![HEADER_VERSION, KIND_WATERMARK, 1]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("expected at least 8"), "{error}");

        let error = decoder
            .decode(
                FlightData::new()
                    .with_app_metadata(vec![HEADER_VERSION, KIND_IPC])
                    .with_data_header(vec![0xde, 0xad, 0xbe, 0xef]),
            )
            .unwrap_err()
            .to_string();
        assert!(error.contains("not an Arrow IPC message"), "{error}");

        // A batch whose schema never came.
        let mut encoder = ElementEncoder::new(Compression::None).unwrap();
        let mut messages = Vec::new();
        encoder
            .encode(&StreamElement::Batch(batch(3, 0)), &mut messages)
            .unwrap();
        let error = ElementDecoder::new("s")
            .decode(messages.pop().unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("record batch before the schema"), "{error}");

        // A truncated body.
        let mut fresh = ElementEncoder::new(Compression::None).unwrap();
        let mut messages = Vec::new();
        fresh
            .encode(&StreamElement::Batch(batch(300, 0)), &mut messages)
            .unwrap();
        let mut data = messages.pop().unwrap();
        data.data_body = data.data_body.slice(..data.data_body.len() / 2);
        let mut decoder = ElementDecoder::new("s");
        assert!(decoder.decode(messages.pop().unwrap()).unwrap().is_none());
        let error = decoder.decode(data).unwrap_err().to_string();
        assert!(error.contains("outside the"), "{error}");
    }

    #[test]
    fn ipc_bodies_start_aligned_in_the_encoded_message() {
        use prost::Message;
        for compression in [Compression::None, Compression::Lz4Frame, Compression::Zstd] {
            let mut encoder = ElementEncoder::new(compression).unwrap();
            let mut messages = Vec::new();
            for rows in [1, 7, 100, 8192, 20_000] {
                encoder
                    .encode(&StreamElement::Batch(batch(rows, 0)), &mut messages)
                    .unwrap();
            }
            for message in messages.iter().filter(|m| !m.data_body.is_empty()) {
                // data_body is the last field, so it ends the encoded message.
                let encoded = message.encode_to_vec();
                let offset = encoded.len() - message.data_body.len();
                assert_eq!(&encoded[offset..], &message.data_body[..]);
                assert_eq!(
                    offset % BODY_ALIGNMENT,
                    0,
                    "{compression:?}: body at {offset}"
                );
            }
        }
    }

    #[test]
    fn open_and_credit_messages() {
        let ticket = ChannelTicket {
            job: JobId("ab".into()),
            attempt: AttemptNumber(0),
            channel: ChannelId {
                edge: 2,
                from: SubtaskIndex(0),
                to: SubtaskIndex(1),
            },
        };
        assert_eq!(
            parse_open(&open_message(&ticket, "10.0.0.7:6121"), "s").unwrap(),
            (ticket, "10.0.0.7:6121".to_string())
        );
        assert_eq!(parse_credit(&credit_message(17), "s").unwrap(), 17);
        let error = parse_open(&credit_message(1), "peer x")
            .unwrap_err()
            .to_string();
        assert!(error.contains("must open a channel"), "{error}");
        let error = ElementDecoder::new("s")
            .decode(credit_message(1))
            .unwrap_err()
            .to_string();
        assert!(error.contains("middle of a channel"), "{error}");
        assert_eq!(Compression::parse("lz4").unwrap(), Compression::Lz4Frame);
        assert!(Compression::parse("snappy").is_err());
    }
}
