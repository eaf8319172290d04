//! The terminal UI's state: the shared front-end model plus what only a
//! terminal needs (the input line, scrolling, the help overlay, a prompt).
//! Keys go in, [`Action`]s come out; nothing here touches the terminal or
//! the network, so it is tested with plain values.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};
use sotto_client::ClientEvent;
use sotto_client::command::{self, Command, CommandError};
use sotto_client::model::{ConversationId, EntryId, Model};
use sotto_proto::{GroupName, Password, Status, Username};

use crate::input::Input;

/// Lines scrolled by PageUp/PageDown beyond a screen's worth kept in view.
const PAGE_OVERLAP: usize = 2;
/// Lines scrolled by one mouse-wheel step.
const WHEEL_LINES: usize = 3;

/// What the runtime should do after a key.
#[derive(Debug)]
pub enum Action {
    /// Carry out a command; for a message, the pending entry it fills in.
    Run {
        command: Command,
        pending: Option<(ConversationId, EntryId)>,
    },
    /// Change the password (typed into the masked prompt).
    ChangePassword {
        old: Password,
        new: Password,
    },
    Quit,
}

/// The masked prompt of `@password`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordStep {
    Current,
    New { old: String },
    Again { old: String, new: String },
}

/// Facts for the status bar.
#[derive(Debug, Clone)]
pub struct Session {
    pub me: Username,
    pub server: String,
    /// Short form of the pinned certificate fingerprint.
    pub fingerprint: String,
}

/// Everything the screen shows.
#[derive(Debug)]
pub struct App {
    pub model: Model,
    pub session: Session,
    pub input: Input,
    /// Lines scrolled up from the newest in the timeline (0: following).
    pub scroll: usize,
    /// The timeline's height at the last draw, for paging.
    pub page: usize,
    pub help: bool,
    /// A one-line message for the status bar (a result, an error, matches).
    pub flash: Option<String>,
    pub status: Status,
    pub password: Option<PasswordStep>,
    /// Colours allowed (`NO_COLOR` unset).
    pub color: bool,
    /// Groups the user belongs to (for completion and `@NAME`).
    pub groups: Vec<GroupName>,
    pub quit: bool,
    /// Times in UTC instead of the local zone (for tests).
    pub utc: bool,
    /// Paging in older history as the timeline is scrolled to its top.
    pub older: Older,
    /// Ring the terminal's bell (a private message or a mention arrived
    /// in a conversation not shown): taken by the loop.
    pub bell: bool,
    /// The history read at start has arrived (a later one is `@history`).
    pub history_loaded: bool,
    /// A fixed "now" for tests; the clock otherwise.
    pub fixed_now: Option<i64>,
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
    pub exhausted: std::collections::BTreeSet<ConversationId>,
    /// Where the next page starts, per conversation, when the last page
    /// held none of its entries (older ones of other conversations).
    pub cursor: std::collections::BTreeMap<ConversationId, i64>,
}

/// Entries read per page of older history.
pub const OLDER_PAGE: u32 = 200;

impl App {
    pub fn new(session: Session, color: bool) -> Self {
        Self {
            model: Model::new(session.me.clone()),
            session,
            input: Input::default(),
            scroll: 0,
            page: 20,
            help: false,
            flash: None,
            status: Status::Normal,
            password: None,
            color,
            groups: Vec::new(),
            quit: false,
            utc: false,
            older: Older::default(),
            bell: false,
            history_loaded: false,
            fixed_now: None,
        }
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
            .map_or_else(now_ms, |e| e.ts);
        let before = self
            .older
            .cursor
            .get(&id)
            .map_or(oldest, |c| (*c).min(oldest));
        self.older.loading = true;
        Some((id, before))
    }

