//! The local history of private and group rooms: what a decrypted message
//! (or one this device sent) becomes in the local store, and how it is shown
//! again by `@history`. The server keeps only ciphertext, and a device's
//! room keys may not reach back far enough to decrypt it again, so the
//! history of private and group rooms is served from here.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sotto_proto::{GroupName, MessageBody, SealedBox, Username};

use crate::ClientEvent;
use crate::client::Target;

/// One decrypted message, as kept in the local store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Entry {
    Private {
        from: Username,
        peer: Username,
        text: String,
    },
    Group {
        group: GroupName,
        from: Username,
        text: String,
    },
    /// Still sealed with its passphrase: `@history` numbers it again so it
    /// can be opened.
    Sealed {
        from: Username,
        group: Option<GroupName>,
        sealed: SealedBox,
    },
    /// A received file waiting for the user's answer (replaced by `File`
    /// or `Refused` once answered).
    Offered {
        id: u64,
        from: Username,
        group: Option<GroupName>,
        name: String,
        size: u64,
    },
    /// A received file that was not kept, and why.
    Refused {
        from: Username,
        group: Option<GroupName>,
        name: String,
        size: u64,
        reason: String,
    },
    /// Where the file was saved (or sent from): the contents are not kept
    /// twice.
    File {
        from: Username,
        group: Option<GroupName>,
        name: String,
        path: PathBuf,
        size: u64,
    },
}

impl Entry {
    /// The entry of a received text or file message as shown (sealed
    /// messages are kept from their box, see [`Entry::Sealed`]).
    pub fn of(event: &ClientEvent) -> Option<Self> {
        match event {
            ClientEvent::Private {
                from, peer, text, ..
            } => Some(Entry::Private {
                from: from.clone(),
                peer: peer.clone(),
                text: text.clone(),
            }),
            ClientEvent::Group {
                group, from, text, ..
            } => Some(Entry::Group {
                group: group.clone(),
                from: from.clone(),
                text: text.clone(),
            }),
            ClientEvent::File {
                from,
                group,
                name,
                path,
                size,
                ..
            } => Some(Entry::File {
                from: from.clone(),
                group: group.clone(),
                name: name.clone(),
                path: path.clone(),
                size: *size,
            }),
            ClientEvent::FileOffered {
                id,
                from,
                group,
                name,
                size,
                ..
            } => Some(Entry::Offered {
                id: *id,
                from: from.clone(),
                group: group.clone(),
                name: name.clone(),
                size: *size,
            }),
            ClientEvent::FileRefused {
                from,
                group,
                name,
                size,
                reason,
                ..
            } => Some(Entry::Refused {
                from: from.clone(),
                group: group.clone(),
                name: name.clone(),
                size: *size,
                reason: reason.clone(),
            }),
            _ => None,
        }
    }

    /// The entry of a message this device sends to `to`; `file` is where a
    /// sent file was read from.
    pub fn sent(me: &Username, to: &Target, body: &MessageBody, file: Option<&Path>) -> Self {
        let group = match to {
            Target::Group(group) => Some(group.clone()),
            Target::User(_) => None,
        };
        match (body, to) {
            (MessageBody::Text { text }, Target::User(peer)) => Entry::Private {
                from: me.clone(),
                peer: peer.clone(),
                text: text.clone(),
            },
            (MessageBody::Text { text }, Target::Group(group)) => Entry::Group {
                group: group.clone(),
                from: me.clone(),
                text: text.clone(),
            },
            (MessageBody::Sealed(sealed), _) => Entry::Sealed {
                from: me.clone(),
                group,
                sealed: sealed.clone(),
            },
            (MessageBody::File(body), _) => Entry::File {
                from: me.clone(),
                group,
                name: body.name.clone(),
                path: file.map(Path::to_owned).unwrap_or_default(),
                size: body.data.len() as u64,
            },
        }
    }

    /// The event to show; `number` gives a sealed message its local id.
    pub fn into_event(
        self,
        ts: i64,
        number: impl FnOnce(&Username, &Option<GroupName>, &SealedBox) -> u64,
    ) -> ClientEvent {
        match self {
            Entry::Private { from, peer, text } => ClientEvent::Private {
                from,
                peer,
                text,
                ts,
            },
            Entry::Group { group, from, text } => ClientEvent::Group {
                group,
                from,
                text,
                ts,
            },
            Entry::Sealed {
                from,
                group,
                sealed,
            } => {
                let id = number(&from, &group, &sealed);
                ClientEvent::Sealed {
                    id,
                    from,
                    group,
                    ts,
                }
            }
            Entry::File {
                from,
                group,
                name,
                path,
                size,
            } => ClientEvent::File {
                from,
                group,
                name,
                path,
                size,
                ts,
            },
            Entry::Offered {
                id,
                from,
                group,
                name,
                size,
            } => ClientEvent::FileOffered {
                id,
                from,
                group,
                name,
                size,
                ts,
            },
            Entry::Refused {
                from,
                group,
                name,
                size,
                reason,
            } => ClientEvent::FileRefused {
                from,
                group,
                name,
                size,
                reason,
                ts,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(name: &str) -> Username {
        Username::parse(name).unwrap()
    }

    #[test]
    fn shown_and_sent_messages_come_back_as_the_same_events() {
        let shown = ClientEvent::Private {
            from: u("bob"),
            peer: u("bob"),
            text: "hi".into(),
            ts: 7,
        };
        let entry = Entry::of(&shown).unwrap();
        assert_eq!(entry.into_event(7, |_, _, _| 0), shown);

        let crew = GroupName::parse("crew").unwrap();
        let sent = Entry::sent(
            &u("alice"),
            &Target::Group(crew.clone()),
            &MessageBody::Text { text: "yo".into() },
            None,
        );
        assert_eq!(
            sent.into_event(9, |_, _, _| 0),
            ClientEvent::Group {
                group: crew,
                from: u("alice"),
                text: "yo".into(),
                ts: 9
            }
        );
        // Notices are not messages: nothing to keep.
        assert!(Entry::of(&ClientEvent::CaughtUp).is_none());
    }
}
