//! What the client reports to its front end, and how server events become
//! those reports.
//!
//! [`decode`] is pure: it turns one [`EventBody`] into a [`ClientEvent`], or
//! into a sealed message or file that the actor finishes (it numbers sealed
//! messages and saves files). Live events and history go through the same
//! function, so both display the same way.

use std::path::PathBuf;

use sotto_proto::{
    DeviceId, EventBody, EventKind, FileBody, GroupName, MessageBody, PresenceChange, RoomContent,
    RoomEvent, RoomRef, SealedBox, Username,
};

/// Something for the front end to show. Every string a peer or the server
/// chose is made safe to show first ([`crate::sanitize`]): a hostile
/// sender cannot drive the terminal, reorder text or fake a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Lobby text (your own lobby messages are not echoed).
    Lobby {
        from: Username,
        text: String,
        ts: i64,
    },
    /// A private message; `peer` is the other party (`from` is you when you
    /// sent it from another device).
    Private {
        from: Username,
        peer: Username,
        text: String,
        ts: i64,
    },
    /// A group message.
    Group {
        group: GroupName,
        from: Username,
        text: String,
        ts: i64,
    },
    /// A sealed message; open it with [`crate::Client::open_sealed`]`(id, ...)`.
    Sealed {
        id: u64,
        from: Username,
        group: Option<GroupName>,
        ts: i64,
    },
    /// A file, saved at `path` in the downloads directory.
    File {
        from: Username,
        group: Option<GroupName>,
        name: String,
        path: PathBuf,
        size: u64,
        ts: i64,
    },
    /// A file waiting for the user's answer: `@accept ID` saves it,
    /// `@reject ID` discards it.
    FileOffered {
        id: u64,
        from: Username,
        group: Option<GroupName>,
        name: String,
        size: u64,
        ts: i64,
    },
    /// A received file that was not kept (too many waiting, or rejected).
    FileRefused {
        from: Username,
        group: Option<GroupName>,
        name: String,
        size: u64,
        reason: String,
        ts: i64,
    },
    /// `by` created `group` with `members`.
    GroupCreated {
        group: GroupName,
        by: Username,
        members: Vec<Username>,
    },
    /// `by` added `members` to `group`.
    MembersAdded {
        group: GroupName,
        by: Username,
        members: Vec<Username>,
    },
    /// `by` (the owner) invited `members` to `group`.
    MembersInvited {
        group: GroupName,
        by: Username,
        members: Vec<Username>,
    },
    /// `user` accepted an invitation and joined `group`.
    MemberJoined { group: GroupName, user: Username },
    /// `user` declined an invitation to `group`.
    InvitationDeclined { group: GroupName, user: Username },
    /// `by` invited you to `group`: `@group accept` or `@group decline`.
    /// `auto_join` when you let verified contacts add you (`@auto groups
    /// on`) and `by` is one: the client is joining by itself.
    Invited {
        group: GroupName,
        by: Username,
        auto_join: bool,
        /// The group's room the invitation is for.
        room_id: u64,
    },
    /// `by` removed `members` from `group`.
    MembersKicked {
        group: GroupName,
        by: Username,
        members: Vec<Username>,
    },
    /// `user` left `group`; `new_owner` is set when the owner left.
    MemberLeft {
        group: GroupName,
        user: Username,
        new_owner: Option<Username>,
    },
    /// `by` deleted `group`.
    GroupDeleted { group: GroupName, by: Username },
    /// `by` removed you from `group`.
    RemovedFromGroup { group: GroupName, by: Username },
    /// A user came online, went offline or changed status.
    Presence {
        user: Username,
        change: PresenceChange,
    },
    /// Every message stored while you were offline has been delivered.
    CaughtUp,
    /// More lobby messages were sent while this device was away than it
    /// is shown when it comes back: `count` older ones are not shown
    /// (`@history` has them).
    LobbyMissed { count: u64 },
    /// A message that could not be decoded (shown, never dropped silently).
    Undecodable {
        from: Username,
        reason: String,
        ts: i64,
    },
    /// The server is shutting down.
    Shutdown { message: String },
    /// In a history reply, before its first entry: older messages of a
    /// conversation were deleted by the server's retention policy; the
    /// oldest one it still keeps is from `oldest_kept`.
    HistoryPruned { oldest_kept: i64 },
    /// Something about a contact's keys the user should know (a new
    /// device, changed keys, a lost verification).
    Security { message: String },
    /// A file being sent (number `id` of this session): `sent` of `total`
    /// bytes written to the server so far. Reports may be skipped when the
    /// front end is behind; the send's own result says when it is stored.
    Sending {
        id: u64,
        name: String,
        sent: u64,
        total: u64,
    },
    /// The connection dropped; the client dials again in `retry_in_ms`
    /// (try number `attempt`). Messages sent meanwhile wait and go once
    /// it is back.
    Reconnecting {
        reason: String,
        attempt: u32,
        retry_in_ms: u64,
    },
    /// Connected and logged in again; what was missed follows, then
    /// [`ClientEvent::CaughtUp`].
    Reconnected {
        online: Vec<sotto_proto::UserPresence>,
    },
    /// The connection is gone for good; this is the last event.
    Disconnected { reason: String },
}

