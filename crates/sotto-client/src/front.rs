//! What every interactive front end does with the model, whatever it
//! draws with: a typed line becomes a command (and, for a message, a
//! pending entry in its conversation), a finished command updates the
//! model, events come in (and say when the user should be alerted), older
//! pages of history are asked for as a timeline is scrolled to its top,
//! and names complete. The terminal UI and the desktop app each keep a
//! [`Front`] and differ only in how they draw it and read input.
//!
//! Pure state like [`Model`]: nothing here touches the network. Carrying
//! out an [`Action`] is [`perform`], which runs it on a task and hands
//! back a [`Done`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sotto_proto::{DeliveryNote, GroupName, Status, Username};

use crate::command::{self, Command, CommandError};
use crate::dispatch::Outcome;
use crate::model::{ConversationId, EntryId, MAX_SCROLLBACK, Model};
use crate::{ClientError, ClientEvent, Session};

/// History loaded into the timelines at start.
pub const START_HISTORY: u32 = 200;

/// Entries read per page of older history.
pub const OLDER_PAGE: u32 = 200;

/// A message's place while it is being sent: its conversation and entry.
pub type Pending = Option<(ConversationId, EntryId)>;

/// What the front end should carry out (with [`perform`]) after a line.
#[derive(Debug)]
pub enum Action {
    /// Carry out a command; for a message, the pending entry it fills in.
    Run { command: Command, pending: Pending },
    /// `@password`: ask for the current and the new password (never on
    /// the line), then call [`Client::change_password`].
    AskPassword,
    /// `@quit`.
    Quit,
}

/// What a task started by [`perform`] came back with.
#[derive(Debug)]
pub enum Done {
    /// A command's result, and the pending entry it fills in.
    Command(Result<Outcome, ClientError>, Pending),
    /// A page of older history for a conversation.
    Older(ConversationId, Result<Vec<ClientEvent>, ClientError>),
}

/// Something the user should be told about while looking elsewhere: a
/// private message or a mention. A terminal rings for one in a
/// conversation not shown; a window not focused notifies for any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub conversation: ConversationId,
    /// It is in the conversation shown.
    pub shown: bool,
    pub from: Username,
    /// The start of the message, for a notification.
    pub preview: String,
}

/// Older pages of history, asked for when the timeline is scrolled to the
/// oldest entry in memory.
#[derive(Debug, Default)]
pub struct Older {
    /// The drawn timeline shows its oldest entry while scrolled up.
    pub at_top: bool,
    /// A page is being read.
    pub loading: bool,
    /// Conversations with nothing older, or as much as memory holds.
    pub exhausted: BTreeSet<ConversationId>,
    /// Where the next page starts, per conversation, when the last page
    /// held none of its entries (older ones of other conversations).
    pub cursor: BTreeMap<ConversationId, i64>,
}

/// A front end's state beyond drawing.
#[derive(Debug)]
pub struct Front {
    pub model: Model,
    pub me: Username,
    /// Groups the user belongs to (for completion and `@NAME`).
    pub groups: Vec<GroupName>,
    /// The user's own status, as `@status` last said.
    pub status: Status,
    /// A one-line message for the status bar (a result, an error, matches).
    pub flash: Option<String>,
    /// Paging in older history as the timeline is scrolled to its top.
    pub older: Older,
    /// Entries a conversation holds at most with older pages read in.
    pub scrollback: usize,
    /// The history read at start has arrived (a later one is `@history`).
    pub history_loaded: bool,
    /// A fixed "now" for tests; the clock otherwise.
    pub fixed_now: Option<i64>,
}

impl Front {
    /// The state for `me`, showing the lobby.
    pub fn new(me: Username) -> Self {
        Self {
            model: Model::new(me.clone()),
            me,
            groups: Vec::new(),
            status: Status::Normal,
            flash: None,
            older: Older::default(),
            scrollback: MAX_SCROLLBACK,
            history_loaded: false,
            fixed_now: None,
        }
    }

