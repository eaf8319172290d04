//! Requests, replies and events: the typed contents of frames.
//!
//! Clients send [`Hello`] once, then [`Request`]s (each with a request id and
//! exactly one reply) and [`Ack`]s (no reply). The server answers the hello
//! with a [`HelloReply`], each request with a [`Response`] or an
//! [`ErrorReply`], and pushes [`EventBody`]s in per-connection sequence.

use serde::{Deserialize, Serialize};

use crate::e2e::{DeviceKeys, SignedOneTimeKey};
use crate::names::{DeviceId, GroupName, Password, Username};

/// First frame a client sends. Its encoding never changes between protocol
/// versions, so any server can tell any client to upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The [`crate::PROTOCOL_VERSION`] the client speaks.
    pub version: u32,
    /// Free-form client name and version, for logs.
    pub client: String,
}

/// The server's answer to [`Hello`]. Stable across versions like `Hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    /// The protocol version the server speaks.
    pub version: u32,
    /// Server software name and version.
    pub server: String,
    /// What the client must do next, or why it cannot go on.
    pub result: Result<HelloOk, ErrorReply>,
}

/// What a server tells a client whose hello it accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloOk {
    /// The login must carry the server password.
    pub server_password_required: bool,
    /// Unknown usernames are registered on first login.
    pub registration_open: bool,
    /// This server's identity: random, made once when its database was
    /// created, the same under every address and port it is reached at
    /// (clients keep their device and local store per server id).
    #[serde(default)]
    pub server_id: ServerId,
}

/// A server's identity (16 random bytes), as [`HelloOk::server_id`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServerId(#[serde(with = "serde_bytes")] pub [u8; 16]);

impl ServerId {
    /// Lower-case hex, for file names.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A position in the history order (time, room, position in the room):
/// [`Request::History`] with `before` returns events strictly older.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HistoryCursor {
    /// Server time of the event, milliseconds since the Unix epoch.
    pub ts: i64,
    /// The event's room.
    pub room_id: u64,
    /// The event's position in its room.
    pub seq: u64,
}

