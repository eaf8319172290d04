//! The main window: menus, the security banner, the sidebar
//! (`sidebar.rs`), the conversation shown (a header with its actions, the
//! timeline, the composer) and the status bar. It draws the shared
//! front-end state ([`Front`]) and hands what the user did to the app as
//! [`Out`]s; it never touches the network.

use std::collections::HashMap;
use std::path::PathBuf;

use eframe::egui::{self, Key, Modifiers, RichText};
use sotto_client::command::Command;
use sotto_client::dispatch::Outcome;
use sotto_client::front::{Action, Alert, Done, Front, Pending};
use sotto_client::model::ConversationId;
use sotto_client::{ClientError, ClientEvent};
use sotto_proto::{Status, Username};

use crate::composer::Composer;
use crate::dialogs::{self, Dialog, Open};
use crate::net::{Connected, Finished, ToNet};
use crate::picker::Picker;
use crate::settings::Theme;
use crate::timeline::{self, RowAction, Rows};

/// What the main window asks of the app.
#[derive(Debug)]
pub enum Out {
    Net(ToNet),
    SetTheme(Theme),
    SetNotifications(bool),
    /// Remember this device (or not) at the next start.
    SetRemember(bool),
    Quit,
}

/// The main window's state.
#[derive(Debug)]
pub struct ChatScreen {
    pub front: Front,
    pub connected: Connected,
    pub composer: Composer,
    pub dialog: Option<Open>,
    /// Each conversation's timeline layout.
    rows: HashMap<ConversationId, Rows>,
    /// The conversation search (Ctrl+K).
    pub search: String,
    /// Move the keyboard focus to the search field at the next frame.
    pub focus_search: bool,
    /// Where the file picker starts.
    pub files_dir: PathBuf,
    /// Settings shown in the menus.
    pub theme: Theme,
    pub notifications: bool,
    pub remembered: bool,
    /// The last dialog token handed out.
    next_token: u64,
    /// What was being written in each conversation not shown: a draft
    /// stays where it was begun.
    drafts: HashMap<ConversationId, String>,
    /// The conversation the composer's text belongs to.
    composing_for: ConversationId,
}

impl ChatScreen {
    pub fn new(
        connected: Connected,
        files_dir: PathBuf,
        theme: Theme,
        notifications: bool,
    ) -> Self {
        let mut front = Front::logged_in(&connected.session);
        // Only the rows in view are drawn: a conversation may hold the
        // 100,000 messages of a long history.
        front.scrollback = crate::MAX_SCROLLBACK;
        front.model.keep = crate::MAX_SCROLLBACK;
        let remembered = connected.remembered;
        Self {
            front,
            connected,
            composer: Composer::new(),
            dialog: None,
            rows: HashMap::new(),
            search: String::new(),
            focus_search: false,
            files_dir,
            theme,
            notifications,
            remembered,
            next_token: 0,
            drafts: HashMap::new(),
            composing_for: ConversationId::Lobby,
        }
    }

    /// Keeps the composer's text with its conversation when another is
    /// shown, and brings back that one's draft.
    fn swap_drafts(&mut self) {
        let shown = self.front.model.selected().clone();
        if shown == self.composing_for {
            return;
        }
        let text = std::mem::take(&mut self.composer.text);
        if !text.is_empty() {
            self.drafts.insert(self.composing_for.clone(), text);
        }
        self.composer.text = self.drafts.remove(&shown).unwrap_or_default();
        self.composer.focus = true;
        self.composing_for = shown;
    }

    /// An event from the client; an alert when the user should be told.
    pub fn event(&mut self, event: &ClientEvent) -> Option<Alert> {
        self.front.event(event)
    }

    /// A request's result: to the dialog that asked, if still open, else
    /// to the conversation. Returns a request to make (a dialog's refresh).
    pub fn finished(&mut self, finished: Finished) -> Option<Out> {
        match finished {
            Finished::Front(Done::Older(id, page)) => {
                self.front.older_loaded(id, page);
                None
            }
            Finished::Front(Done::Command(result, pending)) => {
                if let Ok(Outcome::Done("remember me")) = &result {
                    self.remembered = true;
                } else if let Ok(Outcome::Done("forget me")) = &result {
                    self.remembered = false;
                }
                self.front.finished(result, pending);
                None
            }
            Finished::Dialog(token, result) => {
                let open = self.dialog.as_mut().filter(|open| open.token == token);
                let taken = open.is_some_and(|open| open.take(&result));
                if !taken {
                    self.front.finished(result, None);
                }
                let open = self.dialog.as_mut().filter(|open| open.token == token)?;
                if std::mem::take(&mut open.refresh) {
                    let command = open.first_command()?;
                    open.waiting = true;
                    return Some(Out::Net(ToNet::Dialog { token, command }));
                }
                None
            }
        }
    }