    /// The state after a login: who is online, the user's groups and
    /// their members.
    pub fn logged_in(session: &Session) -> Self {
        let mut front = Self::new(session.user.clone());
        front
            .model
            .set_online(session.online.iter().map(|p| (p.user.clone(), p.status)));
        front.groups = session.groups.iter().map(|g| g.name.clone()).collect();
        for group in &session.groups {
            front.model.set_group(group);
        }
        front
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now(&self) -> i64 {
        self.fixed_now.unwrap_or_else(now_ms)
    }

    /// Takes in an event from the client; an [`Alert`] when it is a new
    /// private message or mention (from someone else).
    pub fn event(&mut self, event: &ClientEvent) -> Option<Alert> {
        match event {
            ClientEvent::GroupCreated { group, .. } | ClientEvent::MemberJoined { group, .. }
                if !self.groups.contains(group) =>
            {
                self.groups.push(group.clone());
            }
            ClientEvent::GroupDeleted { group, .. }
            | ClientEvent::RemovedFromGroup { group, .. } => {
                self.groups.retain(|g| g != group);
            }
            _ => {}
        }
        let id = ConversationId::of(event, &self.me);
        let newest_before = id
            .as_ref()
            .and_then(|id| self.model.conversation(id))
            .and_then(|c| c.timeline.back())
            .map(|e| e.id);
        self.model.tick(self.now());
        self.model.apply(event);
        let id = id?;
        let conversation = self.model.conversation(&id)?;
        let entry = conversation.timeline.back()?;
        // A new entry (a message shown twice is kept once), by someone
        // else, privately or naming the user.
        let alerting = Some(entry.id) != newest_before
            && entry.sender.as_ref().is_some_and(|s| *s != self.me)
            && (matches!(id, ConversationId::Direct(_))
                || crate::model::mentions(&entry.content, &self.me));
        if !alerting {
            return None;
        }
        let from = entry.sender.clone()?;
        let preview = match &entry.content {
            crate::model::Content::Text(text) => text.chars().take(120).collect(),
            crate::model::Content::Sealed { .. } => "a sealed message".to_owned(),
            crate::model::Content::File { name, .. } => format!("a file: {name}"),
            crate::model::Content::Notice(text) => text.clone(),
        };
        Some(Alert {
            shown: id == *self.model.selected(),
            conversation: id,
            from,
            preview,
        })
    }

    /// Shows conversation `id` (created if new).
    pub fn select(&mut self, id: ConversationId) {
        self.model.select(id);
    }

    /// Shows the conversation at `index` in the sidebar's order.
    pub fn select_index(&mut self, index: usize) -> bool {
        let id = self.model.conversations().get(index).map(|c| c.id.clone());
        match id {
            Some(id) => {
                self.select(id);
                true
            }
            None => false,
        }
    }

    /// Shows the next (`step` 1) or previous (-1) conversation, wrapping.
    pub fn select_step(&mut self, step: isize) {
        let list: Vec<ConversationId> = self
            .model
            .conversations()
            .iter()
            .map(|c| c.id.clone())
            .collect();
        let at = list
            .iter()
            .position(|id| id == self.model.selected())
            .unwrap_or(0);
        let next = (at as isize + step).rem_euclid(list.len().max(1) as isize) as usize;
        if let Some(id) = list.get(next) {
            self.select(id.clone());
        }
    }

    /// A typed line: a command, a message to the conversation shown, or
    /// (`@bob`, `@crew` alone) a conversation to show. `None` when it was
    /// handled here (a conversation shown, an error in [`Front::flash`],
    /// `@help` listed).
    pub fn submit(&mut self, line: &str) -> Option<Action> {
        if line.trim().is_empty() {
            return None;
        }
        self.flash = None;
        let now = self.now();
        let command = if line.trim_start().starts_with('@') {
            match command::parse(line) {
                Ok(command) => command,
                Err(CommandError::NoMessageFor(name)) => {
                    self.open_named(name);
                    return None;
                }
                Err(e) => {
                    self.flash = Some(e.to_string());
                    return None;
                }
            }
        } else {
            self.message_to(self.model.selected().clone(), line.to_owned())
        };
        match command {
            Command::Quit => Some(Action::Quit),
            // @help lists every command in the conversation shown, as in
            // line mode.
            Command::Help => {
                let here = self.model.selected().clone();
                for line in command::HELP.lines() {
                    self.model.note(&here, line.to_owned(), now);
                }
                None
            }
            Command::Password => Some(Action::AskPassword),
            command => Some(self.run(command)),
        }
    }

    /// The command sending `text` to conversation `to`.
    pub fn message_to(&self, to: ConversationId, text: String) -> Command {
        match to {
            ConversationId::Lobby => Command::Lobby(text),
            ConversationId::Direct(to) => Command::Private { to, text },
            ConversationId::Group(group) => Command::GroupSend { group, text },
        }
    }

    /// `command` to carry out: a message (a file, a sealed message) shows
    /// at once, pending, in its conversation, which is shown.
    pub fn run(&mut self, command: Command) -> Action {
        let now = self.now();
        let file = |path: &Path| {
            let name = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            format!("📎 {name}")
        };
        let pending = match &command {
            Command::Lobby(text) => Some((ConversationId::Lobby, text.clone())),
            Command::Private { to, text } => {
                Some((ConversationId::Direct(to.clone()), text.clone()))
            }
            Command::GroupSend { group, text } => {
                Some((ConversationId::Group(group.clone()), text.clone()))
            }
            Command::File { to, path } => Some((ConversationId::Direct(to.clone()), file(path))),
            Command::GroupFile { group, path } => {
                Some((ConversationId::Group(group.clone()), file(path)))
            }
            Command::Secret { to, .. } => Some((
                ConversationId::Direct(to.clone()),
                "🔒 a sealed message (they open it with the passphrase)".to_owned(),
            )),
            _ => None,
        }
        .map(|(id, text)| {
            let shown = crate::emoji::expand_shortcodes(&text);
            let entry = self.model.sending(&id, &shown, now);
            if id != *self.model.selected() {
                self.select(id.clone());
            }
            (id, entry)
        });
        Action::Run { command, pending }
    }

    /// `@name` alone: shows that conversation, or says why not.
    fn open_named(&mut self, name: String) {
        if command::suggest(&name).is_none()
            && let Some(id) = self.conversation_named(&name)
        {
            self.select(id);
            return;
        }
        self.flash = Some(match command::suggest(&name) {
            Some(_) => CommandError::NoMessageFor(name).to_string(),
            None if name.eq_ignore_ascii_case("lobby") => {
                self.select(ConversationId::Lobby);
                return;
            }
            None => format!(
                "no conversation with '{name}': nobody of that name is online or \
                 in your groups; to write to them anyway, type @{name} message"
            ),
        });
    }

    /// The conversation `name` (a group of the user's, or someone they
    /// know of: online, talked to, or in a group).
    pub fn conversation_named(&self, name: &str) -> Option<ConversationId> {
        let lower = name.to_lowercase();
        if let Ok(group) = GroupName::parse(&lower)
            && (self.groups.contains(&group)
                || self
                    .model
                    .conversation(&ConversationId::Group(group.clone()))
                    .is_some())
        {
            return Some(ConversationId::Group(group));
        }
        let user = Username::parse(&lower).ok()?;
        let id = ConversationId::Direct(user.clone());
        let known = self.model.online.contains_key(&user)
            || self.model.conversation(&id).is_some()
            || self.model.members.values().any(|m| m.contains(&user));
        (user != self.me && known).then_some(id)
    }

    /// Completions of `word`: `:shortcodes:` after `:`, else user and
    /// group names (after `@`, and commands too when `first` is set: the
    /// word starts the line).
    pub fn candidates(&self, word: &str, first: bool) -> Vec<String> {
        if let Some(code) = word.strip_prefix(':') {
            return crate::emoji::shortcodes_starting_with(code, 20)
                .into_iter()
                .map(|c| format!(":{c}:"))
                .collect();
        }
        let (at, bare) = match word.strip_prefix('@') {
            Some(bare) => ("@", bare),
            None => ("", word),
        };
        let bare = bare.to_lowercase();
        let mut names: Vec<String> = Vec::new();
        if !at.is_empty() && first {
            names.extend(
                command::COMMANDS
                    .iter()
                    .filter(|c| **c != "all")
                    .map(|c| c.to_string()),
            );
        }
        names.extend(self.model.online.keys().map(|u| u.to_string()));
        names.extend(
            self.model
                .conversations()
                .iter()
                .filter_map(|c| match &c.id {
                    ConversationId::Direct(u) => Some(u.to_string()),
                    ConversationId::Group(g) => Some(g.to_string()),
                    ConversationId::Lobby => None,
                }),
        );
        names.extend(self.groups.iter().map(|g| g.to_string()));
        names.retain(|n| n.starts_with(&bare) && *n != self.me.as_str());
        names.sort();
        names.dedup();
        names.into_iter().map(|n| format!("{at}{n}")).collect()
    }

    /// The page of older history to read now, if the timeline is scrolled
    /// to its top: events before this time (milliseconds).
    pub fn older_wanted(&mut self) -> Option<(ConversationId, i64)> {
        let id = self.model.selected().clone();
        if !self.older.at_top || self.older.loading || self.older.exhausted.contains(&id) {
            return None;
        }
        let oldest = self
            .model
            .conversation(&id)
            .and_then(|c| c.timeline.front())
            .map_or_else(|| self.now(), |e| e.ts);
        let before = self
            .older
            .cursor
            .get(&id)
            .map_or(oldest, |c| (*c).min(oldest));
        self.older.loading = true;
        Some((id, before))
    }

    /// A page of older history arrived for `id`.
    pub fn older_loaded(
        &mut self,
        id: ConversationId,
        result: Result<Vec<ClientEvent>, ClientError>,
    ) {
        self.older.loading = false;
        let events = match result {
            Ok(events) => events,
            Err(e) => {
                self.flash = Some(format!("older messages: {e}"));
                self.older.exhausted.insert(id);
                return;
            }
        };
        let before = self.model.conversation(&id).map_or(0, |c| c.timeline.len());
        for event in &events {
            self.model.apply_history_up_to(event, self.scrollback);
        }
        let after = self.model.conversation(&id).map_or(0, |c| c.timeline.len());
        let oldest = events.iter().filter_map(ClientEvent::ts).min();
        match oldest {
            None => {
                self.older.exhausted.insert(id);
            }
            Some(_) if after >= self.scrollback => {
                self.flash = Some("as far back as the window keeps; @history shows more".into());
                self.older.exhausted.insert(id);
            }
            // Older entries of other conversations only: go on from there.
            Some(oldest) if after == before => {
                self.older.cursor.insert(id, oldest);
            }
            Some(_) => {
                self.older.cursor.remove(&id);
            }
        }
    }

    /// A command ended with `result`; `pending` is its message entry.
    pub fn finished(&mut self, result: Result<Outcome, ClientError>, pending: Pending) {
        let here = self.model.selected().clone();
        let now = self.now();
        match result {
            Err(error) => {
                let text = error.to_string();
                match pending {
                    Some((to, entry)) => self.model.failed(&to, entry, &text),
                    None => self.flash = Some(text),
                }
            }
            Ok(Outcome::Sent { note, echo, .. }) => {
                if let Some((to, entry)) = &pending {
                    let ts = echo.as_ref().and_then(|e| e.ts()).unwrap_or(now);
                    self.model.sent(to, *entry, ts);
                }
                if let Some((user, note)) = note {
                    let to = pending.map_or(here, |(to, _)| to);
                    self.model.note(&to, delivery_note(&user, note), now);
                }
            }
            Ok(Outcome::Status(status)) => {
                self.status = status;
                self.flash = Some(format!("your status: {}", status.as_str()));
            }
            Ok(Outcome::Done("status")) => {
                self.flash = Some("status changed".into());
            }
            Ok(Outcome::Joined(group)) => {
                self.add_group(&group);
                let id = ConversationId::Group(group.name.clone());
                self.model
                    .note(&id, format!("you joined {}", group.name), now);
                self.select(id);
            }
            Ok(outcome @ Outcome::Invited { .. }) => {
                let Outcome::Invited { group, .. } = &outcome else {
                    return;
                };
                self.add_group(group);
                let id = ConversationId::Group(group.name.clone());
                for line in describe(&outcome) {
                    self.model.note(&id, line, now);
                }
                self.select(id);
            }
            Ok(outcome @ Outcome::Groups { .. }) => {
                if let Outcome::Groups { groups, .. } = &outcome {
                    for group in groups {
                        self.add_group(group);
                    }
                }
                for line in describe(&outcome) {
                    self.model.note(&here, line, now);
                }
            }
            Ok(outcome @ (Outcome::FileSaved { .. } | Outcome::FileRejected(_))) => {
                match &outcome {
                    Outcome::FileSaved { id, path, .. } => {
                        self.model.offer_settled(*id, Some(path.clone()));
                    }
                    Outcome::FileRejected(offer) => self.model.offer_settled(offer.id, None),
                    _ => {}
                }
                for line in describe(&outcome) {
                    self.model.note(&here, line, now);
                }
            }
            Ok(Outcome::History(events)) => {
                for event in &events {
                    self.model.apply_history_up_to(event, self.scrollback);
                }
                if pending.is_none() && self.history_loaded {
                    self.flash = Some(format!(
                        "{} messages of history, each in its conversation (scroll up for older)",
                        events.len()
                    ));
                }
                self.history_loaded = true;
            }
            Ok(outcome) => {
                for line in describe(&outcome) {
                    self.model.note(&here, line, now);
                }
            }
        }
    }

    fn add_group(&mut self, group: &sotto_proto::GroupInfo) {
        self.model.set_group(group);
        if !self.groups.contains(&group.name) {
            self.groups.push(group.name.clone());
        }
    }
}

/// What the sender should know about a delivery.
pub fn delivery_note(user: &Username, note: DeliveryNote) -> String {
    match note {
        DeliveryNote::RecipientOffline => {
            format!("{user} is offline; they get it when they log in")
        }
        DeliveryNote::RecipientDnd => {
            format!("{user} is in do-not-disturb; it waits until they leave it")
        }
        DeliveryNote::RecipientAway => format!("{user} is away"),
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

mod describe;
mod tasks;

pub use describe::describe;
pub use tasks::{change_password, perform, read_older, read_start_history};

#[cfg(test)]
mod tests;