impl ClientEvent {
    /// The server time of a message or file event (milliseconds since the
    /// Unix epoch); `None` for events that carry none.
    pub fn ts(&self) -> Option<i64> {
        match self {
            ClientEvent::Lobby { ts, .. }
            | ClientEvent::Private { ts, .. }
            | ClientEvent::Group { ts, .. }
            | ClientEvent::Sealed { ts, .. }
            | ClientEvent::File { ts, .. }
            | ClientEvent::FileOffered { ts, .. }
            | ClientEvent::FileRefused { ts, .. }
            | ClientEvent::Undecodable { ts, .. } => Some(*ts),
            _ => None,
        }
    }
}

/// A room event's place in its timeline, for de-duplication and acks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub room_id: u64,
    pub seq: u64,
    /// Lobby events are not acknowledged; every other room's are.
    pub ackable: bool,
}

impl Position {
    /// The position of a room event, `None` for other events.
    pub fn of(body: &EventBody) -> Option<Self> {
        match &body.kind {
            EventKind::Room(event) => Some(Self {
                room_id: event.room_id,
                seq: event.seq,
                ackable: !matches!(event.room, RoomRef::Lobby),
            }),
            _ => None,
        }
    }
}

/// An event decoded as far as possible without the actor's state.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// Ready to show.
    Ready(ClientEvent),
    /// A sealed message, to be numbered and kept for [`crate::Client::open_sealed`].
    Sealed {
        from: Username,
        group: Option<GroupName>,
        ts: i64,
        sealed: SealedBox,
    },
    /// A file, to be saved or offered.
    File {
        from: Username,
        /// The sending device (the one whose room key decrypted it).
        device: DeviceId,
        group: Option<GroupName>,
        ts: i64,
        file: FileBody,
    },
    /// The server's echo of a message this very device sent: not shown.
    OwnEcho,
    /// A key directory notice (keys claimed, a contact's new device) or a
    /// to-device message: for the end-to-end layer, nothing to show.
    KeyNotice,
}

/// Who is receiving, to recognize echoes and the other party of a direct room.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Me<'a> {
    pub user: &'a Username,
    pub device: &'a DeviceId,
    /// Hide echoes of this device's own messages (live events); history
    /// shows them.
    pub hide_own_echo: bool,
}

