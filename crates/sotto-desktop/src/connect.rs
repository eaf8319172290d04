//! The first screen: server address, user name, password and (if the
//! server has one) the server password, "remember me", and the dialogs
//! of a first connection: the server's fingerprint to trust, or a warning
//! when it changed. Errors are said in words for this screen (the client
//! library's speak of command-line flags).

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use eframe::egui::{self, Color32, RichText};
use sotto_client::{ClientError, Fingerprint};
use sotto_proto::{ErrorCode, Password, Username};

use crate::net::{ConnectRequest, Secret};

/// A first connection's question: trust this server?
#[derive(Debug)]
pub struct TrustQuestion {
    pub server: String,
    pub fingerprint: Fingerprint,
    pub reply: std::sync::mpsc::Sender<bool>,
}

/// Why the last try failed (or what happened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Said(String),
    /// Not an error: something to know (signed out, a pin replaced).
    Note(String),
    /// The server's certificate is not the one pinned.
    Changed {
        server: String,
        expected: Fingerprint,
        got: Fingerprint,
        known_servers: PathBuf,
    },
}

/// The connect screen's state.
pub struct ConnectScreen {
    pub server: String,
    pub user: String,
    /// Wiped from memory when dropped.
    pub password: Zeroizing<String>,
    pub server_password: Zeroizing<String>,
    /// Create an account if the name is not taken (else a name not known
    /// is refused: a typo does not make an account).
    pub create: bool,
    /// The server said it needs a server password (or one was given).
    pub wants_server_password: bool,
    pub remember: bool,
    /// A try is under way.
    pub busy: bool,
    pub problem: Option<Problem>,
    pub trust: Option<TrustQuestion>,
    /// Put the keyboard focus in the first empty field at the next frame.
    focus_first: bool,
}

impl std::fmt::Debug for ConnectScreen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectScreen")
            .field("server", &self.server)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("busy", &self.busy)
            .field("problem", &self.problem)
            .finish_non_exhaustive()
    }
}

/// What the screen asks the app to do.
#[derive(Debug)]
pub enum Asked {
    Connect(ConnectRequest),
    /// The user confirmed a changed certificate with the server's
    /// operator: pin the new one.
    ReplacePin {
        server: String,
        fingerprint: Fingerprint,
        known_servers: PathBuf,
    },
}

impl ConnectScreen {
    pub fn new(server: String, user: String, remember: bool) -> Self {
        Self {
            server,
            user,
            password: Zeroizing::new(String::new()),
            server_password: Zeroizing::new(String::new()),
            create: false,
            wants_server_password: false,
            remember,
            busy: false,
            problem: None,
            trust: None,
            focus_first: true,
        }
    }

    /// A request from the form, or the reason it cannot be sent.
    pub fn request(&self, data_dir: PathBuf, remembered: bool) -> Result<ConnectRequest, String> {
        let mut server = self.server.trim().to_owned();
        if server.is_empty() {
            return Err("Type the server's address, for example chat.example.org:7443.".into());
        }
        // Sotto's port unless another is named.
        if sotto_client::ServerAddr::parse(&server).is_err()
            && sotto_client::ServerAddr::parse(&format!("{server}:7443")).is_ok()
        {
            server.push_str(":7443");
        }
        let user = Username::parse(self.user.trim()).map_err(|e| format!("User name: {e}."))?;
        let secret = if self.password.is_empty() && remembered {
            Secret::Remembered
        } else {
            Secret::Password(
                Password::new(self.password.to_string()).map_err(|e| format!("Password: {e}."))?,
            )
        };
        let server_password = if self.server_password.is_empty() {
            None
        } else {
            Some(
                Password::new(self.server_password.to_string())
                    .map_err(|e| format!("Server password: {e}."))?,
            )
        };
        Ok(ConnectRequest {
            server,
            user,
            secret,
            server_password,
            remember: self.remember,
            create: self.create,
            data_dir,
        })
    }

    /// A try failed: says why, in this screen's words.
    pub fn failed(&mut self, error: ClientError) {
        self.busy = false;
        self.trust = None;
        if matches!(error, ClientError::ServerPasswordRequired) {
            self.wants_server_password = true;
        }
        self.problem = Some(problem(error));
    }

