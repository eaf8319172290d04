//! The front-end model every UI draws: conversations (the lobby, each
//! private conversation, each group) with unread counts, mention flags and
//! last activity; a timeline per conversation whose entries have stable ids,
//! a sender, a time, content and, for the user's own messages, a send
//! state; who is online; security notices until they are seen.
//!
//! Pure state: [`Model::apply`] takes a [`ClientEvent`], the `sent_*`
//! methods record the user's own messages; nothing here touches the network,
//! so it is tested without one and a UI only draws it.

use std::collections::{BTreeMap, VecDeque};

use sotto_proto::{GroupName, PresenceChange, Status, Username};

use crate::ClientEvent;

/// Entries kept in memory per conversation as new ones arrive; older ones
/// are paged in from the local store (and the server, for the lobby) when
/// the UI scrolls up, up to [`MAX_SCROLLBACK`].
pub const MAX_TIMELINE_IN_MEMORY: usize = 5_000;

/// Entries a conversation holds at most with older pages scrolled in;
/// `@history` reaches further.
pub const MAX_SCROLLBACK: usize = 20_000;

/// Security notices kept until seen.
pub const MAX_NOTICES: usize = 200;

/// A conversation: what the user types in goes there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConversationId {
    Lobby,
    Direct(Username),
    Group(GroupName),
}

impl ConversationId {
    /// The conversation an event belongs to, as `me` sees it; `None` for
    /// events of no conversation (presence, notices, the connection).
    pub fn of(event: &ClientEvent, me: &Username) -> Option<Self> {
        let direct_or_group = |from: &Username, group: &Option<GroupName>| match group {
            Some(group) => Some(Self::Group(group.clone())),
            // One's own message from another device names no peer here.
            None if from == me => None,
            None => Some(Self::Direct(from.clone())),
        };
        match event {
            ClientEvent::Lobby { .. } => Some(Self::Lobby),
            ClientEvent::Private { peer, .. } => Some(Self::Direct(peer.clone())),
            ClientEvent::Group { group, .. }
            | ClientEvent::GroupCreated { group, .. }
            | ClientEvent::MembersAdded { group, .. }
            | ClientEvent::MembersInvited { group, .. }
            | ClientEvent::MemberJoined { group, .. }
            | ClientEvent::InvitationDeclined { group, .. }
            | ClientEvent::MembersKicked { group, .. }
            | ClientEvent::MemberLeft { group, .. }
            | ClientEvent::GroupDeleted { group, .. }
            | ClientEvent::RemovedFromGroup { group, .. }
            | ClientEvent::Invited { group, .. } => Some(Self::Group(group.clone())),
            ClientEvent::Sealed { from, group, .. }
            | ClientEvent::File { from, group, .. }
            | ClientEvent::FileOffered { from, group, .. }
            | ClientEvent::FileRefused { from, group, .. } => direct_or_group(from, group),
            ClientEvent::Undecodable { from, .. } if from != me => Some(Self::Direct(from.clone())),
            _ => None,
        }
    }
}

/// An entry's id in its timeline: stable for the life of the model.
pub type EntryId = u64;

/// Where one of the user's own messages is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendState {
    /// Handed to the client, not yet stored by the server.
    Pending,
    /// Stored by the server (durably).
    Sent,
    /// Refused or lost, and why.
    Failed(String),
}

/// What an entry shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text(String),
    /// A sealed message, opened with its local id.
    Sealed {
        id: u64,
    },
    /// A file: saved at `path`, or (`offer`) waiting for `@accept`.
    File {
        name: String,
        size: u64,
        path: Option<std::path::PathBuf>,
        offer: Option<u64>,
    },
    /// Something that happened (a member joined, a file was refused, ...).
    Notice(String),
}

/// One line of a timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: EntryId,
    /// `None` for notices of no one in particular.
    pub sender: Option<Username>,
    /// Server time (or, for a pending message, the time it was typed),
    /// milliseconds since the Unix epoch.
    pub ts: i64,
    pub content: Content,
    /// For the user's own messages.
    pub state: Option<SendState>,
}

/// One conversation of the sidebar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: ConversationId,
    /// Entries that arrived while it was not the selected one.
    pub unread: u32,
    /// Whether one of those names the user.
    pub mentioned: bool,
    /// The time of its newest entry.
    pub last_activity: i64,
    /// Newest last; at most [`Model::keep`] (older pages read in may make
    /// it longer until the next live entry).
    pub timeline: VecDeque<Entry>,
    /// The first entry that arrived unread, for the "new messages" line.
    pub first_unread: Option<EntryId>,
}