/// Decodes one server event.
pub(crate) fn decode(me: Me<'_>, body: EventBody) -> Decoded {
    let ts = body.ts;
    match body.kind {
        EventKind::Room(event) => decode_room(me, event, ts),
        EventKind::Presence { user, change } => {
            Decoded::Ready(ClientEvent::Presence { user, change })
        }
        EventKind::CaughtUp => Decoded::Ready(ClientEvent::CaughtUp),
        EventKind::Shutdown { message } => Decoded::Ready(ClientEvent::Shutdown { message }),
        EventKind::KeyCount { .. } | EventKind::DevicesChanged { .. } => Decoded::KeyNotice,
        EventKind::DeviceRemoved { by } => Decoded::Ready(ClientEvent::Security {
            message: format!(
                "this device was removed from your account (by device {by}); it is signed out, \
                 and logging in again from here makes a new device"
            ),
        }),
    }
}

fn decode_room(me: Me<'_>, event: RoomEvent, ts: i64) -> Decoded {
    let RoomEvent {
        room,
        sender,
        content,
        ..
    } = event;
    let undecodable = |from: Username, reason: &str| {
        Decoded::Ready(ClientEvent::Undecodable {
            from,
            reason: reason.to_owned(),
            ts,
        })
    };
    let ready = Decoded::Ready;
    match (room, content) {
        // This device's to-device queue carries room keys for the
        // end-to-end layer: nothing to show.
        (RoomRef::Inbox { .. }, _) => Decoded::KeyNotice,
        (RoomRef::Lobby, RoomContent::Text { text }) => ready(ClientEvent::Lobby {
            from: sender,
            text,
            ts,
        }),
        (RoomRef::Direct { users: (a, b) }, RoomContent::Envelope { device, payload }) => {
            if me.hide_own_echo && sender == *me.user && device == *me.device {
                return Decoded::OwnEcho;
            }
            let peer = if a != *me.user { a } else { b };
            decode_envelope(sender, device, None, &payload, ts, |from, text| {
                ClientEvent::Private {
                    from,
                    peer,
                    text,
                    ts,
                }
            })
        }
        (RoomRef::Group { name }, RoomContent::Envelope { device, payload }) => {
            if me.hide_own_echo && sender == *me.user && device == *me.device {
                return Decoded::OwnEcho;
            }
            let group = name.clone();
            decode_envelope(sender, device, Some(name), &payload, ts, |from, text| {
                ClientEvent::Group {
                    group,
                    from,
                    text,
                    ts,
                }
            })
        }
        (RoomRef::Group { name }, RoomContent::GroupCreated { members }) => {
            ready(ClientEvent::GroupCreated {
                group: name,
                by: sender,
                members,
            })
        }
        (RoomRef::Group { name }, RoomContent::MembersAdded { members }) => {
            ready(ClientEvent::MembersAdded {
                group: name,
                by: sender,
                members,
            })
        }
        (RoomRef::Group { name }, RoomContent::MembersInvited { members }) => {
            ready(ClientEvent::MembersInvited {
                group: name,
                by: sender,
                members,
            })
        }
        (RoomRef::Group { name }, RoomContent::MemberJoined) => ready(ClientEvent::MemberJoined {
            group: name,
            user: sender,
        }),
        (RoomRef::Group { name }, RoomContent::InvitationDeclined) => {
            ready(ClientEvent::InvitationDeclined {
                group: name,
                user: sender,
            })
        }
        (RoomRef::Notices { .. }, RoomContent::Invited { group, room_id }) => {
            ready(ClientEvent::Invited {
                group,
                by: sender,
                auto_join: false,
                room_id,
            })
        }
        (RoomRef::Group { name }, RoomContent::MembersKicked { members }) => {
            ready(ClientEvent::MembersKicked {
                group: name,
                by: sender,
                members,
            })
        }
        (RoomRef::Group { name }, RoomContent::MemberLeft { new_owner }) => {
            ready(ClientEvent::MemberLeft {
                group: name,
                user: sender,
                new_owner,
            })
        }
        // Notices normally arrive in the user's notices room; accept them in
        // any room since the group is named in the content.
        (_, RoomContent::GroupDeleted { group }) => {
            ready(ClientEvent::GroupDeleted { group, by: sender })
        }
        (_, RoomContent::RemovedFromGroup { group }) => {
            ready(ClientEvent::RemovedFromGroup { group, by: sender })
        }
        (room, _) => {
            let reason = match room {
                RoomRef::Lobby => "unexpected content in the lobby",
                RoomRef::Direct { .. } => "unexpected content in a private conversation",
                RoomRef::Group { .. } => "unexpected content in a group",
                RoomRef::Notices { .. } => "unexpected content in your notices",
                RoomRef::Inbox { .. } => "unexpected content in this device's key inbox",
            };
            undecodable(sender, reason)
        }
    }
}

