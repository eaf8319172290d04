//! The dialogs: everything the line commands do, as forms. Each turns
//! what the user filled in into a [`Command`] (parsed into the same
//! validated types as a typed line), or, for those that show a result
//! (devices, a safety number, a sealed message, waiting files, groups),
//! stays open until the command's outcome arrives.

use eframe::egui::{self, Color32, RichText};
use sotto_client::command::{Command, Verify};
use sotto_client::dispatch::Outcome;
use sotto_client::{DeviceInfo, Offer, Passphrase, Verification};
use sotto_proto::{DeviceId, GroupInfo, GroupName, Invitation, Password, Username};
use zeroize::Zeroizing;

use crate::picker::Picker;

/// An open dialog. Passwords and passphrases typed are wiped from
/// memory when it closes, and never printed.
pub enum Dialog {
    NewGroup {
        name: String,
        members: String,
    },
    Invite {
        group: GroupName,
        members: String,
    },
    SendSealed {
        to: Username,
        passphrase: Zeroizing<String>,
        text: String,
    },
    OpenSealed {
        id: u64,
        passphrase: Zeroizing<String>,
        opened: Option<(Username, String)>,
    },
    Devices {
        user: Option<Username>,
        list: Option<Vec<DeviceInfo>>,
        /// A device to remove, once confirmed.
        removing: Option<DeviceId>,
    },
    Verify {
        user: Username,
        verification: Option<Verification>,
    },
    Password {
        old: Zeroizing<String>,
        new: Zeroizing<String>,
        again: Zeroizing<String>,
    },
    SendFile {
        picker: Picker,
    },
    WaitingFiles(Option<Vec<Offer>>),
    Groups(Option<(Vec<GroupInfo>, Vec<Invitation>)>),
    Help,
    /// Asks before doing something that cannot be undone.
    Confirm {
        question: String,
        command: Command,
    },
    /// Asks before opening a received file of a kind that can run code.
    OpenFile(std::path::PathBuf),
    /// A conversation with someone, by name (also someone offline).
    NewPrivate(String),
    /// A group's other members; its owner removes one (confirmed).
    Members {
        group: GroupName,
        members: Vec<Username>,
        removing: Option<Username>,
    },
}

impl std::fmt::Debug for Dialog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Dialog::NewGroup { .. } => "NewGroup",
            Dialog::Invite { .. } => "Invite",
            Dialog::SendSealed { .. } => "SendSealed",
            Dialog::OpenSealed { .. } => "OpenSealed",
            Dialog::Devices { .. } => "Devices",
            Dialog::Verify { .. } => "Verify",
            Dialog::Password { .. } => "Password",
            Dialog::SendFile { .. } => "SendFile",
            Dialog::WaitingFiles(_) => "WaitingFiles",
            Dialog::Groups(_) => "Groups",
            Dialog::Help => "Help",
            Dialog::Confirm { .. } => "Confirm",
            Dialog::OpenFile(_) => "OpenFile",
            Dialog::NewPrivate(_) => "NewPrivate",
            Dialog::Members { .. } => "Members",
        };
        f.write_str(name)
    }
}

/// The state around a dialog.
#[derive(Debug)]
pub struct Open {
    pub dialog: Dialog,
    /// Names this dialog's requests: their results come back to it only.
    pub token: u64,
    /// A command of this dialog is running.
    pub waiting: bool,
    /// Why the last try failed.
    pub error: Option<String>,
    /// Run [`Open::first_command`] again (what it shows changed).
    pub refresh: bool,
    /// It has been drawn: the click that opened it (a menu item's, which
    /// asks its menu to close) does not close it in its first frame.
    drawn: bool,
}

/// What a dialog asked for.
#[derive(Debug)]
pub enum Asked {
    /// Run this command; the dialog stays open for its outcome.
    Run(Command),
    /// Run this command and close.
    RunAndClose(Command),
    ChangePassword {
        old: Password,
        new: Password,
    },
    /// Send this file to the conversation shown.
    SendFile(std::path::PathBuf),
    /// Open this received file with the system's program for it.
    OpenFile(std::path::PathBuf),
    /// Show the conversation with this user.
    Show(Username),
    Close,
}

impl Open {
    pub fn new(dialog: Dialog, token: u64) -> Self {
        Self {
            dialog,
            token,
            waiting: false,
            error: None,
            refresh: false,
            drawn: false,
        }
    }