impl Conversation {
    fn new(id: ConversationId) -> Self {
        Self {
            id,
            unread: 0,
            mentioned: false,
            last_activity: 0,
            timeline: VecDeque::new(),
            first_unread: None,
        }
    }
}

/// Everything a front end draws.
#[derive(Debug, Clone)]
pub struct Model {
    me: Username,
    conversations: BTreeMap<ConversationId, Conversation>,
    selected: ConversationId,
    /// Who is online, with their status.
    pub online: BTreeMap<Username, Status>,
    /// The members of the user's groups, as far as known (from the login,
    /// command results and membership events).
    pub members: BTreeMap<GroupName, std::collections::BTreeSet<Username>>,
    /// Security notices not yet seen, oldest first.
    pub notices: VecDeque<String>,
    /// The connection's state.
    pub connection: ConnectionState,
    /// Files being sent: name, bytes written, bytes in all, by id.
    pub transfers: BTreeMap<u64, (String, u64, u64)>,
    /// Entries a conversation keeps as live ones arrive (the oldest go):
    /// [`MAX_TIMELINE_IN_MEMORY`], or more for a front end that draws
    /// only the rows in view.
    pub keep: usize,
    next_entry: EntryId,
    /// The newest time seen anywhere: for notices that carry none.
    latest: i64,
}

/// Whether the client is connected, for the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    Connected,
    /// Dialing again: try `attempt` in `retry_in_ms` (from when the
    /// event came), because of `reason`.
    Reconnecting {
        reason: String,
        attempt: u32,
        retry_in_ms: u64,
    },
    /// Gone for good.
    Disconnected(String),
}

impl Model {
    /// A model for `me`, showing the lobby.
    pub fn new(me: Username) -> Self {
        let mut conversations = BTreeMap::new();
        conversations.insert(
            ConversationId::Lobby,
            Conversation::new(ConversationId::Lobby),
        );
        Self {
            me,
            conversations,
            selected: ConversationId::Lobby,
            online: BTreeMap::new(),
            members: BTreeMap::new(),
            notices: VecDeque::new(),
            connection: ConnectionState::Connected,
            transfers: BTreeMap::new(),
            keep: MAX_TIMELINE_IN_MEMORY,
            next_entry: 1,
            latest: 0,
        }
    }

    /// The conversation typed text goes to.
    pub fn selected(&self) -> &ConversationId {
        &self.selected
    }

    /// Shows `id` (created if new): its unread count and mention flag are
    /// cleared; its "new messages" line stays until the next selection.
    pub fn select(&mut self, id: ConversationId) {
        if let Some(old) = self.conversations.get_mut(&self.selected) {
            old.first_unread = None;
        }
        let conversation = self.conversation_mut(&id);
        conversation.unread = 0;
        conversation.mentioned = false;
        self.selected = id;
    }

    /// The conversations, most recently active first (the lobby first
    /// among equals).
    pub fn conversations(&self) -> Vec<&Conversation> {
        let mut list: Vec<&Conversation> = self.conversations.values().collect();
        list.sort_by(|a, b| b.last_activity.cmp(&a.last_activity).then(a.id.cmp(&b.id)));
        list
    }

    pub fn conversation(&self, id: &ConversationId) -> Option<&Conversation> {
        self.conversations.get(id)
    }

    fn conversation_mut(&mut self, id: &ConversationId) -> &mut Conversation {
        self.conversations
            .entry(id.clone())
            .or_insert_with(|| Conversation::new(id.clone()))
    }

    /// Takes in one event from the client.
    pub fn apply(&mut self, event: &ClientEvent) {
        self.take_in(event, true, MAX_SCROLLBACK);
    }

    /// Takes in an event from history: shown in its conversation, never
    /// counted as unread; not kept when the conversation holds
    /// [`MAX_SCROLLBACK`] entries.
    pub fn apply_history(&mut self, event: &ClientEvent) {
        self.take_in(event, false, MAX_SCROLLBACK);
    }

    /// [`Model::apply_history`] with another bound on the entries a
    /// conversation holds (a front end that draws only what is in view
    /// can hold more).
    pub fn apply_history_up_to(&mut self, event: &ClientEvent, limit: usize) {
        self.take_in(event, false, limit);
    }

