//! The request direction of a channel's `DoExchange` call, framed without copying batch bodies.
//!
//! tonic's codec serialises every message into a buffer of its own, which copies each batch's
//! IPC body once more after the IPC writer has already copied it out of the batch's arrays.
//! Here a [`FlightMessage`] becomes chunks of the HTTP/2 request body: the gRPC length prefix
//! with the protobuf fields before `data_body` (a few hundred bytes, written into a small
//! buffer), then the body's chunks, which are the batch's own Arrow buffers, and HTTP/2 hands
//! them to the socket with vectored writes: a batch is copied only by the kernel. The bytes on the wire are exactly those tonic's codec
//! would send, so the receiver is an ordinary Flight server. The response direction (credit
//! grants) is decoded by tonic as usual.
//!
//! Called from the channel's network task ([`super::outbound`]); nothing here runs on a slot
//! thread.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use crate::codec::FlightMessage;
use arrow_flight::FlightData;
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use http_body::Frame;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use tonic::Status;
use tonic::codec::{DecodeBuf, Decoder, Streaming};
use tonic::codegen::Service;
use tonic::codegen::http::{self, HeaderValue, header};
use tonic::transport::Channel;

/// The gRPC path of Flight's `DoExchange`.
const DO_EXCHANGE_PATH: &str = "/arrow.flight.protocol.FlightService/DoExchange";
/// The field number of `FlightData.data_body`.
const DATA_BODY_FIELD: u32 = 1000;

/// Starts a `DoExchange` call on `channel` that sends `messages` and returns the stream of
/// response messages. The error describes what failed, with its causes ("connection refused").
pub(super) async fn do_exchange(
    mut channel: Channel,
    messages: BoxStream<'static, FlightMessage>,
    max_decoding_message_size: usize,
) -> Result<Streaming<FlightData>, String> {
    let mut request = http::Request::new(tonic::body::Body::new(RequestBody {
        messages,
        body: Vec::new().into_iter(),
    }));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = http::Uri::from_static(DO_EXCHANGE_PATH);
    *request.version_mut() = http::Version::HTTP_2;
    let headers = request.headers_mut();
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    futures::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(|e| describe_error(&e))?;
    let response = channel
        .call(request)
        .await
        .map_err(|e| describe_error(&e))?;
    // An error before any message comes as a response with only headers ("trailers-only").
    if let Some(status) = Status::from_header_map(response.headers())
        && status.code() != tonic::Code::Ok
    {
        return Err(describe_status(&status));
    }
    let status_code = response.status();
    Ok(Streaming::new_response(
        FlightDataDecoder,
        response.into_body(),
        status_code,
        None,
        Some(max_decoding_message_size),
    ))
}

/// An error with its cause chain.
pub(super) fn describe_error(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// A status with its cause chain (the transport error says "connection refused").
pub(super) fn describe_status(status: &Status) -> String {
    let mut message = format!("{:?}: {}", status.code(), status.message());
    if let Some(cause) = std::error::Error::source(status) {
        message.push_str(": ");
        message.push_str(&describe_error(cause));
    }
    message
}

/// The HTTP/2 request body: each message as its framing, then its body.
struct RequestBody {
    messages: BoxStream<'static, FlightMessage>,
    /// The rest of the body of the message whose framing was yielded last.
    body: std::vec::IntoIter<Bytes>,
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.body.next() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        let Some(message) = ready!(this.messages.poll_next_unpin(cx)) else {
            return Poll::Ready(None);
        };
        let framing = framing(&message);
        this.body = message.body.into_iter();
        Poll::Ready(Some(Ok(Frame::data(framing))))
    }
}

/// The gRPC framing of `message`: the length prefix, every protobuf field but `data_body`
/// (which `message.data` leaves empty), then `data_body`'s key and length. Followed by the
/// body's chunks, it is exactly the gRPC message tonic's codec would write: `data_body` has
/// the highest field number, so protobuf encoding puts it last.
fn framing(message: &FlightMessage) -> Bytes {
    let body_len = message.body_len();
    let head_len = message.data.encoded_len();
    let body_field_len = if body_len == 0 {
        // proto3 leaves out empty bytes fields.
        0
    } else {
        prost::encoding::key_len(DATA_BODY_FIELD) + encoded_len_varint(body_len as u64)
    };
    let message_len = head_len + body_field_len + body_len;
    let mut framing = BytesMut::with_capacity(5 + head_len + body_field_len);
    // Uncompressed, then the length; gRPC limits a message to u32::MAX bytes, as does the
    // receiver's `max_message_bytes`, far below that.
    framing.put_u8(0);
    framing.put_u32(u32::try_from(message_len).unwrap_or(u32::MAX));
    message
        .data
        .encode(&mut framing)
        .expect("a BytesMut grows to take any message");
    if body_len > 0 {
        encode_key(DATA_BODY_FIELD, WireType::LengthDelimited, &mut framing);
        encode_varint(body_len as u64, &mut framing);
    }
    framing.freeze()
}

/// Decodes the response direction's messages (credit grants).
struct FlightDataDecoder;

impl Decoder for FlightDataDecoder {
    type Item = FlightData;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<FlightData>, Status> {
        FlightData::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(format!("a malformed FlightData message: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_and_body_are_the_message_tonic_would_send() {
        let messages = [
            FlightData::new()
                .with_data_header(vec![7u8; 300])
                .with_app_metadata(vec![1u8, 0, 0, 0])
                .with_data_body(vec![9u8; 70_000]),
            FlightData::new().with_app_metadata(vec![1u8, 3]),
            FlightData::new()
                .with_descriptor(arrow_flight::FlightDescriptor::new_path(vec!["x".into()]))
                .with_app_metadata(vec![1u8, 4]),
        ];
        for message in messages {
            let encoded = message.encode_to_vec();
            let mut data = message;
            let body = std::mem::take(&mut data.data_body);
            // The body in uneven chunks, as the IPC writer leaves it.
            let body = if body.len() > 1000 {
                vec![body.slice(..10), body.slice(10..1000), body.slice(1000..)]
            } else {
                vec![body]
            };
            let message = FlightMessage { data, body };
            let mut wire = framing(&message).to_vec();
            for chunk in &message.body {
                wire.extend_from_slice(chunk);
            }
            assert_eq!(wire[0], 0);
            let len = u32::from_be_bytes([wire[1], wire[2], wire[3], wire[4]]) as usize;
            assert_eq!(len, encoded.len());
            assert_eq!(&wire[5..], &encoded[..]);
        }
    }
}
