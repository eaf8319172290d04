//! The frame codec.
//!
//! Every frame is `[len: u32 big-endian][kind: u8][body]`, where `len` counts
//! the kind byte and the body. The decoder checks `len` against a maximum
//! before it waits for (or allocates) the body, and consumes bytes from the
//! buffer only once a whole frame is present. Bodies by kind:
//!
//! | kind | direction | body |
//! |------|-----------|------|
//! | 1 Hello | client → server | MessagePack [`Hello`] |
//! | 2 HelloReply | server → client | MessagePack [`HelloReply`] |
//! | 3 Request | client → server | request id `u64` BE, MessagePack [`Request`] |
//! | 4 Reply | server → client | request id `u64` BE, MessagePack `Result<Response, ErrorReply>` |
//! | 5 Event | server → client | sequence `u64` BE, MessagePack [`EventBody`] |
//! | 6 Ack | client → server | MessagePack [`Ack`] |

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Serialize;

use crate::limits::MAX_FRAME_LEN;
use crate::messages::{
    Ack, ErrorCode, ErrorReply, EventBody, Hello, HelloReply, Request, Response,
};

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

/// The kind byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Hello = 1,
    HelloReply = 2,
    Request = 3,
    Reply = 4,
    Event = 5,
    Ack = 6,
}

impl FrameKind {
    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => FrameKind::Hello,
            2 => FrameKind::HelloReply,
            3 => FrameKind::Request,
            4 => FrameKind::Reply,
            5 => FrameKind::Event,
            6 => FrameKind::Ack,
            _ => return None,
        })
    }
}

/// A frame split off the stream but not yet decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub kind: FrameKind,
    pub body: Bytes,
}

/// A framing error: the stream cannot be trusted past this point, so the
/// connection should be closed (after an error reply where possible).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("empty frame")]
    Empty,
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
}

/// A frame whose body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("a {0:?} frame is not valid in this direction")]
    WrongDirection(FrameKind),
    #[error("frame body is truncated")]
    Truncated,
    /// The body is not a valid message. `request_id` is set when the frame
    /// was a request whose id could be read, so the error can be answered.
    #[error("malformed frame body: {reason}")]
    Malformed {
        request_id: Option<u64>,
        reason: String,
    },
}

/// A value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("encoded frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("cannot encode: {0}")]
    Serialize(String),
}

/// Splits frames off a byte buffer (sans-IO).
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_len: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(MAX_FRAME_LEN)
    }
}

impl FrameDecoder {
    /// A decoder that rejects frames longer than `max_len`.
    pub fn new(max_len: usize) -> Self {
        Self { max_len }
    }

    /// The current limit.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Changes the limit (e.g. after login).
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// How many bytes the frame at the front of `buf` needs in total, once
    /// its length prefix is known and valid: lets the reader reserve exactly.
    pub fn needed(&self, buf: &[u8]) -> Option<usize> {
        let prefix: [u8; LEN_PREFIX] = buf.get(..LEN_PREFIX)?.try_into().ok()?;
        let len = u32::from_be_bytes(prefix) as usize;
        (len <= self.max_len).then_some(LEN_PREFIX + len)
    }

    /// Takes one whole frame off the front of `buf`, `Ok(None)` if more bytes
    /// are needed. Nothing is consumed unless a whole frame is returned.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<RawFrame>, FrameError> {
        let Some(prefix) = buf.get(..LEN_PREFIX) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; LEN_PREFIX];
        len_bytes.copy_from_slice(prefix);
        let len = u32::from_be_bytes(len_bytes) as usize;
        if len > self.max_len {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_len,
            });
        }
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if buf.len() < LEN_PREFIX + len {
            return Ok(None);
        }
        let kind_byte = buf[LEN_PREFIX];
        let kind = FrameKind::from_byte(kind_byte).ok_or(FrameError::UnknownKind(kind_byte))?;
        buf.advance(LEN_PREFIX + 1);
        let body = buf.split_to(len - 1).freeze();
        Ok(Some(RawFrame { kind, body }))
    }
}

/// Writes a frame with an optional `u64` header and a MessagePack body.
fn encode_frame<T: Serialize + ?Sized>(
    dst: &mut BytesMut,
    kind: FrameKind,
    header: Option<u64>,
    value: &T,
) -> Result<(), EncodeError> {
    let start = dst.len();
    dst.put_u32(0);
    dst.put_u8(kind as u8);
    if let Some(header) = header {
        dst.put_u64(header);
    }
    let mut writer = dst.writer();
    let result = rmp_serde::encode::write(&mut writer, value);
    let dst = writer.into_inner();
    if let Err(e) = result {
        dst.truncate(start);
        return Err(EncodeError::Serialize(e.to_string()));
    }
    finish_frame(dst, start)
}