/// A client request. Every request gets exactly one reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Log in or register on this connection. With an OPAQUE credential the
    /// server answers [`Response::Challenge`] and the login ends with
    /// [`Request::LoginFinish`].
    Login(Login),
    /// The client's last OPAQUE message of a login or registration: the
    /// login's finalization, or the registration's upload. Answered with
    /// [`Response::LoggedIn`].
    LoginFinish { message: OpaqueMessage },
    /// Change the account password: an OPAQUE login with the old password
    /// (`old`; `None` only right after a [`Credential::LegacyPassword`]
    /// login on this connection, to move the account over) and a
    /// registration of the new one (`new`). Answered with
    /// [`Response::PasswordChallenge`], then [`Request::PasswordFinish`].
    PasswordStart {
        old: Option<OpaqueMessage>,
        new: OpaqueMessage,
    },
    /// The last messages of a password change: the old password's login
    /// finalization and the new password's registration upload. Answered
    /// with [`Response::Done`] once the new record is stored.
    PasswordFinish {
        old: Option<OpaqueMessage>,
        new: OpaqueMessage,
    },
    /// Post plain text to the lobby, which every user sees.
    SendLobby { text: String },
    /// Send an opaque payload to one user (a direct room).
    SendDirect {
        to: Username,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Send an opaque payload to a group the sender belongs to.
    SendGroup {
        group: GroupName,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Create a group owned by the sender, with the sender and `members`.
    GroupCreate {
        group: GroupName,
        members: Vec<Username>,
    },
    /// Invite users to a group (owner only): each becomes a member only
    /// when they accept ([`Request::GroupAccept`]).
    GroupAdd {
        group: GroupName,
        members: Vec<Username>,
    },
    /// Remove members from a group, or withdraw their invitations (owner
    /// only).
    GroupKick {
        group: GroupName,
        members: Vec<Username>,
    },
    /// Leave a group. An owner who leaves hands ownership to the oldest member.
    GroupLeave { group: GroupName },
    /// Accept an invitation to a group: join it, seeing it from then on.
    /// With `room_id` (the one the invitation named), only if the group is
    /// still that room: an old invitation never joins a new group that took
    /// the name.
    GroupAccept {
        group: GroupName,
        #[serde(default)]
        room_id: Option<u64>,
    },
    /// Decline an invitation to a group.
    GroupDecline { group: GroupName },
    /// Delete a group (owner only); every member is notified.
    GroupDelete { group: GroupName },
    /// List the groups the sender belongs to.
    GroupList,
    /// List online users and their status.
    Names,
    /// Read the sender's own status.
    GetStatus,
    /// Change the sender's status; everyone online is told.
    SetStatus { status: Status },
    /// The last `limit` events the sender can see (lobby, direct, groups),
    /// oldest first. `limit` is capped at [`crate::limits::MAX_HISTORY`].
    /// With `before`, only events older than that position: the next page
    /// after a [`Response::History`] that said `more`.
    History {
        limit: u32,
        #[serde(default)]
        before: Option<HistoryCursor>,
    },
    /// Liveness check.
    Ping,
    /// Publish this device's keys to the key directory: its signed identity
    /// keys (once; they cannot change later), new one-time keys, and a
    /// fallback key that replaces the previous one. Replies
    /// [`Response::KeyCount`]; send it with nothing to learn the count.
    UploadKeys {
        device_keys: Option<Box<DeviceKeys>>,
        one_time_keys: Vec<SignedOneTimeKey>,
        fallback_key: Option<Box<SignedOneTimeKey>>,
    },
    /// The published keys of every device of these users (at most
    /// [`crate::limits::MAX_KEY_QUERY_USERS`]).
    QueryKeys { users: Vec<Username> },
    /// Claim one key per device to start Olm sessions: a one-time key,
    /// removed as it is handed out, or the fallback key when none is left.
    /// Devices with no published keys are left out of the reply.
    ClaimKeys { devices: Vec<DeviceRef> },
    /// Queue opaque payloads (Olm-encrypted, see `crate::e2e::OlmEnvelope`)
    /// for other devices, durably: each device receives its messages in
    /// order, also after being offline, until it acknowledges them. Fails
    /// as a whole, storing nothing, if any device is unknown. Replies
    /// `Done`.
    SendToDevice { messages: Vec<ToDeviceMessage> },
    /// The id of the private room with `with`, created if needed: an
    /// end-to-end encrypted first message must name its room inside the
    /// ciphertext. Replies [`Response::Room`].
    DirectRoom { with: Username },
    /// One group the sender belongs to, with every member (an encrypting
    /// sender shares the room key with all of them). Replies
    /// [`Response::Group`].
    GroupInfo { group: GroupName },
    /// Removes one of the sender's own devices (a lost phone, say): its
    /// keys leave the directory, its session token stops working, its
    /// to-device queue is deleted, and its connections get
    /// [`EventKind::DeviceRemoved`] and are closed. Everyone sharing a room
    /// with the user is sent [`EventKind::DevicesChanged`], so their next
    /// message starts new room sessions without that device. Replies `Done`.
    RemoveDevice { device: DeviceId },
    /// A message stored at most once. A client that lost the connection
    /// before the reply sends it again with the same `client_id` (its own
    /// random number), and the server answers with where it stored the
    /// first one instead of storing it twice. The server remembers the
    /// last [`crate::limits::REMEMBERED_SEND_IDS`] ids of each account,
    /// across restarts. (`message` is not a `Request`, so nothing nests.)
    Once { client_id: u64, message: Message },
    /// The lobby events after position `after` (the last one this device
    /// saw): the newest `limit` of them (at most
    /// [`crate::limits::MAX_LOBBY_CATCH_UP`]), oldest first. Answered with
    /// [`Response::LobbySince`].
    LobbySince { after: u64, limit: u32 },
}

/// A message, as [`Request::Once`] carries it: what
/// [`Request::SendLobby`], [`Request::SendDirect`] and
/// [`Request::SendGroup`] send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Message {
    Lobby {
        text: String,
    },
    Direct {
        to: Username,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
        /// [`crate::e2e::device_digest`] of the devices (the sender's and
        /// `to`'s) the message was encrypted for. If the server's directory
        /// lists other devices now, the message is refused with
        /// [`ErrorCode::DevicesChanged`] and not stored: a device added a
        /// moment ago is not left without the key, and one removed does
        /// not get a message meant for after its removal. `None`: no check.
        #[serde(default)]
        devices: Option<u64>,
    },
    Group {
        group: GroupName,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
}

impl Message {
    /// The request that sends it (the device check is the caller's).
    pub fn into_request(self) -> Request {
        match self {
            Message::Lobby { text } => Request::SendLobby { text },
            Message::Direct { to, payload, .. } => Request::SendDirect { to, payload },
            Message::Group { group, payload } => Request::SendGroup { group, payload },
        }
    }
}

/// One payload for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToDeviceMessage {
    pub user: Username,
    pub device: DeviceId,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// One device of one user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceRef {
    pub user: Username,
    pub device: DeviceId,
}