/// Decodes an envelope payload; `text` builds the event for plain text.
fn decode_envelope(
    from: Username,
    device: DeviceId,
    group: Option<GroupName>,
    payload: &[u8],
    ts: i64,
    text: impl FnOnce(Username, String) -> ClientEvent,
) -> Decoded {
    match MessageBody::decode(payload) {
        Ok(MessageBody::Text { text: body }) => Decoded::Ready(text(from, body)),
        Ok(MessageBody::Sealed(sealed)) => Decoded::Sealed {
            from,
            group,
            ts,
            sealed,
        },
        Ok(MessageBody::File(file)) => Decoded::File {
            from,
            device,
            group,
            ts,
            file,
        },
        Err(e) => Decoded::Ready(ClientEvent::Undecodable {
            from,
            reason: format!("cannot decode message: {e}"),
            ts,
        }),
    }
}

impl ClientEvent {
    /// The event with every string a peer or the server chose made safe to
    /// show ([`crate::sanitize`]): message text keeps its lines, everything
    /// else is one line. Every event reaches the front end through this.
    pub(crate) fn sanitized(self) -> Self {
        use crate::sanitize::{line, text};
        match self {
            ClientEvent::Lobby { from, text: t, ts } => ClientEvent::Lobby {
                from,
                text: text(&t),
                ts,
            },
            ClientEvent::Private {
                from,
                peer,
                text: t,
                ts,
            } => ClientEvent::Private {
                from,
                peer,
                text: text(&t),
                ts,
            },
            ClientEvent::Group {
                group,
                from,
                text: t,
                ts,
            } => ClientEvent::Group {
                group,
                from,
                text: text(&t),
                ts,
            },
            ClientEvent::File {
                from,
                group,
                name,
                path,
                size,
                ts,
            } => ClientEvent::File {
                from,
                group,
                name: line(&name),
                path,
                size,
                ts,
            },
            ClientEvent::FileOffered {
                id,
                from,
                group,
                name,
                size,
                ts,
            } => ClientEvent::FileOffered {
                id,
                from,
                group,
                name: line(&name),
                size,
                ts,
            },
            ClientEvent::FileRefused {
                from,
                group,
                name,
                size,
                reason,
                ts,
            } => ClientEvent::FileRefused {
                from,
                group,
                name: line(&name),
                size,
                reason: line(&reason),
                ts,
            },
            ClientEvent::Undecodable { from, reason, ts } => ClientEvent::Undecodable {
                from,
                reason: line(&reason),
                ts,
            },
            ClientEvent::Shutdown { message } => ClientEvent::Shutdown {
                message: line(&message),
            },
            ClientEvent::HistoryPruned { oldest_kept } => {
                ClientEvent::HistoryPruned { oldest_kept }
            }
            ClientEvent::Sending {
                id,
                name,
                sent,
                total,
            } => ClientEvent::Sending {
                id,
                name: line(&name),
                sent,
                total,
            },
            ClientEvent::Security { message } => ClientEvent::Security {
                message: line(&message),
            },
            ClientEvent::Disconnected { reason } => ClientEvent::Disconnected {
                reason: line(&reason),
            },
            ClientEvent::Reconnecting {
                reason,
                attempt,
                retry_in_ms,
            } => ClientEvent::Reconnecting {
                reason: line(&reason),
                attempt,
                retry_in_ms,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests;
