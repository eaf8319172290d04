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

use crate::picker::Picker;

/// An open dialog.
#[derive(Debug)]
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
        passphrase: String,
        text: String,
    },
    OpenSealed {
        id: u64,
        passphrase: String,
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
        old: String,
        new: String,
        again: String,
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
}

/// The state around a dialog.
#[derive(Debug)]
pub struct Open {
    pub dialog: Dialog,
    /// A command of this dialog is running.
    pub waiting: bool,
    /// Why the last try failed.
    pub error: Option<String>,
    /// Run [`Open::first_command`] again (what it shows changed).
    pub refresh: bool,
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
    Close,
}

impl Open {
    pub fn new(dialog: Dialog) -> Self {
        Self {
            dialog,
            waiting: false,
            error: None,
            refresh: false,
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
        if !self.waiting {
            return false;
        }
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
        if asked.is_none() && response.should_close() {
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
                field(ui, "Name", name, false);
                field(ui, "Members (a, b, c)", members, false);
                ui.label(RichText::new("They are invited and join when they accept.").weak());
                buttons(ui, "Create", !waiting).and_then(|ok| {
                    if ok {
                        run(new_group(name, members), error, true)
                    } else {
                        Some(Asked::Close)
                    }
                })
            }
            Dialog::Invite { group, members } => {
                field(ui, "Users (a, b, c)", members, false);
                let group = group.clone();
                buttons(ui, "Invite", !waiting).and_then(|ok| {
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
                    let command = Passphrase::new(passphrase.clone())
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
                field(ui, "Passphrase", passphrase, true);
                let id = *id;
                buttons(ui, "Open", !waiting).and_then(|ok| {
                    if !ok {
                        return Some(Asked::Close);
                    }
                    let command = Passphrase::new(passphrase.clone())
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
                field(ui, "New password again", again, true);
                buttons(ui, "Change", !waiting).and_then(|ok| {
                    if !ok {
                        return Some(Asked::Close);
                    }
                    if new != again {
                        *error = Some("The two new passwords differ; nothing was changed.".into());
                        return None;
                    }
                    match (Password::new(old.clone()), Password::new(new.clone())) {
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
                ui.label(RichText::new(KEYS).monospace());
                ui.separator();
                egui::ScrollArea::vertical()
                    .max_height(300.0)
                    .show(ui, |ui| {
                        ui.label(
                            RichText::new(sotto_client::command::HELP)
                                .monospace()
                                .small(),
                        );
                    });
                ui.button("Close").clicked().then_some(Asked::Close)
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
pub const KEYS: &str = "\
Enter              send      Shift+Enter   new line
Ctrl+K             search conversations
Alt+1 … Alt+9      show conversation 1 … 9
Ctrl+Tab           next conversation (Ctrl+Shift+Tab: previous)
Page Up            older messages
Ctrl+O             mark the security notice seen
Typing @help lists every command; they all work in the composer.";

fn owner(user: &Option<Username>) -> String {
    user.as_ref()
        .map_or_else(|| "Your".to_owned(), |u| format!("{u}'s"))
}

fn field(ui: &mut egui::Ui, label: &str, text: &mut String, secret: bool) {
    ui.horizontal(|ui| {
        let label = ui.label(label);
        ui.add(
            egui::TextEdit::singleline(text)
                .password(secret)
                .desired_width(260.0),
        )
        .labelled_by(label.id);
    });
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

fn devices(
    ui: &mut egui::Ui,
    user: &Option<Username>,
    list: Option<&[DeviceInfo]>,
    removing: &mut Option<DeviceId>,
) -> Option<Asked> {
    let mut asked = None;
    if let Some(device) = removing.clone() {
        ui.label(format!(
            "Remove device {device}? It is signed out and gets no more messages; logging in \
             there again makes a new device."
        ));
        ui.horizontal(|ui| {
            if ui.button("Yes, remove it").clicked() {
                asked = Some(Asked::Run(Command::RemoveDevice(device)));
            }
            if ui.button("No").clicked() {
                *removing = None;
            }
        });
        return asked;
    }
    match list {
        None => {
            ui.label("Reading the device list…");
        }
        Some(list) => {
            egui::Grid::new("devices").striped(true).show(ui, |ui| {
                for device in list {
                    ui.label(RichText::new(device.device.to_string()).monospace());
                    ui.label(RichText::new(&device.fingerprint).monospace().small());
                    let state = if device.this_device {
                        "this device"
                    } else if device.verified {
                        "verified"
                    } else if device.gets_keys {
                        "gets keys"
                    } else {
                        "not accepted"
                    };
                    ui.label(state);
                    if !device.this_device {
                        if user.is_none() && ui.small_button("Remove…").clicked() {
                            *removing = Some(device.device.clone());
                        }
                        if !device.gets_keys && ui.small_button("Accept").clicked() {
                            asked = Some(Asked::Run(Command::TrustDevice {
                                user: user.clone(),
                                device: device.device.clone(),
                            }));
                        }
                    }
                    ui.end_row();
                }
            });
            ui.label(
                RichText::new(
                    "Compare a device's fingerprint with the one its screen shows before you \
                     accept it. Removing one of your devices signs it out.",
                )
                .weak(),
            );
        }
    }
    if ui.button("Close").clicked() {
        asked = Some(Asked::Close);
    }
    asked
}

fn verify(
    ui: &mut egui::Ui,
    user: &Username,
    verification: Option<&Verification>,
) -> Option<Asked> {
    let Some(verification) = verification else {
        ui.label("Working out the safety number…");
        return ui.button("Close").clicked().then_some(Asked::Close);
    };
    ui.label(format!(
        "Compare this number with the one {user} sees on their screen, side by side or read \
         aloud on a call. If they are the same, nobody sits between your devices."
    ));
    ui.add_space(6.0);
    let groups: Vec<&str> = verification.safety_number.split_whitespace().collect();
    ui.columns(2, |columns| {
        columns[0].label(RichText::new("Your screen").weak());
        columns[1].label(RichText::new(format!("{user}'s screen should show")).weak());
        for column in columns.iter_mut() {
            for row in groups.chunks(4) {
                column.label(RichText::new(row.join("  ")).monospace().size(16.0));
            }
        }
    });
    ui.add_space(6.0);
    let mut asked = None;
    if verification.verified {
        ui.label(RichText::new(format!("✔ {user} is verified")).strong());
        ui.horizontal(|ui| {
            if ui.button("Close").clicked() {
                asked = Some(Asked::Close);
            }
            if ui.button("Forget the verification").clicked() {
                asked = Some(Asked::Run(Command::Verify {
                    user: user.clone(),
                    action: Verify::Reset,
                }));
            }
        });
    } else {
        ui.horizontal(|ui| {
            if ui.button("They match: mark verified").clicked() {
                asked = Some(Asked::Run(Command::Verify {
                    user: user.clone(),
                    action: Verify::Confirm(verification.safety_number.clone()),
                }));
            }
            if ui.button("Close").clicked() {
                asked = Some(Asked::Close);
            }
        });
    }
    asked
}

fn waiting_files(ui: &mut egui::Ui, list: Option<&[Offer]>) -> Option<Asked> {
    let mut asked = None;
    match list {
        None => {
            ui.label("Reading…");
        }
        Some([]) => {
            ui.label("No file is waiting.");
        }
        Some(list) => {
            egui::Grid::new("offers").striped(true).show(ui, |ui| {
                for offer in list {
                    ui.label(format!(
                        "{} ({}) from {}",
                        offer.name,
                        crate::timeline::human_size(offer.size),
                        offer.from
                    ));
                    if ui.small_button("Accept").clicked() {
                        asked = Some(Asked::Run(Command::Accept(offer.id)));
                    }
                    if ui.small_button("Reject").clicked() {
                        asked = Some(Asked::Run(Command::Reject(offer.id)));
                    }
                    ui.end_row();
                }
            });
        }
    }
    if ui.button("Close").clicked() {
        asked = Some(Asked::Close);
    }
    asked
}

fn groups(ui: &mut egui::Ui, shown: Option<&(Vec<GroupInfo>, Vec<Invitation>)>) -> Option<Asked> {
    let mut asked = None;
    match shown {
        None => {
            ui.label("Reading…");
        }
        Some((groups, invitations)) => {
            if groups.is_empty() {
                ui.label("You are in no group yet.");
            }
            for group in groups {
                let members: Vec<&str> = group.members.iter().map(|m| m.as_str()).collect();
                ui.label(format!(
                    "#{} (owner {}): {}",
                    group.name,
                    group.owner,
                    members.join(", ")
                ));
            }
            for invitation in invitations {
                ui.horizontal(|ui| {
                    ui.label(format!(
                        "{} invited you to #{}",
                        invitation.by, invitation.group
                    ));
                    if ui.small_button("Join").clicked() {
                        asked = Some(Asked::RunAndClose(Command::GroupAccept {
                            group: invitation.group.clone(),
                        }));
                    }
                    if ui.small_button("Decline").clicked() {
                        asked = Some(Asked::RunAndClose(Command::GroupDecline {
                            group: invitation.group.clone(),
                        }));
                    }
                });
            }
        }
    }
    if ui.button("Close").clicked() {
        asked = Some(Asked::Close);
    }
    asked
}