/// A key handed out by [`Request::ClaimKeys`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedKey {
    pub user: Username,
    pub device: DeviceId,
    pub key: SignedOneTimeKey,
}

impl Request {
    /// A short name for logs and metrics (never includes content).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Login(_) => "login",
            Request::LoginFinish { .. } => "login_finish",
            Request::PasswordStart { .. } => "password_start",
            Request::PasswordFinish { .. } => "password_finish",
            Request::SendLobby { .. } => "send_lobby",
            Request::SendDirect { .. } => "send_direct",
            Request::SendGroup { .. } => "send_group",
            Request::GroupCreate { .. } => "group_create",
            Request::GroupAdd { .. } => "group_add",
            Request::GroupKick { .. } => "group_kick",
            Request::GroupLeave { .. } => "group_leave",
            Request::GroupAccept { .. } => "group_accept",
            Request::GroupDecline { .. } => "group_decline",
            Request::GroupDelete { .. } => "group_delete",
            Request::GroupList => "group_list",
            Request::Names => "names",
            Request::GetStatus => "get_status",
            Request::SetStatus { .. } => "set_status",
            Request::History { .. } => "history",
            Request::Ping => "ping",
            Request::UploadKeys { .. } => "upload_keys",
            Request::QueryKeys { .. } => "query_keys",
            Request::ClaimKeys { .. } => "claim_keys",
            Request::SendToDevice { .. } => "send_to_device",
            Request::DirectRoom { .. } => "direct_room",
            Request::GroupInfo { .. } => "group_info",
            Request::RemoveDevice { .. } => "remove_device",
            Request::Once { .. } => "once",
            Request::LobbySince { .. } => "lobby_since",
        }
    }
}

/// Login credentials. `Debug` redacts every secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    pub user: Username,
    /// How the login proves who it is.
    pub credential: Credential,
    /// This device's stable id; a new id registers a new device.
    pub device_id: DeviceId,
    /// Required when the server has a server password.
    pub server_password: Option<Password>,
}

/// One OPAQUE protocol message (`sotto_crypto::opaque` makes and reads
/// them). `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpaqueMessage(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl std::fmt::Debug for OpaqueMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpaqueMessage({} bytes)", self.0.len())
    }
}

/// How a login proves who it is. The account password never goes to the
/// server (except, once, [`Credential::LegacyPassword`]).
#[derive(Clone, Serialize, Deserialize)]
pub enum Credential {
    /// An OPAQUE login: the client's first message (a blinded password and
    /// a key-exchange share).
    Opaque(OpaqueMessage),
    /// An OPAQUE registration of a new account: the client's blinded
    /// password. Refused with `username_taken` if the name exists, and
    /// with `registration_closed` (whatever the name) where registration
    /// is closed.
    Register(OpaqueMessage),
    /// A token from [`LoggedIn::session_token`], valid for the same device
    /// until the next password login of that device replaces it.
    Token(SessionToken),
    /// The password itself, for an account made before logins used OPAQUE
    /// (the server answers an OPAQUE login of one with `legacy_login`).
    /// The client then moves the account over at once with
    /// [`Request::PasswordStart`] (`old: None`), and the server forgets
    /// the old hash.
    LegacyPassword(Password),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Opaque(m) => write!(f, "Opaque({m:?})"),
            Credential::Register(m) => write!(f, "Register({m:?})"),
            Credential::Token(t) => write!(f, "Token({t:?})"),
            Credential::LegacyPassword(p) => write!(f, "LegacyPassword({p:?})"),
        }
    }
}

/// A device's session token: 32 random bytes as 64 hex digits. A bearer
/// secret: `Debug` redacts it; the server stores only its SHA-256.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionToken(String);