/// Patches the length prefix of the frame starting at `start`.
fn finish_frame(dst: &mut BytesMut, start: usize) -> Result<(), EncodeError> {
    let len = dst.len() - start - LEN_PREFIX;
    if len > MAX_FRAME_LEN {
        dst.truncate(start);
        return Err(EncodeError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    // `len <= MAX_FRAME_LEN`, which fits in a u32.
    let len = len as u32;
    dst[start..start + LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn from_msgpack<T: serde::de::DeserializeOwned>(
    body: &[u8],
    request_id: Option<u64>,
) -> Result<T, DecodeError> {
    rmp_serde::from_slice(body).map_err(|e| DecodeError::Malformed {
        request_id,
        reason: e.to_string(),
    })
}

fn split_u64(body: &Bytes) -> Result<(u64, &[u8]), DecodeError> {
    let head: [u8; 8] = body
        .get(..8)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecodeError::Truncated)?;
    Ok((u64::from_be_bytes(head), &body[8..]))
}

/// A frame a client sends.
#[derive(Debug, Clone)]
pub enum ClientFrame {
    Hello(Hello),
    Request { id: u64, request: Request },
    Ack(Ack),
}

impl ClientFrame {
    /// Decodes a raw frame received by the server.
    pub fn decode(raw: &RawFrame) -> Result<Self, DecodeError> {
        match raw.kind {
            FrameKind::Hello => Ok(ClientFrame::Hello(from_msgpack(&raw.body, None)?)),
            FrameKind::Request => {
                let (id, rest) = split_u64(&raw.body)?;
                Ok(ClientFrame::Request {
                    id,
                    request: from_msgpack(rest, Some(id))?,
                })
            }
            FrameKind::Ack => Ok(ClientFrame::Ack(from_msgpack(&raw.body, None)?)),
            other => Err(DecodeError::WrongDirection(other)),
        }
    }

    /// Appends this frame to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            ClientFrame::Hello(hello) => encode_frame(dst, FrameKind::Hello, None, hello),
            ClientFrame::Request { id, request } => {
                encode_frame(dst, FrameKind::Request, Some(*id), request)
            }
            ClientFrame::Ack(ack) => encode_frame(dst, FrameKind::Ack, None, ack),
        }
    }
}

/// A frame the server sends.
#[derive(Debug, Clone)]
pub enum ServerFrame {
    HelloReply(HelloReply),
    Reply {
        id: u64,
        result: Result<Response, ErrorReply>,
    },
    Event {
        seq: u64,
        body: EventBody,
    },
}

impl ServerFrame {
    /// Decodes a raw frame received by a client.
    pub fn decode(raw: &RawFrame) -> Result<Self, DecodeError> {
        match raw.kind {
            FrameKind::HelloReply => Ok(ServerFrame::HelloReply(from_msgpack(&raw.body, None)?)),
            FrameKind::Reply => {
                let (id, rest) = split_u64(&raw.body)?;
                Ok(ServerFrame::Reply {
                    id,
                    result: from_msgpack(rest, None)?,
                })
            }
            FrameKind::Event => {
                let (seq, rest) = split_u64(&raw.body)?;
                Ok(ServerFrame::Event {
                    seq,
                    body: from_msgpack(rest, None)?,
                })
            }
            other => Err(DecodeError::WrongDirection(other)),
        }
    }

    /// Appends this frame to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            ServerFrame::HelloReply(reply) => encode_frame(dst, FrameKind::HelloReply, None, reply),
            ServerFrame::Reply { id, result } => {
                encode_frame(dst, FrameKind::Reply, Some(*id), result)
            }
            ServerFrame::Event { seq, body } => write_event(dst, *seq, &SharedEvent::encode(body)?),
        }
    }
}

/// Appends the reply to request `id`. A reply that cannot be framed (too
/// large, say) is replaced by an `internal` error reply to the same request,
/// so that no request goes unanswered; the error is returned for the logs.
pub fn encode_reply(
    dst: &mut BytesMut,
    id: u64,
    result: Result<Response, ErrorReply>,
) -> Result<(), EncodeError> {
    let Err(e) = (ServerFrame::Reply { id, result }).encode(dst) else {
        return Ok(());
    };
    let refusal = ErrorReply::new(
        ErrorCode::Internal,
        format!("the server could not send its answer: {e}"),
    );
    (ServerFrame::Reply {
        id,
        result: Err(refusal),
    })
    .encode(dst)?;
    Err(e)
}

/// An event body encoded once, to be framed for many recipients: each
/// connection prepends only its own sequence number to the same bytes.
/// Also the form in which the server stores timeline entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedEvent(Bytes);

impl SharedEvent {
    /// Encodes an event body.
    pub fn encode(body: &EventBody) -> Result<Self, EncodeError> {
        let bytes = rmp_serde::to_vec(body).map_err(|e| EncodeError::Serialize(e.to_string()))?;
        Ok(Self(Bytes::from(bytes)))
    }

    /// Wraps bytes previously produced by [`SharedEvent::encode`] (for
    /// example read back from storage). They are checked when decoded.
    pub fn from_encoded(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// The encoded body.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Decodes the body again.
    pub fn decode(&self) -> Result<EventBody, DecodeError> {
        from_msgpack(&self.0, None)
    }
}

/// Appends an event frame with sequence `seq` around a shared body.
pub fn write_event(dst: &mut BytesMut, seq: u64, event: &SharedEvent) -> Result<(), EncodeError> {
    let start = dst.len();
    dst.reserve(LEN_PREFIX + 1 + 8 + event.0.len());
    dst.put_u32(0);
    dst.put_u8(FrameKind::Event as u8);
    dst.put_u64(seq);
    dst.extend_from_slice(&event.0);
    finish_frame(dst, start)
}

#[cfg(test)]
mod tests;
