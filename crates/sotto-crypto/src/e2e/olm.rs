//! Olm sessions with other devices: the pairwise channels room keys travel
//! over.
//!
//! Several sessions may exist with one device (both sides started one at
//! once, or a broken one was replaced): receiving tries every one of them,
//! newest first; sending uses the newest.
//!
//! Sessions are stored per peer device ([`OlmPeerPickle`]); only the peers
//! whose sessions changed are handed out to be saved.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sotto_proto::e2e::{DeviceKeys, OlmEnvelope, PublicKey, SignedOneTimeKey};
use vodozemac::olm::{OlmMessage, Session, SessionPickle};

use super::E2eError;
use super::account::DeviceAccount;

/// Sessions kept per peer device; older ones are dropped.
const MAX_SESSIONS_PER_DEVICE: usize = 5;
/// A replacement for a broken session that the peer has not answered on
/// within this time is tried again. (Until then the peer's messages on the
/// old session keep failing, and another replacement would not help: the
/// peer has not read the first one yet.)
pub const RECOVERY_PENDING_MS: i64 = 60 * 60 * 1000;

/// Every Olm session this device has, by the peer's Curve25519 key.
#[derive(Debug, Default)]
pub struct OlmSessions {
    /// Oldest first.
    by_peer: HashMap<PublicKey, Vec<Session>>,
    /// When this device last started a session to replace a broken one
    /// with a peer, while the peer has not answered on it.
    recovered_at: HashMap<PublicKey, i64>,
    /// Peers whose record changed since [`OlmSessions::take_changed`].
    changed: HashSet<PublicKey>,
}

/// The Olm sessions with one peer device, as stored.
#[derive(Serialize, Deserialize)]
pub struct OlmPeerPickle {
    pub peer: PublicKey,
    sessions: Vec<SessionPickle>,
    recovered_at: Option<i64>,
}

impl std::fmt::Debug for OlmPeerPickle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OlmPeerPickle")
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

/// Olm sessions as stored before they were stored per peer.
#[derive(Deserialize)]
pub(crate) struct LegacyOlmSessionsPickle {
    by_peer: Vec<(PublicKey, Vec<SessionPickle>)>,
    recovered_at: Vec<(PublicKey, i64)>,
}

impl OlmSessions {
    /// Whether there is a session to send to this peer on.
    pub fn has_session(&self, peer: &PublicKey) -> bool {
        self.by_peer.get(peer).is_some_and(|s| !s.is_empty())
    }

    /// Starts a session with `peer` from a claimed one-time key, after
    /// checking the signatures on the device's keys and on the key.
    pub fn start(
        &mut self,
        account: &DeviceAccount,
        peer: &DeviceKeys,
        key: &SignedOneTimeKey,
    ) -> Result<(), E2eError> {
        let session = account.outbound_session(peer, key)?;
        self.add(peer.curve25519, session);
        Ok(())
    }

    /// Encrypts `plaintext` for `peer` on the newest session.
    pub fn encrypt(
        &mut self,
        account: &DeviceAccount,
        peer: &PublicKey,
        plaintext: &[u8],
    ) -> Result<OlmEnvelope, E2eError> {
        let session = self
            .by_peer
            .get_mut(peer)
            .and_then(|s| s.last_mut())
            .ok_or(E2eError::NoSession)?;
        let (message_type, ciphertext) = session.encrypt(plaintext).to_parts();
        self.changed.insert(*peer);
        Ok(OlmEnvelope {
            sender_key: account.identity().curve25519,
            message_type: message_type as u8,
            ciphertext,
        })
    }