    /// A request of the open dialog.
    fn run_in_dialog(&mut self, command: Command) -> Out {
        let token = self.dialog.as_ref().map_or(0, |open| open.token);
        Out::Net(ToNet::Dialog { token, command })
    }

    /// Runs `command` as if typed: a message shows pending in its
    /// conversation at once.
    fn run(&mut self, command: Command) -> Out {
        Out::Net(ToNet::Run(self.front.run(command)))
    }

    /// Opens a dialog (running its first command).
    pub fn open(&mut self, dialog: Dialog, out: &mut Vec<Out>) {
        self.next_token += 1;
        let token = self.next_token;
        let mut open = Open::new(dialog, token);
        if let Some(command) = open.first_command() {
            open.waiting = true;
            out.push(Out::Net(ToNet::Dialog { token, command }));
        }
        self.dialog = Some(open);
    }

    /// A typed line.
    fn submit(&mut self, line: &str, out: &mut Vec<Out>) {
        match self.front.submit(line) {
            None => {}
            Some(Action::Quit) => out.push(Out::Quit),
            Some(Action::AskPassword) => self.open(
                Dialog::Password {
                    old: Default::default(),
                    new: Default::default(),
                    again: Default::default(),
                },
                out,
            ),
            Some(action) => out.push(Out::Net(ToNet::Run(action))),
        }
    }

    /// Sends the file at `path` to the conversation shown.
    pub fn send_file(&mut self, path: PathBuf, out: &mut Vec<Out>) {
        let command = match self.front.model.selected().clone() {
            ConversationId::Direct(to) => Command::File { to, path },
            ConversationId::Group(group) => Command::GroupFile { group, path },
            ConversationId::Lobby => {
                self.front.flash = Some(
                    "Files go to a person or a group, end-to-end encrypted: open their \
                     conversation first."
                        .into(),
                );
                return;
            }
        };
        out.push(self.run(command));
    }

    /// Draws the window; what the user did.
    pub fn show(&mut self, ui: &mut egui::Ui) -> Vec<Out> {
        let mut out = Vec::new();
        self.shortcuts(ui.ctx());
        egui::Panel::top("menu").show(ui, |ui| self.menus(ui, &mut out));
        if let Some(notice) = self.front.model.notices.front().cloned() {
            let more = self.front.model.notices.len() - 1;
            let mut devices = false;
            crate::sidebar::banner(ui, &notice, more, &mut self.front, &mut devices);
            if devices {
                self.open(
                    Dialog::Devices {
                        user: None,
                        list: None,
                        removing: None,
                    },
                    &mut out,
                );
            }
        }
        egui::Panel::bottom("status").show(ui, |ui| crate::sidebar::status_bar(ui, self));
        egui::Panel::left("sidebar")
            .default_size(220.0)
            .show(ui, |ui| match crate::sidebar::show(ui, self) {
                Some(crate::sidebar::Asked::Select(id)) => self.select(id),
                Some(crate::sidebar::Asked::Dialog(dialog)) => self.open(dialog, &mut out),
                None => {}
            });
        self.swap_drafts();
        egui::CentralPanel::default().show(ui, |ui| self.conversation(ui, &mut out));
        self.dropped_files(ui.ctx(), &mut out);
        if let Some(open) = &mut self.dialog
            && let Some(asked) = open.show(ui.ctx())
        {
            self.dialog_asked(asked, &mut out);
        }
        if let Some((id, before)) = self.front.older_wanted() {
            out.push(Out::Net(ToNet::Older(id, before)));
        }
        out
    }

    /// Shows conversation `id`.
    pub fn select(&mut self, id: ConversationId) {
        self.front.select(id);
        self.composer.focus = true;
    }