    /// A group's members, as the server listed them.
    pub fn set_group(&mut self, group: &sotto_proto::GroupInfo) {
        self.members
            .insert(group.name.clone(), group.members.iter().cloned().collect());
    }

    /// Keeps group membership up to date from an event.
    fn track_members(&mut self, event: &ClientEvent) {
        match event {
            ClientEvent::GroupCreated { group, by, members } => {
                let set = self.members.entry(group.clone()).or_default();
                set.insert(by.clone());
                set.extend(members.iter().cloned());
            }
            ClientEvent::MembersAdded { group, members, .. } => {
                self.members
                    .entry(group.clone())
                    .or_default()
                    .extend(members.iter().cloned());
            }
            ClientEvent::MemberJoined { group, user } => {
                self.members
                    .entry(group.clone())
                    .or_default()
                    .insert(user.clone());
            }
            ClientEvent::MembersKicked { group, members, .. } => {
                if let Some(set) = self.members.get_mut(group) {
                    for member in members {
                        set.remove(member);
                    }
                }
            }
            ClientEvent::MemberLeft { group, user, .. } => {
                if let Some(set) = self.members.get_mut(group) {
                    set.remove(user);
                }
            }
            ClientEvent::GroupDeleted { group, .. }
            | ClientEvent::RemovedFromGroup { group, .. } => {
                self.members.remove(group);
            }
            _ => {}
        }
    }

    /// The time now (milliseconds), from the front end's clock: what
    /// happens without a time of its own (presence, group notices) is
    /// placed there. Pure otherwise: the model reads no clock.
    pub fn tick(&mut self, now: i64) {
        self.latest = self.latest.max(now);
    }

    /// Who was online at login.
    pub fn set_online(&mut self, users: impl IntoIterator<Item = (Username, Status)>) {
        self.online = users.into_iter().collect();
    }

    /// A line of the front end's own (a command's result, an error) in
    /// conversation `to`, at `now`.
    pub fn note(&mut self, to: &ConversationId, text: String, now: i64) {
        self.latest = self.latest.max(now);
        self.push_notice(to, None, text, now);
    }

    /// Adds a notice at `ts` (or the conversation's newest time, if
    /// later), never unread and without moving the conversation up.
    fn push_notice(
        &mut self,
        to: &ConversationId,
        sender: Option<Username>,
        text: String,
        ts: i64,
    ) {
        let id = self.next_entry;
        self.next_entry += 1;
        let keep = self.keep;
        let conversation = self.conversation_mut(to);
        let ts = ts.max(conversation.last_activity);
        conversation.timeline.push_back(Entry {
            id,
            sender,
            ts,
            content: Content::Notice(text),
            state: None,
        });
        while conversation.timeline.len() > keep {
            conversation.timeline.pop_front();
        }
    }