    /// Draws the screen; what the user asked for.
    pub fn show(&mut self, ui: &mut egui::Ui, remembered: bool, data_dir: &Path) -> Option<Asked> {
        let mut asked = None;
        egui::CentralPanel::default().show(ui, |ui| {
            ui.vertical_centered(|ui| {
                ui.add_space(40.0);
                ui.label(RichText::new("Sotto").size(32.0).strong());
                ui.label("Chat where private and group messages are end-to-end encrypted.");
                ui.add_space(20.0);
            });
            // The form, a column in the middle of the window.
            let width = 340.0_f32.min(ui.available_width());
            ui.horizontal(|ui| {
                ui.add_space((ui.available_width() - width).max(0.0) / 2.0);
                ui.vertical(|ui| {
                    ui.set_width(width);
                    asked = self.form(ui, remembered, data_dir);
                });
            });
        });
        if let Some(question) = &self.trust
            && let Some(yes) = trust_dialog(ui.ctx(), question)
        {
            let _ = question.reply.send(yes);
            self.trust = None;
        }
        if let Some(Problem::Changed {
            server,
            expected,
            got,
            known_servers,
        }) = self.problem.clone()
        {
            match changed_dialog(ui.ctx(), &server, &expected, &got) {
                Some(true) => {
                    self.problem = None;
                    asked = Some(Asked::ReplacePin {
                        server,
                        fingerprint: got,
                        known_servers,
                    });
                }
                Some(false) => {
                    self.problem = Some(Problem::Said(
                        "Not connected: the server's certificate changed.".into(),
                    ));
                }
                None => {}
            }
        }
        asked
    }

    fn form(&mut self, ui: &mut egui::Ui, remembered: bool, data_dir: &Path) -> Option<Asked> {
        let enabled = !self.busy;
        let mut submit = false;
        egui::Grid::new("connect form")
            .num_columns(2)
            .spacing([12.0, 8.0])
            .show(ui, |ui| {
                let focus = &mut self.focus_first;
                let mut field =
                    |ui: &mut egui::Ui, label: &str, text: &mut String, secret: bool| {
                        let label = ui.label(label);
                        let empty = text.is_empty();
                        let edit = egui::TextEdit::singleline(text)
                            .password(secret)
                            .desired_width(220.0);
                        let response = ui.add_enabled(enabled, edit).labelled_by(label.id);
                        // Typing starts in the first empty field.
                        if empty && std::mem::take(focus) {
                            response.request_focus();
                        }
                        ui.end_row();
                        response.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter))
                    };
                submit |= field(ui, "Server", &mut self.server, false);
                submit |= field(ui, "User name", &mut self.user, false);
                submit |= field(ui, "Password", &mut self.password, true);
                if self.wants_server_password {
                    submit |= field(ui, "Server password", &mut self.server_password, true);
                }
            });
        if remembered && self.password.is_empty() {
            ui.label(
                RichText::new("This device is remembered: it signs in without the password.")
                    .weak(),
            );
        }
        ui.add_enabled(
            enabled,
            egui::Checkbox::new(&mut self.create, "Create a new account with this name"),
        )
        .on_hover_text("New on this server? Then tick this: you choose your password now.");
        ui.add_enabled(
            enabled,
            egui::Checkbox::new(&mut self.remember, "Remember me on this device"),
        )
        .on_hover_text(
            "Keeps a key that opens this device's store, never your password. \
             Anyone who can read your files can then read your messages here.",
        );
        if !self.wants_server_password
            && ui
                .small_button("This server has a server password")
                .clicked()
        {
            self.wants_server_password = true;
        }
        ui.add_space(8.0);
        let connect = ui.add_enabled(enabled, egui::Button::new("Connect"));
        if self.busy {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Connecting…");
            });
        }
        match &self.problem {
            Some(Problem::Said(text)) => {
                ui.add_space(8.0);
                ui.label(RichText::new(text).color(Color32::from_rgb(0xd0, 0x3a, 0x2f)));
            }
            Some(Problem::Note(text)) => {
                ui.add_space(8.0);
                ui.label(text);
            }
            _ => {}
        }
        if (connect.clicked() || submit) && !self.busy {
            match self.request(data_dir.to_owned(), remembered) {
                Ok(request) => {
                    self.busy = true;
                    self.problem = None;
                    return Some(Asked::Connect(request));
                }
                Err(text) => self.problem = Some(Problem::Said(text)),
            }
        }
        None
    }
}