    fn shortcuts(&mut self, ctx: &egui::Context) {
        let (search, next, previous, seen, digit) = ctx.input_mut(|i| {
            let digit = (0..9).find(|n| {
                let key = Key::from_name(&(n + 1).to_string());
                key.is_some_and(|key| i.consume_key(Modifiers::ALT, key))
            });
            // Some systems also send the digit as text: it is not typed.
            if let Some(n) = digit {
                let typed = (n + 1).to_string();
                i.events
                    .retain(|e| !matches!(e, egui::Event::Text(t) if *t == typed));
            }
            (
                i.consume_key(Modifiers::COMMAND, Key::K),
                i.consume_key(Modifiers::CTRL, Key::Tab),
                i.consume_key(Modifiers::CTRL | Modifiers::SHIFT, Key::Tab),
                i.consume_key(Modifiers::COMMAND, Key::O),
                digit,
            )
        });
        if search {
            self.focus_search = true;
        }
        if next {
            self.front.select_step(1);
        }
        if previous {
            self.front.select_step(-1);
        }
        if seen {
            self.front.model.take_notice();
        }
        if let Some(index) = digit {
            self.front.select_index(index);
        }
    }

    /// The user's own status, as the server announced it.
    pub fn own_status(&self) -> Status {
        self.front
            .model
            .online
            .get(&self.front.me)
            .copied()
            .unwrap_or(self.front.status)
    }

    /// The conversation shown: header, timeline, composer.
    fn conversation(&mut self, ui: &mut egui::Ui, out: &mut Vec<Out>) {
        let id = self.front.model.selected().clone();
        ui.horizontal(|ui| {
            ui.heading(title(&id));
            self.header_actions(ui, &id, out);
        });
        ui.separator();
        egui::Panel::bottom("composer").show(ui, |ui| {
            ui.add_space(4.0);
            for (name, sent, total) in self.front.model.transfers.values() {
                let fraction = *sent as f32 / (*total).max(1) as f32;
                ui.add(
                    egui::ProgressBar::new(fraction)
                        .show_percentage()
                        .text(format!("sending {name}")),
                );
            }
            let to = title(&id);
            if let Some(line) = self.composer.show(ui, &self.front, &to) {
                self.submit(&line, out);
            }
        });
        let me = self.front.me.clone();
        let rows = self.rows.entry(id.clone()).or_default();
        let drawn = match self.front.model.conversation(&id) {
            Some(conversation) => timeline::show(ui, conversation, rows, &me),
            None => timeline::Drawn::default(),
        };
        self.front.older.at_top = self.front.history_loaded && drawn.at_top;
        for action in drawn.actions {
            self.row_action(action, out);
        }
    }

    fn header_actions(&mut self, ui: &mut egui::Ui, id: &ConversationId, out: &mut Vec<Out>) {
        match id {
            ConversationId::Lobby => {
                ui.label(RichText::new("public: the server's operator can read the lobby").weak());
            }
            ConversationId::Direct(user) => {
                ui.label(RichText::new("🔒 end-to-end encrypted").weak());
                if ui.small_button("Verify…").clicked() {
                    self.open(
                        Dialog::Verify {
                            user: user.clone(),
                            verification: None,
                        },
                        out,
                    );
                }
                if ui.small_button("Devices…").clicked() {
                    self.open(
                        Dialog::Devices {
                            user: Some(user.clone()),
                            list: None,
                            removing: None,
                        },
                        out,
                    );
                }
                if ui.small_button("Sealed message…").clicked() {
                    self.open(
                        Dialog::SendSealed {
                            to: user.clone(),
                            passphrase: Default::default(),
                            text: String::new(),
                        },
                        out,
                    );
                }
                self.file_button(ui, out);
            }
            ConversationId::Group(group) if !self.front.groups.contains(group) => {
                ui.label(
                    RichText::new("You are invited to this group, or no longer in it.").weak(),
                );
                if ui.small_button("Join").clicked() {
                    out.push(self.run(Command::GroupAccept {
                        group: group.clone(),
                    }));
                }
                if ui.small_button("Decline").clicked() {
                    out.push(self.run(Command::GroupDecline {
                        group: group.clone(),
                    }));
                }
            }
            ConversationId::Group(group) => {
                ui.label(RichText::new("🔒 end-to-end encrypted").weak());
                self.file_button(ui, out);
                if ui.small_button("Members…").clicked() {
                    let mut members: Vec<Username> = self
                        .front
                        .model
                        .members
                        .get(group)
                        .map(|m| m.iter().filter(|u| **u != self.front.me).cloned().collect())
                        .unwrap_or_default();
                    members.sort();
                    self.open(
                        Dialog::Members {
                            group: group.clone(),
                            members,
                            removing: None,
                        },
                        out,
                    );
                }
                if ui.small_button("Invite…").clicked() {
                    self.open(
                        Dialog::Invite {
                            group: group.clone(),
                            members: String::new(),
                        },
                        out,
                    );
                }
                if ui.small_button("Leave").clicked() {
                    self.open(
                        Dialog::Confirm {
                            question: format!("Leave #{group}?"),
                            command: Command::GroupLeave {
                                group: group.clone(),
                            },
                        },
                        out,
                    );
                }
                if ui.small_button("Delete").clicked() {
                    self.open(
                        Dialog::Confirm {
                            question: format!("Delete #{group} for everyone? Only its owner can."),
                            command: Command::GroupDelete {
                                group: group.clone(),
                            },
                        },
                        out,
                    );
                }
            }
        }
    }

