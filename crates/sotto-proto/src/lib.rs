//! Sotto's wire protocol: the frame codec and every type that crosses the wire.
//!
//! This crate is sans-IO: it turns bytes into typed frames and back, and knows
//! nothing about sockets or TLS. It is the only crate that knows the encoding
//! (a length-prefixed binary frame around a MessagePack body); everything else
//! works with the types defined here. See `docs/PROTOCOL.md` for the frame
//! layout, every request, reply and event, and every limit.

pub mod body;
pub mod cluster;
pub mod e2e;
pub mod frame;
pub mod limits;
pub mod messages;
pub mod names;

pub use body::{FileBody, MessageBody, SealedBox};
pub use frame::{
    ClientFrame, DecodeError, EncodeError, FrameDecoder, FrameError, FrameKind, RawFrame,
    ServerFrame, SharedEvent,
};
pub use messages::*;
pub use names::{DeviceId, GroupName, NameError, Password, Username};

/// The protocol version this build speaks. A client whose hello carries a
/// different version is told to upgrade and disconnected.
pub const PROTOCOL_VERSION: u32 = 5;

/// The lobby's room id: the same on every server.
pub const LOBBY_ROOM_ID: u64 = 1;