impl SessionToken {
    /// Wraps 64 hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(text.to_ascii_lowercase()))
    }

    /// The token's text. Keep the borrow short.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SessionToken {
    type Error = &'static str;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value).ok_or("a session token is 64 hex digits")
    }
}

impl From<SessionToken> for String {
    fn from(value: SessionToken) -> Self {
        value.0.clone()
    }
}

impl Drop for SessionToken {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// A user's availability, shown to everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Status {
    /// Available.
    #[default]
    Normal,
    /// Do not disturb: private messages are held until the user leaves dnd.
    Dnd,
    /// Away: messages are delivered but senders are told the user may not respond.
    Away,
}

impl Status {
    /// The lower-case name used in commands and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Normal => "normal",
            Status::Dnd => "dnd",
            Status::Away => "away",
        }
    }

    /// Parses `normal`, `dnd` or `away` (any case).
    pub fn parse(input: &str) -> Option<Self> {
        match input.to_ascii_lowercase().as_str() {
            "normal" => Some(Status::Normal),
            "dnd" => Some(Status::Dnd),
            "away" => Some(Status::Away),
            _ => None,
        }
    }
}

/// An acknowledgement that the client has stored every event of a room up to
/// and including `seq`. Sent without a request id and never answered; the
/// server delivers nothing at or below an acknowledged position again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub room_id: u64,
    pub seq: u64,
}

/// A successful reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// Login succeeded.
    LoggedIn(LoggedIn),
    /// A message was durably stored at `seq` in room `room_id`.
    Sent {
        room_id: u64,
        seq: u64,
        ts: i64,
        /// Something the sender should know about delivery.
        note: Option<DeliveryNote>,
    },
    /// The request succeeded and has nothing to return.
    Done,
    /// (`SendToDevice`) stored, except for these devices, whose queues
    /// hold as much as the server keeps (from this sender, or in all): they
    /// ask for what they missed when they read their queues again.
    ToDeviceSent { refused: Vec<DeviceRef> },
    /// Online users by name, at most [`crate::limits::MAX_LISTED_USERS`];
    /// `total` counts them all.
    Names {
        users: Vec<UserPresence>,
        total: u32,
    },
    /// The sender's status.
    Status { status: Status },
    /// One group (after create/add/kick).
    Group(GroupInfo),
    /// The sender's groups, and the invitations waiting for an answer.
    Groups {
        groups: Vec<GroupInfo>,
        #[serde(default)]
        invitations: Vec<Invitation>,
    },
    /// History, oldest first. A reply holds at most
    /// [`crate::limits::MAX_HISTORY_BYTES`] of events: when older events of
    /// the requested range did not fit, `more` is where to ask again (with
    /// the rest of the limit) for them.
    History {
        events: Vec<EventBody>,
        #[serde(default)]
        more: Option<HistoryCursor>,
        /// Set when the page reaches back to the oldest event the server
        /// still keeps of a conversation and older ones were deleted by its
        /// retention policy: that event's time (milliseconds since the Unix
        /// epoch).
        #[serde(default)]
        pruned_before: Option<i64>,
    },
    /// Answer to [`Request::LobbySince`]: the events, and how many older
    /// ones after the position asked for did not fit in the limit.
    LobbySince { events: Vec<EventBody>, missed: u64 },
    /// Answer to [`Request::Ping`].
    Pong,
    /// This device's unclaimed one-time keys in the directory, and whether
    /// its fallback key has been handed out since it was last replaced.
    KeyCount {
        one_time_keys: u32,
        fallback_used: bool,
    },
    /// Answer to [`Request::QueryKeys`].
    Devices { devices: Vec<DeviceKeys> },
    /// Answer to [`Request::ClaimKeys`].
    Claimed { keys: Vec<ClaimedKey> },
    /// Answer to [`Request::DirectRoom`].
    Room { room_id: u64 },
    /// The server's OPAQUE message of a login or registration; the client
    /// answers with [`Request::LoginFinish`].
    Challenge { message: OpaqueMessage },
    /// Answer to [`Request::PasswordStart`]: the old password's login
    /// response (if it was asked for) and the new one's registration
    /// response.
    PasswordChallenge {
        old: Option<OpaqueMessage>,
        new: OpaqueMessage,
    },
}

