//! Every bound the protocol enforces. Each resource a peer can make the other
//! side store or allocate has a `MAX_*` here, documented in `docs/PROTOCOL.md`.

/// Largest frame (kind byte and body, excluding the 4-byte length prefix)
/// accepted from a logged-in peer. Checked before any buffer is allocated.
/// Large enough for one file attachment of [`MAX_FILE_LEN`] plus framing.
pub const MAX_FRAME_LEN: usize = 11 * 1024 * 1024;

/// Largest frame accepted before login completes: hello and login frames are
/// tiny, so an unauthenticated peer cannot make the server buffer megabytes.
pub const MAX_PRELOGIN_FRAME_LEN: usize = 16 * 1024;

/// Longest text of one message, in bytes of UTF-8 (lobby, private or group).
pub const MAX_TEXT_LEN: usize = 4096;

/// Largest opaque payload of a private or group envelope, in bytes.
pub const MAX_PAYLOAD_LEN: usize = 10 * 1024 * 1024 + 64 * 1024;

/// Largest file that can be sent as an attachment, in bytes.
pub const MAX_FILE_LEN: usize = 10 * 1024 * 1024;

/// Longest file name carried with an attachment, in bytes.
pub const MAX_FILE_NAME_LEN: usize = 255;

/// Username and group name length bounds, in characters (ASCII only).
pub const MIN_NAME_LEN: usize = 1;
/// See [`MIN_NAME_LEN`].
pub const MAX_NAME_LEN: usize = 32;

/// Longest password (account or server password), in bytes.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Most members one group may have, owner included.
pub const MAX_GROUP_MEMBERS: usize = 10_000;

/// Invitations waiting for one user's answer.
pub const MAX_PENDING_INVITATIONS: usize = 100;

/// Of those, from any one inviter: nobody can take every slot.
pub const MAX_INVITATIONS_FROM_ONE: usize = 5;

/// Users named in one `GroupCreate`, `GroupAdd` or `GroupKick`.
pub const MAX_USERS_PER_GROUP_REQUEST: usize = 100;

/// Most events one history request returns.
pub const MAX_HISTORY: u32 = 1000;

/// Lobby events a device is sent at most when it comes back
/// ([`crate::Request::LobbySince`]); it is told how many more it missed.
pub const MAX_LOBBY_CATCH_UP: u32 = 200;

/// Message ids ([`crate::Request::Once`]) the server remembers per account.
pub const REMEMBERED_SEND_IDS: usize = 64;

/// Most bytes of events one history reply carries (the newest event of a
/// page always goes, whatever its size: one event always fits a frame).
/// Older events of the range come in further pages.
pub const MAX_HISTORY_BYTES: usize = MAX_FRAME_LEN - 512 * 1024;

/// Longest client name in the hello frame.
pub const MAX_CLIENT_NAME_LEN: usize = 128;

/// Most users listed in a `Names` reply or a `LoggedIn` (the total is given).
pub const MAX_LISTED_USERS: usize = 1000;

/// Most members listed per group in `LoggedIn` (the count is given).
pub const MAX_LISTED_MEMBERS: usize = 100;

/// Clients need not acknowledge more often than this: the server writes
/// acknowledged positions to disk about once a second anyway, and every
/// ack costs the server a frame to decrypt and decode.
pub const ACK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Users per [`crate::Request::QueryKeys`].
pub const MAX_KEY_QUERY_USERS: usize = 100;

/// Devices per [`crate::Request::ClaimKeys`].
pub const MAX_KEY_CLAIM_DEVICES: usize = 1000;

/// One-time keys per [`crate::Request::UploadKeys`].
pub const MAX_KEYS_PER_UPLOAD: usize = 100;

/// Unclaimed one-time keys the directory keeps per device.
pub const MAX_STORED_ONE_TIME_KEYS: usize = 200;

/// Messages per [`crate::Request::SendToDevice`].
pub const MAX_TO_DEVICE_MESSAGES: usize = 1000;

/// Payload bytes of one to-device message.
pub const MAX_TO_DEVICE_PAYLOAD: usize = 64 * 1024;