/// The fingerprint in groups of four, over four lines.
pub fn grouped(fingerprint: &Fingerprint) -> String {
    let text = fingerprint.to_string();
    let hex = text.trim_start_matches("SHA256:");
    let groups: Vec<&str> = hex
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    groups
        .chunks(4)
        .map(|row| row.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// "Trust this server?": `Some(answer)` once the user answered.
fn trust_dialog(ctx: &egui::Context, question: &TrustQuestion) -> Option<bool> {
    let mut answer = None;
    egui::Modal::new(egui::Id::unique("trust server")).show(ctx, |ui| {
        ui.set_max_width(460.0);
        ui.heading("A server seen for the first time");
        ui.label(format!(
            "This is the first time this device connects to {}. Its certificate fingerprint is:",
            question.server
        ));
        ui.add_space(6.0);
        ui.label(
            RichText::new(grouped(&question.fingerprint))
                .monospace()
                .strong(),
        );
        ui.label(
            RichText::new(question.fingerprint.to_string())
                .monospace()
                .small()
                .weak(),
        );
        ui.add_space(6.0);
        ui.label(
            "Compare it with the fingerprint the server printed when it started (ask its \
             operator). If they match, your connection goes to that server and no one in \
             between. This device remembers it: if it ever changes, Sotto stops and warns \
             you, because someone may be intercepting the connection.",
        );
        ui.add_space(8.0);
        ui.horizontal(|ui| {
            if ui.button("Trust and connect").clicked() {
                answer = Some(true);
            }
            if ui.button("Cancel").clicked() {
                answer = Some(false);
            }
        });
    });
    answer
}

/// "The certificate changed": `Some(true)` when the user confirmed the
/// new one with the operator, `Some(false)` when they gave up.
fn changed_dialog(
    ctx: &egui::Context,
    server: &str,
    expected: &Fingerprint,
    got: &Fingerprint,
) -> Option<bool> {
    let mut answer = None;
    egui::Modal::new(egui::Id::unique("certificate changed")).show(ctx, |ui| {
        ui.set_max_width(480.0);
        ui.heading(RichText::new("Warning: the server's identity changed").color(Color32::RED));
        ui.label(format!(
            "{server} presented another certificate than the one this device trusted. \
             Someone may be intercepting your connection (a man-in-the-middle attack), or the \
             server's certificate was made anew. Nothing was sent to it."
        ));
        ui.add_space(6.0);
        egui::Grid::new("fingerprints").show(ui, |ui| {
            ui.label("Trusted before:");
            ui.label(RichText::new(grouped(expected)).monospace());
            ui.end_row();
            ui.label("Presented now:");
            ui.label(RichText::new(grouped(got)).monospace().strong());
            ui.end_row();
            ui.label("");
            ui.label(RichText::new(got.to_string()).monospace().small().weak());
            ui.end_row();
        });
        ui.add_space(6.0);
        ui.label(
            "Only if the server's operator confirms that the new fingerprint is the one the \
             server printed at start, trust it.",
        );
        ui.horizontal(|ui| {
            if ui.button("Don't connect").clicked() {
                answer = Some(false);
            }
            if ui
                .button("The operator confirmed it: trust the new certificate")
                .clicked()
            {
                answer = Some(true);
            }
        });
    });
    answer
}

/// An error of connecting, as this screen says it.
pub fn problem(error: ClientError) -> Problem {
    let said = |text: String| Problem::Said(text);
    match error {
        ClientError::CertificateChanged {
            server,
            expected,
            got,
            known_servers,
        } => Problem::Changed {
            server,
            expected,
            got,
            known_servers,
        },
        ClientError::ServerPasswordRequired => {
            said("This server needs a server password: ask its operator and type it below.".into())
        }
        ClientError::NotTrusted { .. } => {
            said("You did not trust the server, so nothing was sent to it.".into())
        }
        ClientError::Unreachable { server, source } => said(format!(
            "Cannot reach {server} ({source}). Is the address right and the server running?"
        )),
        ClientError::InvalidAddress { server, reason } => {
            said(format!("'{server}' is not a server address: {reason}."))
        }
        ClientError::Tls { server, .. } => said(format!(
            "{server} does not speak Sotto's encrypted protocol (the TLS handshake failed)."
        )),
        ClientError::PasswordNeeded(why) => said(format!("Enter your password: {why}.")),
        ClientError::Server(reply) if reply.code == ErrorCode::WrongPassword => said(format!(
            "{}. New on this server? Tick \"Create a new account with this name\".",
            reply.message
        )),
        ClientError::LocalStore(text) if text.starts_with("cannot unlock") => {
            said("Wrong password: it does not open this device's keys and messages.".into())
        }
        ClientError::Server(reply) if reply.code == ErrorCode::WrongServerPassword => {
            said(format!("The server password is wrong: {}", reply.message))
        }
        error => said(error.to_string()),
    }
}