    fn take_in(&mut self, event: &ClientEvent, live: bool, limit: usize) {
        if live {
            self.track_members(event);
        }
        match event {
            ClientEvent::Presence { user, change } => {
                let said = match change {
                    PresenceChange::Online(status) => {
                        self.online.insert(user.clone(), *status);
                        "joined".to_owned()
                    }
                    PresenceChange::Status(status) => {
                        self.online.insert(user.clone(), *status);
                        format!("is now {}", status.as_str())
                    }
                    PresenceChange::Offline => {
                        self.online.remove(user);
                        "left".to_owned()
                    }
                };
                // Said in the lobby, as everyone sees it; never unread.
                if live {
                    let ts = self.latest;
                    self.push_notice(&ConversationId::Lobby, Some(user.clone()), said, ts);
                }
                return;
            }
            ClientEvent::Security { message } => {
                self.notices.push_back(message.clone());
                while self.notices.len() > MAX_NOTICES {
                    self.notices.pop_front();
                }
                return;
            }
            ClientEvent::Disconnected { reason } => {
                self.connection = ConnectionState::Disconnected(reason.clone());
                return;
            }
            ClientEvent::Sending {
                id,
                name,
                sent,
                total,
            } => {
                if sent >= total {
                    self.transfers.remove(id);
                } else {
                    self.transfers.insert(*id, (name.clone(), *sent, *total));
                }
                return;
            }
            ClientEvent::LobbyMissed { count } => {
                let text = format!(
                    "{count} older lobby messages were sent while you were away (@history shows them)"
                );
                let ts = self.conversation_mut(&ConversationId::Lobby).last_activity;
                self.note(&ConversationId::Lobby, text, ts);
                return;
            }
            ClientEvent::Reconnecting {
                reason,
                attempt,
                retry_in_ms,
            } => {
                self.connection = ConnectionState::Reconnecting {
                    reason: reason.clone(),
                    attempt: *attempt,
                    retry_in_ms: *retry_in_ms,
                };
                return;
            }
            ClientEvent::Reconnected { online } => {
                self.connection = ConnectionState::Connected;
                self.set_online(online.iter().map(|p| (p.user.clone(), p.status)));
                return;
            }
            _ => {}
        }
        let Some(id) = ConversationId::of(event, &self.me) else {
            return;
        };
        let Some((sender, ts, content)) = entry_of(event, &self.me) else {
            return;
        };
        let mine = sender.as_ref() == Some(&self.me);
        let mention = !mine && mentions(&content, &self.me);
        let entry_id = self.next_entry;
        self.next_entry += 1;
        let selected = self.selected == id;
        let latest = self.latest;
        let keep = self.keep;
        let conversation = self.conversation_mut(&id);
        // Group notices carry no time of their own: they go where they
        // came, at the front end's time (or the newest seen).
        let ts = match ts {
            0 => latest.max(conversation.last_activity),
            ts => ts,
        };
        let entry = Entry {
            id: entry_id,
            sender,
            ts,
            content,
            state: mine.then_some(SendState::Sent),
        };
        if live {
            // The same message can come live and from a history page read
            // at the same time (the backlog at login): shown once.
            let seen = conversation
                .timeline
                .iter()
                .rev()
                .take_while(|e| e.ts >= entry.ts)
                .any(|e| {
                    e.ts == entry.ts && e.sender == entry.sender && e.content == entry.content
                });
            if seen {
                return;
            }
            conversation.timeline.push_back(entry);
        } else {
            // History goes in time order, once: what also came live (the
            // backlog at login) is not shown twice.
            let timeline = &mut conversation.timeline;
            let at = timeline.partition_point(|e| e.ts <= entry.ts);
            let duplicate = timeline
                .range(..at)
                .rev()
                .take_while(|e| e.ts == entry.ts)
                .any(|e| e.sender == entry.sender && e.content == entry.content);
            if duplicate || timeline.len() >= limit {
                return;
            }
            timeline.insert(at, entry);
        }
        while live && conversation.timeline.len() > keep {
            conversation.timeline.pop_front();
        }
        conversation.last_activity = conversation.last_activity.max(ts);
        if live && !selected && !mine {
            conversation.unread += 1;
            conversation.mentioned |= mention;
            conversation.first_unread.get_or_insert(entry_id);
        }
        self.latest = self.latest.max(ts);
    }

    /// Records a message the user is sending to `to`: shown at once as
    /// pending; its id for [`Model::sent`] or [`Model::failed`].
    pub fn sending(&mut self, to: &ConversationId, text: &str, now: i64) -> EntryId {
        let id = self.next_entry;
        self.next_entry += 1;
        let me = self.me.clone();
        let conversation = self.conversation_mut(to);
        conversation.timeline.push_back(Entry {
            id,
            sender: Some(me),
            ts: now,
            content: Content::Text(text.to_owned()),
            state: Some(SendState::Pending),
        });
        conversation.last_activity = conversation.last_activity.max(now);
        self.latest = self.latest.max(now);
        id
    }

    /// The server stored the message (at server time `ts`).
    pub fn sent(&mut self, to: &ConversationId, entry: EntryId, ts: i64) {
        if let Some(e) = self.entry_mut(to, entry) {
            e.state = Some(SendState::Sent);
            e.ts = ts;
        }
    }

    /// The message was not stored, and why.
    pub fn failed(&mut self, to: &ConversationId, entry: EntryId, reason: &str) {
        if let Some(e) = self.entry_mut(to, entry) {
            e.state = Some(SendState::Failed(reason.to_owned()));
        }
    }

    fn entry_mut(&mut self, to: &ConversationId, entry: EntryId) -> Option<&mut Entry> {
        self.conversations
            .get_mut(to)?
            .timeline
            .iter_mut()
            .rev()
            .find(|e| e.id == entry)
    }

