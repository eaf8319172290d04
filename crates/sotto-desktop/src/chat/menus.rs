//! The main window's menus: the app (sign out, quit), chat (new
//! conversations and groups, files, sealed messages), account (status,
//! devices, password, remember me), view (theme, notifications), help.

use eframe::egui;
use sotto_client::command::Command;
use sotto_client::model::ConversationId;
use sotto_proto::Status;

use super::{ChatScreen, Out};
use crate::dialogs::Dialog;
use crate::net::ToNet;
use crate::picker::Picker;
use crate::settings::Theme;

impl ChatScreen {
    pub(super) fn menus(&mut self, ui: &mut egui::Ui, out: &mut Vec<Out>) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("Sotto", |ui| {
                if ui
                    .button("Sign out (forget this device's sign-in)")
                    .clicked()
                {
                    out.push(Out::Net(ToNet::SignOut));
                }
                if ui.button("Quit").clicked() {
                    out.push(Out::Quit);
                }
            });
            ui.menu_button("Chat", |ui| {
                if ui.button("New group…").clicked() {
                    self.open(
                        Dialog::NewGroup {
                            name: String::new(),
                            members: String::new(),
                        },
                        out,
                    );
                }
                if ui.button("New private conversation…").clicked() {
                    self.open(Dialog::NewPrivate(String::new()), out);
                }
                if ui.button("Groups and invitations…").clicked() {
                    self.open(Dialog::Groups(None), out);
                }
                let shown = self.front.model.selected().clone();
                let can_send_file = !matches!(shown, ConversationId::Lobby);
                if ui
                    .add_enabled(can_send_file, egui::Button::new("Send a file…"))
                    .clicked()
                {
                    self.open(
                        Dialog::SendFile {
                            picker: Picker::new(self.files_dir.clone()),
                        },
                        out,
                    );
                }
                if let ConversationId::Direct(to) = &shown
                    && ui.button("Sealed message…").clicked()
                {
                    self.open(
                        Dialog::SendSealed {
                            to: to.clone(),
                            passphrase: Default::default(),
                            text: String::new(),
                        },
                        out,
                    );
                }
                if ui.button("Received files waiting…").clicked() {
                    self.open(Dialog::WaitingFiles(None), out);
                }
                if ui.button("Load older messages").clicked() {
                    self.front.older.at_top = true;
                }
            });
            ui.menu_button("Account", |ui| {
                ui.label("Your status");
                let mine = self.own_status();
                for (status, label) in [
                    (Status::Normal, "Available"),
                    (Status::Dnd, "Do not disturb"),
                    (Status::Away, "Away"),
                ] {
                    if ui.radio(mine == status, label).clicked() {
                        out.push(self.run(Command::SetStatus(status)));
                    }
                }
                ui.separator();
                if ui.button("Your devices…").clicked() {
                    self.open(
                        Dialog::Devices {
                            user: None,
                            list: None,
                            removing: None,
                        },
                        out,
                    );
                }
                if ui.button("Change password…").clicked() {
                    self.open(
                        Dialog::Password {
                            old: Default::default(),
                            new: Default::default(),
                            again: Default::default(),
                        },
                        out,
                    );
                }
                let mut remember = self.remembered;
                if ui
                    .checkbox(&mut remember, "Remember me on this device")
                    .clicked()
                {
                    out.push(Out::Net(ToNet::Remember(remember)));
                    out.push(Out::SetRemember(remember));
                }
            });
            ui.menu_button("View", |ui| {
                for (theme, label) in [
                    (Theme::System, "Theme as the system"),
                    (Theme::Light, "Light"),
                    (Theme::Dark, "Dark"),
                ] {
                    if ui.radio(self.theme == theme, label).clicked() {
                        self.theme = theme;
                        out.push(Out::SetTheme(theme));
                    }
                }
                ui.separator();
                let mut on = self.notifications;
                if ui
                    .checkbox(&mut on, "Notifications while the window is not focused")
                    .clicked()
                {
                    self.notifications = on;
                    out.push(Out::SetNotifications(on));
                }
            });
            ui.menu_button("Help", |ui| {
                if ui.button("Commands and keys…").clicked() {
                    self.open(Dialog::Help, out);
                }
            });
        });
    }
}