    /// A page of older history arrived for `id` (asked for before `before`).
    pub fn older_loaded(
        &mut self,
        id: ConversationId,
        result: Result<Vec<ClientEvent>, sotto_client::ClientError>,
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
            self.model.apply_history(event);
        }
        let after = self.model.conversation(&id).map_or(0, |c| c.timeline.len());
        let oldest = events.iter().filter_map(ClientEvent::ts).min();
        match oldest {
            None => {
                self.older.exhausted.insert(id);
            }
            Some(_) if after >= sotto_client::model::MAX_SCROLLBACK => {
                self.flash = Some("as far back as the screen keeps; @history shows more".into());
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

    /// Takes in an event from the client.
    pub fn event(&mut self, event: &ClientEvent) {
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
        let id = ConversationId::of(event, &self.session.me);
        self.model.tick(self.fixed_now.unwrap_or_else(now_ms));
        self.model.apply(event);
        // A private message or a mention elsewhere rings the bell (a
        // terminal shows it as a notification or an urgency hint).
        if let Some(id) = id
            && id != *self.model.selected()
            && let Some(c) = self.model.conversation(&id)
            && c.unread > 0
            && (c.mentioned || matches!(id, ConversationId::Direct(_)))
        {
            self.bell = true;
        }
    }

    pub fn mouse(&mut self, mouse: MouseEvent) {
        match mouse.kind {
            MouseEventKind::ScrollUp => self.scroll_by(WHEEL_LINES as isize),
            MouseEventKind::ScrollDown => self.scroll_by(-(WHEEL_LINES as isize)),
            _ => {}
        }
    }

    fn scroll_by(&mut self, lines: isize) {
        self.scroll = self.scroll.saturating_add_signed(lines);
    }

    /// Pasted text goes into the input as typed (newlines kept), refused
    /// with a message when the message would be over the limit.
    pub fn paste(&mut self, text: &str) {
        if let Err(message) = self.input.paste(text) {
            self.flash = Some(message);
        }
    }

    /// Handles one key; what the runtime must do.
    pub fn key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        if self.help {
            // Any key closes the overlay.
            self.help = false;
            return None;
        }
        match key.code {
            KeyCode::Char('c') if ctrl => {
                self.quit = true;
                return Some(Action::Quit);
            }
            KeyCode::Char('d') if ctrl && self.input.is_empty() => {
                self.quit = true;
                return Some(Action::Quit);
            }
            KeyCode::Esc if self.password.is_some() => {
                self.password = None;
                self.input.clear();
                self.flash = Some("password change cancelled".into());
                return None;
            }
            KeyCode::Enter if alt || key.modifiers.contains(KeyModifiers::SHIFT) => {
                self.input.insert('\n');
                return None;
            }
            KeyCode::Enter => return self.enter(),
            _ => {}
        }
        if self.password.is_none() {
            match key.code {
                KeyCode::F(1) => {
                    self.help = true;
                    return None;
                }
                KeyCode::Char('?') if self.input.is_empty() => {
                    self.help = true;
                    return None;
                }
                KeyCode::Char(d @ '1'..='9') if alt => {
                    self.select_index(d as usize - '1' as usize);
                    return None;
                }
                KeyCode::Char('o') if ctrl => {
                    self.model.take_notice();
                    return None;
                }
                KeyCode::Char('l') if ctrl => return None,
                KeyCode::Char('n') if ctrl => {
                    self.select_step(1);
                    return None;
                }
                KeyCode::Char('p') if ctrl => {
                    self.select_step(-1);
                    return None;
                }
                KeyCode::PageUp => {
                    self.scroll_by(self.page.saturating_sub(PAGE_OVERLAP).max(1) as isize);
                    return None;
                }
                KeyCode::PageDown => {
                    self.scroll_by(-(self.page.saturating_sub(PAGE_OVERLAP).max(1) as isize));
                    return None;
                }
                KeyCode::End if ctrl => {
                    self.scroll = 0;
                    return None;
                }
                KeyCode::Up if !self.input.text().contains('\n') => {
                    self.input.history_prev();
                    return None;
                }
                KeyCode::Down if !self.input.text().contains('\n') => {
                    self.input.history_next();
                    return None;
                }
                KeyCode::Tab => {
                    let word = self.input.word().1.to_owned();
                    let candidates = self.candidates(&word);
                    let matches = self.input.complete(|_| candidates);
                    self.flash = (!matches.is_empty()).then(|| matches.join("  "));
                    return None;
                }
                _ => {}
            }
        }
        if let Err(message) = self.input.edit(&key) {
            self.flash = Some(message);
        }
        None
    }

    fn select_index(&mut self, index: usize) {
        let id = self.model.conversations().get(index).map(|c| c.id.clone());
        if let Some(id) = id {
            self.select(id);
        }
    }

    fn select_step(&mut self, step: isize) {
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

    pub fn select(&mut self, id: ConversationId) {
        self.model.select(id);
        self.scroll = 0;
    }

    /// Completions of `word`: commands and names after `@`, shortcodes
    /// after `:`, else user and group names.
    fn candidates(&self, word: &str) -> Vec<String> {
        if let Some(code) = word.strip_prefix(':') {
            return sotto_client::emoji::shortcodes_starting_with(code, 20)
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
        if !at.is_empty() && word == self.input.text()[..self.input.cursor()].trim_start() {
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
        names.retain(|n| n.starts_with(&bare) && *n != self.session.me.as_str());
        names.sort();
        names.dedup();
        names.into_iter().map(|n| format!("{at}{n}")).collect()
    }

    /// Enter: a password step, or the line as a command or a message to
    /// the selected conversation.
    fn enter(&mut self) -> Option<Action> {
        if let Some(step) = self.password.take() {
            let typed = std::mem::take(&mut self.input.text().to_owned());
            self.input.clear();
            return self.password_step(step, typed);
        }
        let line = self.input.take();
        if line.trim().is_empty() {
            return None;
        }
        self.scroll = 0;
        self.flash = None;
        let now = now_ms();
        let to = self.model.selected().clone();
        let command = if line.trim_start().starts_with('@') {
            match command::parse(&line) {
                Ok(command) => command,
                // `@bob` or `@crew` alone opens that conversation.
                Err(CommandError::NoMessageFor(name)) => {
                    if command::suggest(&name).is_none()
                        && let Some(id) = self.conversation_named(&name)
                    {
                        self.select(id);
                        return None;
                    }
                    self.flash = Some(match command::suggest(&name) {
                        Some(_) => CommandError::NoMessageFor(name).to_string(),
                        None if name.eq_ignore_ascii_case("lobby") => {
                            self.select(ConversationId::Lobby);
                            return None;
                        }
                        None => format!(
                            "no conversation with '{name}': nobody of that name is online or \
                             in your groups; to write to them anyway, type @{name} message"
                        ),
                    });
                    return None;
                }
                Err(e) => {
                    self.flash = Some(e.to_string());
                    return None;
                }
            }
        } else {
            match &to {
                ConversationId::Lobby => Command::Lobby(line.clone()),
                ConversationId::Direct(user) => Command::Private {
                    to: user.clone(),
                    text: line.clone(),
                },
                ConversationId::Group(group) => Command::GroupSend {
                    group: group.clone(),
                    text: line.clone(),
                },
            }
        };
        // A message (a file, a sealed message) shows at once, pending, in
        // its conversation.
        let file = |path: &std::path::Path| {
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
            let shown = sotto_client::emoji::expand_shortcodes(&text);
            let entry = self.model.sending(&id, &shown, now);
            if id != *self.model.selected() {
                self.select(id.clone());
            }
            (id, entry)
        });
        match command {
            Command::Quit => {
                self.quit = true;
                Some(Action::Quit)
            }
            // The keys are F1; @help lists every command, as in line mode.
            Command::Help => {
                let here = self.model.selected().clone();
                for line in sotto_client::command::HELP.lines() {
                    self.model.note(&here, line.to_owned(), now);
                }
                None
            }
            Command::Password => {
                self.password = Some(PasswordStep::Current);
                self.flash = Some("current password (Esc cancels):".into());
                None
            }
            command => Some(Action::Run { command, pending }),
        }
    }

    fn conversation_named(&self, name: &str) -> Option<ConversationId> {
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
        // Someone this user knows of: online, talked to, or in a group.
        let user = Username::parse(&lower).ok()?;
        let id = ConversationId::Direct(user.clone());
        let known = self.model.online.contains_key(&user)
            || self.model.conversation(&id).is_some()
            || self.model.members.values().any(|m| m.contains(&user));
        (user != self.session.me && known).then_some(id)
    }

    fn password_step(&mut self, step: PasswordStep, typed: String) -> Option<Action> {
        match step {
            PasswordStep::Current => {
                self.password = Some(PasswordStep::New { old: typed });
                self.flash = Some("new password:".into());
                None
            }
            PasswordStep::New { old } => {
                self.password = Some(PasswordStep::Again { old, new: typed });
                self.flash = Some("new password again:".into());
                None
            }
            PasswordStep::Again { old, new } => {
                if new != typed {
                    self.flash = Some("the two new passwords differ; nothing was changed".into());
                    return None;
                }
                match (Password::new(old), Password::new(new)) {
                    (Ok(old), Ok(new)) => {
                        self.flash = Some("changing the password…".into());
                        Some(Action::ChangePassword { old, new })
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        self.flash = Some(format!("{e}; nothing was changed"));
                        None
                    }
                }
            }
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