    /// A received file waiting for an answer (offer `id`) was saved at
    /// `path`, or (`None`) discarded: its entries say so.
    pub fn offer_settled(&mut self, id: u64, path: Option<std::path::PathBuf>) {
        for conversation in self.conversations.values_mut() {
            for entry in conversation.timeline.iter_mut() {
                if let Content::File {
                    offer,
                    path: saved,
                    name,
                    ..
                } = &mut entry.content
                    && *offer == Some(id)
                {
                    *offer = None;
                    match &path {
                        Some(path) => *saved = Some(path.clone()),
                        None => {
                            let text = format!("file {name} discarded");
                            entry.content = Content::Notice(text);
                        }
                    }
                }
            }
        }
    }

    /// The oldest security notice, marked seen.
    pub fn take_notice(&mut self) -> Option<String> {
        self.notices.pop_front()
    }
}

/// Whether `content` names `me` (`@me` or `me` as a word).
pub fn mentions(content: &Content, me: &Username) -> bool {
    let Content::Text(text) = content else {
        return false;
    };
    let me = me.as_str();
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || "_-.".contains(c)))
        .any(|word| word == me)
}

/// What an event shows in its timeline: sender, time, content.
fn entry_of(event: &ClientEvent, me: &Username) -> Option<(Option<Username>, i64, Content)> {
    let text = |from: &Username, ts: i64, t: &str| {
        Some((Some(from.clone()), ts, Content::Text(t.to_owned())))
    };
    let notice =
        |from: &Username, what: String| Some((Some(from.clone()), 0, Content::Notice(what)));
    let names = |users: &[Username]| {
        users
            .iter()
            .map(Username::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match event {
        ClientEvent::Lobby { from, text: t, ts }
        | ClientEvent::Private {
            from, text: t, ts, ..
        }
        | ClientEvent::Group {
            from, text: t, ts, ..
        } => text(from, *ts, t),
        ClientEvent::Sealed { id, from, ts, .. } => {
            Some((Some(from.clone()), *ts, Content::Sealed { id: *id }))
        }
        ClientEvent::File {
            from,
            name,
            path,
            size,
            ts,
            ..
        } => Some((
            Some(from.clone()),
            *ts,
            Content::File {
                name: name.clone(),
                size: *size,
                path: Some(path.clone()),
                offer: None,
            },
        )),
        ClientEvent::FileOffered {
            id,
            from,
            name,
            size,
            ts,
            ..
        } => Some((
            Some(from.clone()),
            *ts,
            Content::File {
                name: name.clone(),
                size: *size,
                path: None,
                offer: Some(*id),
            },
        )),
        ClientEvent::FileRefused {
            from,
            name,
            reason,
            ts,
            ..
        } => Some((
            Some(from.clone()),
            *ts,
            Content::Notice(format!("file {name} not kept: {reason}")),
        )),
        ClientEvent::Undecodable { from, reason, ts } => Some((
            Some(from.clone()),
            *ts,
            Content::Notice(format!("could not read a message: {reason}")),
        )),
        ClientEvent::GroupCreated { by, members, .. } => {
            notice(by, format!("created the group with {}", names(members)))
        }
        ClientEvent::MembersAdded { by, members, .. } => {
            notice(by, format!("added {}", names(members)))
        }
        ClientEvent::MembersInvited { by, members, .. } => {
            notice(by, format!("invited {}", names(members)))
        }
        ClientEvent::MemberJoined { user, .. } => notice(user, "joined".to_owned()),
        ClientEvent::InvitationDeclined { user, .. } => {
            notice(user, "declined the invitation".to_owned())
        }
        ClientEvent::MembersKicked { by, members, .. } => {
            notice(by, format!("removed {}", names(members)))
        }
        ClientEvent::MemberLeft {
            user, new_owner, ..
        } => notice(
            user,
            match new_owner {
                Some(owner) => format!("left; {owner} owns the group now"),
                None => "left".to_owned(),
            },
        ),
        ClientEvent::GroupDeleted { by, .. } => notice(by, "deleted the group".to_owned()),
        ClientEvent::RemovedFromGroup { by, .. } if by != me => {
            notice(by, "removed you from the group".to_owned())
        }
        ClientEvent::Invited { by, group, .. } => notice(
            by,
            format!("invited you: @group accept {group} or @group decline {group}"),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