    /// The command to run as the dialog opens, for those showing a result.
    pub fn first_command(&self) -> Option<Command> {
        match &self.dialog {
            Dialog::Devices { user, .. } => Some(Command::Devices(user.clone())),
            Dialog::Verify { user, .. } => Some(Command::Verify {
                user: user.clone(),
                action: Verify::Show,
            }),
            Dialog::WaitingFiles(_) => Some(Command::Files),
            Dialog::Groups(_) => Some(Command::GroupList),
            _ => None,
        }
    }

    /// A command of this dialog finished: `true` when the dialog took the
    /// result (it shows it); otherwise it goes to the conversation.
    pub fn take(&mut self, result: &Result<Outcome, sotto_client::ClientError>) -> bool {
        self.waiting = false;
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                self.error = Some(e.to_string());
                return true;
            }
        };
        self.error = None;
        match (&mut self.dialog, outcome) {
            (Dialog::Devices { list, .. }, Outcome::Devices(devices)) => {
                *list = Some(devices.clone());
            }
            (
                Dialog::Devices { removing, .. },
                Outcome::DeviceRemoved(_) | Outcome::DeviceTrusted(_),
            ) => {
                // Show the list as it is now.
                *removing = None;
                self.refresh = true;
            }
            (
                Dialog::Verify { verification, .. },
                Outcome::Verification {
                    verification: v, ..
                },
            ) => {
                *verification = Some(v.clone());
            }
            (Dialog::OpenSealed { opened, .. }, Outcome::Opened { from, text, .. }) => {
                *opened = Some((from.clone(), text.clone()));
            }
            (Dialog::WaitingFiles(list), Outcome::WaitingFiles(offers)) => {
                *list = Some(offers.clone());
            }
            (Dialog::WaitingFiles(list), Outcome::FileSaved { id, .. }) => {
                if let Some(list) = list {
                    list.retain(|o| o.id != *id);
                }
                return false;
            }
            (Dialog::WaitingFiles(list), Outcome::FileRejected(offer)) => {
                if let Some(list) = list {
                    list.retain(|o| o.id != offer.id);
                }
                return false;
            }
            (
                Dialog::Groups(shown),
                Outcome::Groups {
                    groups,
                    invitations,
                },
            ) => {
                *shown = Some((groups.clone(), invitations.clone()));
            }
            _ => return false,
        }
        true
    }

    /// Draws the dialog; what the user asked for.
    pub fn show(&mut self, ctx: &egui::Context) -> Option<Asked> {
        let mut asked = None;
        let title = self.title();
        let response = egui::Modal::new(egui::Id::unique("dialog")).show(ctx, |ui| {
            ui.set_max_width(520.0);
            ui.heading(title);
            ui.add_space(6.0);
            asked = self.body(ui);
            if let Some(error) = &self.error {
                ui.add_space(6.0);
                ui.label(RichText::new(error).color(Color32::from_rgb(0xd0, 0x3a, 0x2f)));
            }
            if self.waiting {
                ui.spinner();
            }
        });
        if asked.is_none() && std::mem::replace(&mut self.drawn, true) && response.should_close() {
            asked = Some(Asked::Close);
        }
        asked
    }

    fn title(&self) -> String {
        match &self.dialog {
            Dialog::NewGroup { .. } => "New group".into(),
            Dialog::Invite { group, .. } => format!("Invite to {group}"),
            Dialog::SendSealed { to, .. } => format!("Sealed message to {to}"),
            Dialog::OpenSealed { id, .. } => format!("Open sealed message #{id}"),
            Dialog::Devices { user, .. } => format!("{} devices", owner(user)),
            Dialog::Verify { user, .. } => format!("Verify {user}"),
            Dialog::Password { .. } => "Change your password".into(),
            Dialog::SendFile { .. } => "Send a file".into(),
            Dialog::WaitingFiles(_) => "Received files waiting for you".into(),
            Dialog::Groups(_) => "Your groups".into(),
            Dialog::Help => "Commands and keys".into(),
            Dialog::Confirm { .. } => "Are you sure?".into(),
            Dialog::OpenFile(_) => "Open a received file?".into(),
            Dialog::NewPrivate(_) => "New private conversation".into(),
            Dialog::Members { group, .. } => format!("Members of #{group}"),
        }
    }

    fn body(&mut self, ui: &mut egui::Ui) -> Option<Asked> {
        let error = &mut self.error;
        let waiting = self.waiting;
        let run =
            |result: Result<Command, String>, error: &mut Option<String>, close: bool| match result
            {
                Ok(command) if close => Some(Asked::RunAndClose(command)),
                Ok(command) => Some(Asked::Run(command)),
                Err(e) => {
                    *error = Some(e);
                    None
                }
            };
        match &mut self.dialog {
            Dialog::NewGroup { name, members } => {
                let mut entered = field(ui, "Name", name, false);
                entered |= field(ui, "Members (a, b, c)", members, false);
                ui.label(RichText::new("They are invited and join when they accept.").weak());
                buttons(ui, "Create", !waiting)
                    .or(entered.then_some(true))
                    .and_then(|ok| {
                        if ok {
                            run(new_group(name, members), error, true)
                        } else {
                            Some(Asked::Close)
                        }
                    })
            }
            Dialog::Invite { group, members } => {
                let entered = field(ui, "Users (a, b, c)", members, false);
                let group = group.clone();
                buttons(ui, "Invite", !waiting)
                    .or(entered.then_some(true))
                    .and_then(|ok| {
                        if ok {
                            let command =
                                users(members).map(|members| Command::GroupAdd { group, members });
                            run(command, error, true)
                        } else {
                            Some(Asked::Close)
                        }
                    })
            }
            Dialog::SendSealed {
                to,
                passphrase,
                text,
            } => {
                ui.label(
                    "The message is sealed with a passphrase you tell the recipient another \
                     way (in person, by phone); they need it to open the message.",
                );
                field(ui, "Passphrase", passphrase, true);
                ui.label("Message");
                ui.add(egui::TextEdit::multiline(text).desired_rows(3));
                let to = to.clone();
                buttons(ui, "Seal and send", !waiting).and_then(|ok| {
                    if !ok {
                        return Some(Asked::Close);
                    }
                    let command = Passphrase::new(passphrase.to_string())
                        .map_err(|e| format!("Passphrase: {e}"))
                        .and_then(|key| {
                            if text.trim().is_empty() {
                                Err("Write the message to seal.".to_owned())
                            } else {
                                Ok(Command::Secret {
                                    to,
                                    key,
                                    text: text.clone(),
                                })
                            }
                        });
                    run(command, error, true)
                })
            }
            Dialog::OpenSealed {
                id,
                passphrase,
                opened,
            } => {
                if let Some((from, text)) = opened {
                    ui.label(format!("From {from}:"));
                    ui.label(RichText::new(text.as_str()).strong());
                    return ui.button("Close").clicked().then_some(Asked::Close);
                }
                let entered = field(ui, "Passphrase", passphrase, true);
                let id = *id;
                buttons(ui, "Open", !waiting)
                    .or(entered.then_some(true))
                    .and_then(|ok| {
                        if !ok {
                            return Some(Asked::Close);
                        }
                        let command = Passphrase::new(passphrase.to_string())
                            .map(|key| Command::Open { id, key })
                            .map_err(|e| format!("Passphrase: {e}"));
                        run(command, error, false)
                    })
            }
            Dialog::Devices {
                user,
                list,
                removing,
            } => devices(ui, user, list.as_deref(), removing),
            Dialog::Verify { user, verification } => verify(ui, user, verification.as_ref()),
            Dialog::Password { old, new, again } => {
                field(ui, "Current password", old, true);
                field(ui, "New password", new, true);
                let entered = field(ui, "New password again", again, true);
                buttons(ui, "Change", !waiting)
                    .or(entered.then_some(true))
                    .and_then(|ok| {
                        if !ok {
                            return Some(Asked::Close);
                        }
                        if new != again {
                            *error =
                                Some("The two new passwords differ; nothing was changed.".into());
                            return None;
                        }
                        match (
                            Password::new(old.to_string()),
                            Password::new(new.to_string()),
                        ) {
                            (Ok(old), Ok(new)) => Some(Asked::ChangePassword { old, new }),
                            (Err(e), _) | (_, Err(e)) => {
                                *error = Some(format!("{e}; nothing was changed."));
                                None
                            }
                        }
                    })
            }
            Dialog::SendFile { picker } => picker.show(ui).map(|chosen| match chosen {
                Some(path) => Asked::SendFile(path),
                None => Asked::Close,
            }),
            Dialog::WaitingFiles(list) => waiting_files(ui, list.as_deref()),
            Dialog::Groups(shown) => groups(ui, shown.as_ref()),
            Dialog::Help => {
                ui.label(
                    "What you type goes to the conversation shown. The menus and the buttons \
                     above a conversation do everything else; the commands of the terminal \
                     app work in the message box too (type @help there for the list).",
                );
                ui.add_space(6.0);
                egui::Grid::new("keys").striped(true).show(ui, |ui| {
                    for (keys, what) in KEYS {
                        ui.label(RichText::new(*keys).monospace());
                        ui.label(*what);
                        ui.end_row();
                    }
                });
                ui.button("Close").clicked().then_some(Asked::Close)
            }
            Dialog::Members {
                group,
                members,
                removing,
            } => views::members(ui, group, members, removing),
            Dialog::NewPrivate(name) => {
                let entered = field(ui, "User name", name, false);
                buttons(ui, "Open", !waiting)
                    .or(entered.then_some(true))
                    .and_then(|ok| {
                        if !ok {
                            return Some(Asked::Close);
                        }
                        match Username::parse(name.trim()) {
                            Ok(user) => Some(Asked::Show(user)),
                            Err(e) => {
                                *error = Some(format!("{e}"));
                                None
                            }
                        }
                    })
            }
            Dialog::OpenFile(path) => {
                let name = path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                ui.label(format!(
                    "{name} came from another person. Opening it runs the program your system \
                     uses for its kind, and a program, a script or a document with macros can \
                     harm your computer. Open it only if you expected it from them."
                ));
                let mut asked = None;
                ui.horizontal(|ui| {
                    if ui.button("Open it").clicked() {
                        asked = Some(Asked::OpenFile(path.clone()));
                    }
                    if ui.button("Cancel").clicked() {
                        asked = Some(Asked::Close);
                    }
                });
                asked
            }
            Dialog::Confirm { question, command } => {
                ui.label(question.as_str());
                let command = command.clone();
                buttons(ui, "Yes", !waiting).map(|ok| {
                    if ok {
                        Asked::RunAndClose(command)
                    } else {
                        Asked::Close
                    }
                })
            }
        }
    }
}