    /// Decrypts a to-device message: with an existing session if one
    /// fits, else, for a pre-key message, with a new inbound session (which
    /// consumes the one-time key it names: then the flag is set, the
    /// account changed).
    pub fn decrypt(
        &mut self,
        account: &mut DeviceAccount,
        envelope: &OlmEnvelope,
    ) -> Result<(Vec<u8>, bool), E2eError> {
        let message =
            OlmMessage::from_parts(usize::from(envelope.message_type), &envelope.ciphertext)
                .map_err(|e| E2eError::Malformed(format!("Olm message: {e}")))?;
        let peer = envelope.sender_key;
        if let Some(sessions) = self.by_peer.get_mut(&peer) {
            // A pre-key message names its session: only that one can fit.
            for session in sessions.iter_mut().rev() {
                if let OlmMessage::PreKey(pre_key) = &message
                    && pre_key.session_id() != session.session_id()
                {
                    continue;
                }
                if let Ok(plaintext) = session.decrypt(&message) {
                    self.changed.insert(peer);
                    self.settle_recovery(&peer);
                    return Ok((plaintext, false));
                }
            }
        }
        match &message {
            OlmMessage::PreKey(pre_key) => {
                let created = account.inbound_session(&peer, pre_key)?;
                self.add(peer, created.session);
                // The peer started a new session itself: it is talking again.
                self.recovered_at.remove(&peer);
                Ok((created.plaintext, true))
            }
            OlmMessage::Normal(_) => Err(E2eError::Decrypt(
                "no Olm session with the sending device can decrypt this message".into(),
            )),
        }
    }

    /// Whether to replace a broken session with `peer` now: yes, unless
    /// a replacement started earlier is still waiting for the peer's first
    /// answer (and is younger than [`RECOVERY_PENDING_MS`]); records the
    /// attempt if so. Not a rate limit: each new break is mended at once.
    pub fn should_recover(&mut self, peer: &PublicKey, now_ms: i64) -> bool {
        match self.recovered_at.get(peer) {
            Some(at) if now_ms - at < RECOVERY_PENDING_MS => false,
            _ => {
                self.recovered_at.insert(*peer, now_ms);
                self.changed.insert(*peer);
                true
            }
        }
    }

    /// A message from `peer` decrypted: once it came on the newest session
    /// (the replacement, if one was started), recovery is over.
    fn settle_recovery(&mut self, peer: &PublicKey) {
        let answered = self
            .by_peer
            .get(peer)
            .and_then(|s| s.last())
            .is_some_and(Session::has_received_message);
        if answered && self.recovered_at.remove(peer).is_some() {
            self.changed.insert(*peer);
        }
    }

    fn add(&mut self, peer: PublicKey, session: Session) {
        let sessions = self.by_peer.entry(peer).or_default();
        sessions.push(session);
        if sessions.len() > MAX_SESSIONS_PER_DEVICE {
            sessions.remove(0);
        }
        self.changed.insert(peer);
    }

    /// The peers whose sessions changed since the last call, to store.
    pub fn take_changed(&mut self) -> Vec<OlmPeerPickle> {
        let changed = std::mem::take(&mut self.changed);
        changed.iter().map(|peer| self.pickle_peer(peer)).collect()
    }

    /// Every peer's sessions, to store.
    pub fn pickle_all(&self) -> Vec<OlmPeerPickle> {
        let peers: HashSet<&PublicKey> = self
            .by_peer
            .keys()
            .chain(self.recovered_at.keys())
            .collect();
        peers
            .into_iter()
            .map(|peer| self.pickle_peer(peer))
            .collect()
    }

    fn pickle_peer(&self, peer: &PublicKey) -> OlmPeerPickle {
        OlmPeerPickle {
            peer: *peer,
            sessions: self
                .by_peer
                .get(peer)
                .into_iter()
                .flatten()
                .map(Session::pickle)
                .collect(),
            recovered_at: self.recovered_at.get(peer).copied(),
        }
    }

    pub fn from_pickles(pickles: impl IntoIterator<Item = OlmPeerPickle>) -> Self {
        let mut sessions = Self::default();
        for pickle in pickles {
            if !pickle.sessions.is_empty() {
                sessions.by_peer.insert(
                    pickle.peer,
                    pickle
                        .sessions
                        .into_iter()
                        .map(Session::from_pickle)
                        .collect(),
                );
            }
            if let Some(at) = pickle.recovered_at {
                sessions.recovered_at.insert(pickle.peer, at);
            }
        }
        sessions
    }

    pub(crate) fn from_legacy(pickle: LegacyOlmSessionsPickle) -> Self {
        let mut sessions = Self {
            by_peer: pickle
                .by_peer
                .into_iter()
                .map(|(peer, sessions)| {
                    (
                        peer,
                        sessions.into_iter().map(Session::from_pickle).collect(),
                    )
                })
                .collect(),
            recovered_at: pickle.recovered_at.into_iter().collect(),
            changed: HashSet::new(),
        };
        sessions.changed = sessions
            .by_peer
            .keys()
            .chain(sessions.recovered_at.keys())
            .copied()
            .collect();
        sessions
    }
}