    fn file_button(&mut self, ui: &mut egui::Ui, out: &mut Vec<Out>) {
        if ui.small_button("Send a file…").clicked() {
            self.open(
                Dialog::SendFile {
                    picker: Picker::new(self.files_dir.clone()),
                },
                out,
            );
        }
    }

    fn row_action(&mut self, action: RowAction, out: &mut Vec<Out>) {
        match action {
            RowAction::Open(path) if crate::os::opens_safely(&path) => self.open_file(&path),
            RowAction::Open(path) => self.open(Dialog::OpenFile(path), out),
            RowAction::ShowInFolder(path) => {
                if let Err(e) = crate::os::show_in_folder(&path) {
                    self.front.flash = Some(format!("cannot show {}: {e}", path.display()));
                }
            }
            RowAction::Accept(id) => out.push(self.run(Command::Accept(id))),
            RowAction::Reject(id) => out.push(self.run(Command::Reject(id))),
            RowAction::OpenSealed(id) => self.open(
                Dialog::OpenSealed {
                    id,
                    passphrase: Default::default(),
                    opened: None,
                },
                out,
            ),
        }
    }

    fn open_file(&mut self, path: &std::path::Path) {
        if let Err(e) = crate::os::open(path) {
            self.front.flash = Some(if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "no program to open files is installed here (xdg-open); the file is {}",
                    path.display()
                )
            } else {
                format!("cannot open {}: {e}", path.display())
            });
        }
    }

    /// Files dropped on the window go to the conversation shown.
    fn dropped_files(&mut self, ctx: &egui::Context, out: &mut Vec<Out>) {
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_owned())
                .collect()
        });
        for path in dropped {
            self.send_file(path, out);
        }
    }

    fn dialog_asked(&mut self, asked: dialogs::Asked, out: &mut Vec<Out>) {
        let Some(open) = &mut self.dialog else {
            return;
        };
        // Typing goes on in the composer once a dialog is gone.
        self.composer.focus = !matches!(asked, dialogs::Asked::Run(_));
        match asked {
            dialogs::Asked::Close => self.dialog = None,
            dialogs::Asked::Run(command) => {
                open.waiting = true;
                open.error = None;
                out.push(self.run_in_dialog(command));
            }
            dialogs::Asked::RunAndClose(command) => {
                self.dialog = None;
                out.push(self.run(command));
            }
            dialogs::Asked::ChangePassword { old, new } => {
                self.dialog = None;
                self.front.flash = Some("changing the password…".into());
                out.push(Out::Net(ToNet::ChangePassword { old, new }));
            }
            dialogs::Asked::Show(user) => {
                self.dialog = None;
                self.select(ConversationId::Direct(user));
            }
            dialogs::Asked::OpenFile(path) => {
                self.dialog = None;
                self.open_file(&path);
            }
            dialogs::Asked::SendFile(path) => {
                self.dialog = None;
                if let Some(dir) = path.parent() {
                    self.files_dir = dir.to_owned();
                }
                self.send_file(path, out);
            }
        }
    }
}

/// A conversation's name as shown.
pub fn title(id: &ConversationId) -> String {
    match id {
        ConversationId::Lobby => "lobby".into(),
        ConversationId::Direct(user) => format!("@{user}"),
        ConversationId::Group(group) => format!("#{group}"),
    }
}

/// A result the app could not deliver: said in the conversation shown.
pub fn refused(front: &mut Front, pending: Pending, why: String) {
    front.finished(Err(ClientError::Internal(why)), pending);
}

mod menus;