/// The keyboard shortcuts.
pub const KEYS: &[(&str, &str)] = &[
    ("Enter", "send the message"),
    ("Shift+Enter", "a new line in the message"),
    (":sm", "emoji by name (Enter or Tab takes the one chosen)"),
    ("Ctrl+K", "search conversations (Enter opens the first)"),
    ("Alt+1 … Alt+9", "show conversation 1 … 9 of the list"),
    ("Ctrl+Tab", "next conversation (with Shift: the previous)"),
    ("Ctrl+O", "mark a security notice (the red banner) seen"),
];

fn owner(user: &Option<Username>) -> String {
    user.as_ref()
        .map_or_else(|| "Your".to_owned(), |u| format!("{u}'s"))
}

/// A labelled text field; the first of a dialog takes the keyboard focus
/// when nothing has it. `true` when Enter was pressed in it.
fn field(ui: &mut egui::Ui, label: &str, text: &mut String, secret: bool) -> bool {
    ui.horizontal(|ui| {
        let label = ui.label(label);
        let response = ui
            .add(
                egui::TextEdit::singleline(text)
                    .password(secret)
                    .desired_width(260.0),
            )
            .labelled_by(label.id);
        if ui.memory(|m| m.focused().is_none()) {
            response.request_focus();
        }
        response.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter))
    })
    .inner
}

/// OK and Cancel: `Some(true)` for OK, `Some(false)` for Cancel.
fn buttons(ui: &mut egui::Ui, ok: &str, enabled: bool) -> Option<bool> {
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        if ui.add_enabled(enabled, egui::Button::new(ok)).clicked() {
            return Some(true);
        }
        ui.button("Cancel").clicked().then_some(false)
    })
    .inner
}

fn users(text: &str) -> Result<Vec<Username>, String> {
    let names: Vec<&str> = text
        .split([',', ' '])
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Err("Name at least one user.".into());
    }
    names
        .into_iter()
        .map(|n| Username::parse(n).map_err(|e| format!("'{n}': {e}")))
        .collect()
}

fn new_group(name: &str, members: &str) -> Result<Command, String> {
    let group = GroupName::parse(name.trim()).map_err(|e| format!("Name: {e}"))?;
    Ok(Command::GroupSet {
        group,
        members: users(members)?,
    })
}

mod views;

use views::{devices, groups, verify, waiting_files};