/// What a successful login returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoggedIn {
    pub user: Username,
    pub device_id: DeviceId,
    /// The account was created by this login.
    pub registered: bool,
    /// Users online now, including this one, the first
    /// [`crate::limits::MAX_LISTED_MEMBERS`] by name (`Names` lists more).
    pub online: Vec<UserPresence>,
    /// How many users are online.
    pub online_total: u32,
    /// Groups this user belongs to.
    pub groups: Vec<GroupInfo>,
    /// A token this device can log in with instead of the password
    /// ([`Credential::Token`]). A password login issues a new one and
    /// revokes the device's previous token.
    pub session_token: SessionToken,
}

/// Something a sender is told about a private message's delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryNote {
    /// The recipient is offline; delivered at their next login.
    RecipientOffline,
    /// The recipient is in do-not-disturb; held until they leave it.
    RecipientDnd,
    /// The recipient is away and may not respond.
    RecipientAway,
}

/// A user and their status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPresence {
    pub user: Username,
    pub status: Status,
}

/// A group as its members see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub name: GroupName,
    pub room_id: u64,
    pub owner: Username,
    /// Members in join order; in `LoggedIn` at most
    /// [`crate::limits::MAX_LISTED_MEMBERS`] of them (see `member_count`).
    pub members: Vec<Username>,
    /// How many members the group has.
    pub member_count: u32,
    /// Users invited and not yet joined (at most
    /// [`crate::limits::MAX_LISTED_MEMBERS`] in `LoggedIn`).
    #[serde(default)]
    pub invited: Vec<Username>,
}

/// An invitation to a group, waiting for its invitee's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub group: GroupName,
    /// Who invited (the group's owner then).
    pub by: Username,
    /// When, milliseconds since the Unix epoch.
    pub ts: i64,
}

/// A failed request: a stable machine-readable code and a one-line message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorReply {
    /// Builds an error reply.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Stable error codes. New codes may be added; existing ones never change
/// meaning. Their snake_case names appear in `--json` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The client speaks another protocol version.
    UnsupportedVersion,
    /// The frame could not be decoded or the request is malformed.
    BadRequest,
    /// The request needs a logged-in connection.
    NotLoggedIn,
    /// This connection is already logged in.
    AlreadyLoggedIn,
    /// The server needs a server password and none was given.
    ServerPasswordRequired,
    /// The server password is wrong.
    WrongServerPassword,
    /// The account password is wrong, or (for a token or the last login
    /// message) the name does not exist: the two are not told apart.
    WrongPassword,
    /// An OPAQUE login for an account made before logins used OPAQUE: log
    /// in once with [`Credential::LegacyPassword`] to move it over.
    LegacyLogin,
    /// Registration asked for a name that already exists.
    UsernameTaken,
    /// The name is unknown and the server does not register new accounts.
    RegistrationClosed,
    /// Too many attempts; wait and retry.
    RateLimited,
    /// No such user.
    UnknownUser,
    /// No such group (or the sender cannot see it).
    UnknownGroup,
    /// A group with that name exists.
    GroupExists,
    /// The sender is not a member of the group.
    NotMember,
    /// Only the group owner may do this.
    NotOwner,
    /// The group would exceed [`crate::limits::MAX_GROUP_MEMBERS`].
    GroupTooLarge,
    /// The message is empty.
    EmptyMessage,
    /// The message exceeds a size limit.
    MessageTooLong,
    /// A quota of the server (devices per account, groups per user,
    /// queued bytes, registrations per address) would be exceeded; the
    /// message names it.
    QuotaExceeded,
    /// The request is invalid for another stated reason.
    Invalid,
    /// The server is shutting down.
    ShuttingDown,
    /// Something failed inside the server; the request had no effect.
    Internal,
    /// The devices a private message was encrypted for are no longer the
    /// ones the directory lists: it was not stored; ask for the devices
    /// again and encrypt it anew.
    DevicesChanged,
}

impl ErrorCode {
    /// The stable snake_case name of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotLoggedIn => "not_logged_in",
            ErrorCode::AlreadyLoggedIn => "already_logged_in",
            ErrorCode::ServerPasswordRequired => "server_password_required",
            ErrorCode::WrongServerPassword => "wrong_server_password",
            ErrorCode::WrongPassword => "wrong_password",
            ErrorCode::LegacyLogin => "legacy_login",
            ErrorCode::UsernameTaken => "username_taken",
            ErrorCode::RegistrationClosed => "registration_closed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UnknownUser => "unknown_user",
            ErrorCode::UnknownGroup => "unknown_group",
            ErrorCode::GroupExists => "group_exists",
            ErrorCode::NotMember => "not_member",
            ErrorCode::NotOwner => "not_owner",
            ErrorCode::GroupTooLarge => "group_too_large",
            ErrorCode::EmptyMessage => "empty_message",
            ErrorCode::MessageTooLong => "message_too_long",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::Invalid => "invalid",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::DevicesChanged => "devices_changed",
        }
    }
}

/// A server event: when it happened and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBody {
    /// Server time, milliseconds since the Unix epoch.
    pub ts: i64,
    pub kind: EventKind,
}

/// What a server event says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// Something was appended to a room's timeline.
    Room(RoomEvent),
    /// A user came online, went offline or changed status.
    Presence {
        user: Username,
        change: PresenceChange,
    },
    /// Everything stored for this device while it was away has been sent.
    CaughtUp,
    /// The server is shutting down; the connection will close.
    Shutdown { message: String },
    /// Keys of this device were claimed: top up the one-time keys, and
    /// replace the fallback key if it was handed out.
    KeyCount {
        one_time_keys: u32,
        fallback_used: bool,
    },
    /// A user who shares a room with this one (or this user) published a
    /// new device or removed one: query their keys again before sharing
    /// room keys.
    DevicesChanged { user: Username },
    /// This device was removed from its account (by `by`, another device
    /// or itself); the connection will close, and its session token no
    /// longer works.
    DeviceRemoved { by: DeviceId },
}

/// A change of presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PresenceChange {
    Online(Status),
    Offline,
    Status(Status),
}

/// One entry of a room's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEvent {
    /// Server-assigned room id; used in [`Ack`].
    pub room_id: u64,
    /// Which room, in words.
    pub room: RoomRef,
    /// Position in the room's timeline, from 1, without gaps.
    pub seq: u64,
    /// Who caused the event (as authenticated by the server).
    pub sender: Username,
    pub content: RoomContent,
}

/// A room, named the way users see it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoomRef {
    /// The public room every user is in. Plaintext, server-readable.
    Lobby,
    /// The private conversation of two users (names in sorted order).
    Direct { users: (Username, Username) },
    /// A named group.
    Group { name: GroupName },
    /// A user's own notices from the server (e.g. "group X was deleted").
    Notices { user: Username },
    /// One device's queue of to-device messages (room keys over Olm):
    /// delivered only to that device, in order, and deleted once it
    /// acknowledges them. Content is [`RoomContent::ToDevice`].
    Inbox { device: DeviceId },
}

/// What a timeline entry holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomContent {
    /// Lobby text.
    Text { text: String },
    /// A private or group message: bytes the server neither reads nor changes.
    Envelope {
        device: DeviceId,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// (Inbox) a to-device message from `sender`'s device `device`, with
    /// the keys the server's directory publishes for that device, so the
    /// recipient can check the keys inside the Olm plaintext against the
    /// directory without asking for them.
    ToDevice {
        device: DeviceId,
        keys: Box<DeviceKeys>,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// The group was created by `sender` with these members.
    GroupCreated { members: Vec<Username> },
    /// `sender` added members (a server from before invitations).
    MembersAdded { members: Vec<Username> },
    /// `sender` (the owner) invited these users.
    MembersInvited { members: Vec<Username> },
    /// `sender` accepted an invitation and is a member from this event on.
    MemberJoined,
    /// `sender` declined an invitation.
    InvitationDeclined,
    /// (Notices room) `sender` invited you to the group (room `room_id`):
    /// accept or decline.
    Invited { group: GroupName, room_id: u64 },
    /// `sender` removed members.
    MembersKicked { members: Vec<Username> },
    /// `sender` left the group; `new_owner` is set when the owner left.
    MemberLeft { new_owner: Option<Username> },
    /// (Notices room) the group was deleted by `sender`.
    GroupDeleted { group: GroupName },
    /// (Notices room) `sender` removed you from the group, or withdrew
    /// your invitation to it.
    RemovedFromGroup { group: GroupName },
}
