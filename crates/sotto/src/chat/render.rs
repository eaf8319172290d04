//! How `sotto chat` prints: one human line per event, or with `--json` one
//! JSON object per line (always with `type`; `from`, `to`, `group`, `text`
//! where they apply) for scripts and bots.

use std::io::Write;

use chrono::{DateTime, Local};
use serde_json::{Value, json};
use sotto_client::dispatch::Outcome;
use sotto_client::sanitize::line as sanitize_line;
use sotto_client::{
    AutoAccept, ClientError, ClientEvent, DeviceInfo, Offer, Session, Verification,
};
use sotto_proto::{DeliveryNote, GroupInfo, GroupName, Invitation, Status, UserPresence, Username};

/// What a message's second and later lines start with: indented, and
/// marked, so they read as part of the message above.
const CONTINUATION: &str = "\n        | ";

/// Prints events and command results.
#[derive(Debug)]
pub struct Renderer {
    json: bool,
    me: Username,
    /// On a terminal with line editing: prints above the line being typed.
    printer: Option<sotto_tui::line::Printer>,
}

fn time(ts: i64) -> String {
    DateTime::from_timestamp_millis(ts)
        .map(|t| t.with_timezone(&Local).format("%H:%M").to_string())
        .unwrap_or_default()
}

/// "2026-12-03 14:05", local time.
fn day_and_time(ts: i64) -> String {
    DateTime::from_timestamp_millis(ts)
        .map(|t| t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// "12 bytes", "3.4 KiB", "8.0 MiB".
fn human_size(size: u64) -> String {
    match size {
        0..1024 => format!("{size} bytes"),
        1024..1_048_576 => format!("{:.1} KiB", size as f64 / 1024.0),
        _ => format!("{:.1} MiB", size as f64 / 1_048_576.0),
    }
}

/// Where a message was sent: "[group]" or "(private)".
fn place(group: Option<&GroupName>) -> String {
    group.map_or("(private)".to_owned(), |g| format!("[{g}]"))
}

fn join(names: &[Username]) -> String {
    names
        .iter()
        .map(Username::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// "alice (normal), bob (away)", and how many more are not listed.
fn online_list(users: &[UserPresence], total: u32) -> String {
    let mut text = users
        .iter()
        .map(|p| format!("{} ({})", p.user, p.status.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let more = (total as usize).saturating_sub(users.len());
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

impl Renderer {
    pub fn new(json: bool, me: Username) -> Self {
        Self {
            json,
            me,
            printer: None,
        }
    }

    /// Prints through `printer` (the line editor's), keeping what is being
    /// typed intact below the output.
    pub fn with_printer(mut self, printer: sotto_tui::line::Printer) -> Self {
        self.printer = Some(printer);
        self
    }

    fn line(&self, text: &str) {
        if let Some(printer) = &self.printer {
            printer.print(text);
            return;
        }
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    }

    /// An event's line: a message of several lines is shown as one line
    /// and indented continuations, so no line of it can pass for an event
    /// of its own.
    fn message(&self, text: &str) {
        self.line(&text.replace('\n', CONTINUATION));
    }

    fn value(&self, value: Value) {
        self.line(&value.to_string());
    }

    pub fn connected(&self, server: &str, session: &Session) {
        if self.json {
            self.value(json!({
                "type": "connected", "server": server, "user": session.user.as_str(),
                "device": session.device_id.as_str(), "registered": session.registered,
            }));
            return;
        }
        let how = if session.registered {
            " (new account registered)"
        } else {
            ""
        };
        self.line(&format!(
            "Connected to {server} as {}{how}. Type @help for commands.",
            session.user
        ));
        self.line(&format!(
            "Online: {}",
            online_list(&session.online, session.online_total)
        ));
    }

    /// What a command did.
    pub fn outcome(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Help(text) => self.help(text),
            Outcome::Sent { to, note, echo } => {
                // What one sent, shown as one would see it from another
                // device (line mode; JSON lines keep the event stream to
                // what others sent).
                if !self.json
                    && let Some(echo) = echo
                    && let Some(text) = self.event_text(echo, false)
                {
                    self.message(&text);
                }
                self.sent(to, note.clone());
            }
            Outcome::Opened { id, from, text } => self.opened(*id, from, text),
            Outcome::Names { users, total } => self.names(users, *total),
            Outcome::Status(status) => self.status(*status),
            Outcome::Done(command) => self.ok(command),
            Outcome::Invited {
                command,
                group,
                asked,
            } => self.group_invited(command, group, asked),
            Outcome::Joined(group) => self.group_joined(group),
            Outcome::Groups {
                groups,
                invitations,
            } => self.groups(groups, invitations),
            Outcome::WaitingFiles(files) => self.waiting_files(files),
            Outcome::FileSaved {
                name, path, size, ..
            } => self.file_saved(name, path, *size),
            Outcome::FileRejected(offer) => self.file_rejected(offer),
            Outcome::AutoAccept(auto) => self.auto_accept(*auto),
            Outcome::History(items) => self.history(items),
            Outcome::Devices(devices) => self.devices(devices),
            Outcome::DeviceRemoved(device) => self.device_removed(device),
            Outcome::DeviceTrusted(device) => self.device_trusted(device),
            Outcome::Verification {
                verification,
                confirmed,
            } => self.verification(verification, *confirmed),
            Outcome::VerificationReset(user) => self.verification_reset(user),
            // Handled where the input lines are read.
            Outcome::PasswordWanted | Outcome::Quit => {}
        }
    }

    pub fn help(&self, text: &str) {
        if self.json {
            self.value(json!({"type": "help", "text": text}));
        } else {
            self.line(text.trim_end());
        }
    }

    pub fn error(&self, code: &str, message: &str) {
        if self.json {
            self.value(json!({"type": "error", "code": code, "message": message}));
        } else {
            self.line(&format!("! {message}"));
        }
    }

    pub fn client_error(&self, error: &ClientError) {
        match error {
            // The server's words: one line.
            ClientError::Server(reply) => self.error(
                reply.code.as_str(),
                &sotto_client::sanitize::line(&reply.message),
            ),
            ClientError::WrongKey => self.error("wrong_key", &error.to_string()),
            other => self.error("client_error", &other.to_string()),
        }
    }

    pub fn sent(&self, to: &str, note: Option<(Username, DeliveryNote)>) {
        if self.json {
            let note = note.map(|(_, n)| match n {
                DeliveryNote::RecipientOffline => "recipient_offline",
                DeliveryNote::RecipientDnd => "recipient_dnd",
                DeliveryNote::RecipientAway => "recipient_away",
            });
            self.value(json!({"type": "sent", "to": to, "note": note}));
            return;
        }
        if let Some((user, note)) = note {
            self.line(&match note {
                DeliveryNote::RecipientOffline => {
                    format!("* {user} is offline; they will get it when they log in")
                }
                DeliveryNote::RecipientDnd => {
                    format!(
                        "* {user} is in do-not-disturb; the message is held until they leave it"
                    )
                }
                DeliveryNote::RecipientAway => format!("* {user} is away and may not respond"),
            });
        }
    }

    /// Asks for the next input line (a password: not echoed).
    pub fn prompt(&self, text: &str) {
        if self.json {
            self.value(json!({"type": "prompt", "text": text}));
        } else {
            self.line(text);
        }
    }

    pub fn password_changed(&self) {
        if self.json {
            self.value(json!({"type": "ok", "command": "password"}));
        } else {
            self.line("* Password changed. This device's local store is sealed with it now; other devices keep their sessions.");
        }
    }

    pub fn ok(&self, command: &str) {
        if self.json {
            self.value(json!({"type": "ok", "command": command}));
            return;
        }
        let done = match command {
            "status" => "Status changed.",
            "group kick" => "Removed from the group.",
            "group leave" => "You left the group.",
            "group delete" => "Group deleted; its members are told.",
            "group decline" => "Invitation declined.",
            _ => "Done.",
        };
        self.line(&format!("* {done}"));
    }

    pub fn names(&self, users: &[UserPresence], total: u32) {
        if self.json {
            let users: Vec<Value> = users
                .iter()
                .map(|p| json!({"user": p.user.as_str(), "status": p.status.as_str()}))
                .collect();
            self.value(json!({"type": "names", "users": users, "total": total}));
        } else {
            self.line(&format!("Online: {}", online_list(users, total)));
        }
    }

    pub fn status(&self, status: Status) {
        if self.json {
            self.value(json!({"type": "status", "status": status.as_str()}));
        } else {
            self.line(&format!("Your status: {}", status.as_str()));
        }
    }

    pub fn groups(&self, groups: &[GroupInfo], invitations: &[Invitation]) {
        if self.json {
            let groups: Vec<Value> = groups
                .iter()
                .map(|g| {
                    json!({"group": g.name.as_str(), "owner": g.owner.as_str(),
                    "members": g.members.iter().map(Username::as_str).collect::<Vec<_>>(),
                    "invited": g.invited.iter().map(Username::as_str).collect::<Vec<_>>()})
                })
                .collect();
            let invitations: Vec<Value> = invitations
                .iter()
                .map(|i| json!({"group": i.group.as_str(), "by": i.by.as_str(), "ts": i.ts}))
                .collect();
            self.value(json!({"type": "groups", "groups": groups, "invitations": invitations}));
            return;
        }
        if groups.is_empty() {
            self.line("You are in no groups.");
        }
        for g in groups {
            let invited = if g.invited.is_empty() {
                String::new()
            } else {
                format!("; invited: {}", join(&g.invited))
            };
            self.line(&format!(
                "{} (owner {}): {}{invited}",
                g.name,
                g.owner,
                join(&g.members)
            ));
        }
        for i in invitations {
            self.line(&format!(
                "Invited to {} by {} ({}): @group accept {} or @group decline {}",
                i.group,
                i.by,
                day_and_time(i.ts),
                i.group,
                i.group
            ));
        }
    }

    /// After `@group set` or `@group add`: who was invited.
    pub fn group_invited(&self, command: &str, info: &GroupInfo, asked: &[Username]) {
        if self.json {
            self.value(
                json!({"type": "ok", "command": command, "group": info.name.as_str(),
                "invited": info.invited.iter().map(Username::as_str).collect::<Vec<_>>()}),
            );
            return;
        }
        let invited: Vec<Username> = asked
            .iter()
            .filter(|u| info.invited.contains(u))
            .cloned()
            .collect();
        if invited.is_empty() {
            self.line(&format!("Group {}: {}", info.name, join(&info.members)));
        } else {
            self.line(&format!(
                "Invited {} to group {}: they join when they accept.",
                join(&invited),
                info.name
            ));
        }
    }

    /// After `@group accept`.
    pub fn group_joined(&self, info: &GroupInfo) {
        if self.json {
            self.value(json!({"type": "joined", "group": info.name.as_str()}));
            return;
        }
        self.line(&format!(
            "You joined group {} (owner {}): {}",
            info.name,
            info.owner,
            join(&info.members)
        ));
    }

    /// `@files`: the received files waiting for an answer.
    pub fn waiting_files(&self, files: &[Offer]) {
        if self.json {
            let list: Vec<Value> = files
                .iter()
                .map(|f| {
                    json!({"id": f.id, "from": f.from.as_str(),
                    "group": f.group.as_ref().map(|g| g.as_str()), "name": f.name,
                    "size": f.size, "ts": f.ts})
                })
                .collect();
            self.value(json!({"type": "files", "files": list}));
            return;
        }
        if files.is_empty() {
            self.line("No received files are waiting for you.");
        }
        for f in files {
            self.line(&format!(
                "#{} {} {} sent {} ({}) on {}: @accept {} or @reject {}",
                f.id,
                place(f.group.as_ref()),
                f.from,
                sanitize_line(&f.name),
                human_size(f.size),
                day_and_time(f.ts),
                f.id,
                f.id
            ));
        }
    }

    /// After `@accept ID`.
    pub fn file_saved(&self, name: &str, path: &std::path::Path, size: u64) {
        if self.json {
            self.value(json!({"type": "file_saved", "name": name, "path": path, "size": size}));
            return;
        }
        self.line(&format!(
            "Saved {} ({}) to {}",
            sanitize_line(name),
            human_size(size),
            path.display()
        ));
    }

    /// After `@reject ID`.
    pub fn file_rejected(&self, offer: &Offer) {
        if self.json {
            self.value(json!({"type": "file_rejected", "id": offer.id}));
            return;
        }
        self.line(&format!(
            "Discarded {} from {}.",
            sanitize_line(&offer.name),
            offer.from
        ));
    }

    /// `@auto`: what verified contacts may do without asking.
    pub fn auto_accept(&self, auto: AutoAccept) {
        if self.json {
            self.value(json!({"type": "auto", "groups": auto.groups, "files": auto.files}));
            return;
        }
        let onoff = |on: bool| if on { "on" } else { "off" };
        self.line(&format!(
            "Verified contacts may, without asking: add you to groups: {} (@auto groups on|off); \
             send you files that are saved at once: {} (@auto files on|off).",
            onoff(auto.groups),
            onoff(auto.files)
        ));
    }

    pub fn devices(&self, devices: &[DeviceInfo]) {
        if self.json {
            let list: Vec<Value> = devices
                .iter()
                .map(|d| {
                    json!({"user": d.user.as_str(), "device": d.device.as_str(),
                    "fingerprint": d.fingerprint, "verified": d.verified,
                    "gets_keys": d.gets_keys, "this_device": d.this_device})
                })
                .collect();
            self.value(json!({"type": "devices", "devices": list}));
            return;
        }
        if devices.is_empty() {
            self.line("No devices with published keys.");
        }
        for d in devices {
            let how_to_accept = if d.user == self.me {
                format!("@devices trust {}", d.device)
            } else {
                format!("@devices {} trust {}", d.user, d.device)
            };
            let state = if d.this_device {
                "this device".to_owned()
            } else if d.verified {
                "verified".to_owned()
            } else if d.gets_keys && d.user == self.me {
                "accepted".to_owned()
            } else if d.gets_keys {
                "not verified".to_owned()
            } else {
                format!("NOT ACCEPTED: gets no keys until you type {how_to_accept}")
            };
            self.line(&format!(
                "{} {}  {}  ({state})",
                d.user, d.device, d.fingerprint
            ));
        }
    }

    pub fn device_removed(&self, device: &sotto_proto::DeviceId) {
        if self.json {
            self.value(json!({"type": "device_removed", "device": device.as_str()}));
            return;
        }
        self.line(&format!(
            "Device {device} removed: it is signed out, and your contacts' next messages \
             use keys it does not get."
        ));
    }

    /// A device accepted with `@devices [USER] trust ID`.
    pub fn device_trusted(&self, d: &DeviceInfo) {
        if self.json {
            self.value(json!({"type": "device_trusted", "user": d.user.as_str(),
                "device": d.device.as_str(), "fingerprint": d.fingerprint}));
            return;
        }
        self.line(&format!(
            "Accepted {}'s device {} ({}): it gets keys from now on, and those of what it missed since it appeared.",
            d.user, d.device, d.fingerprint
        ));
    }

    /// `@verify USER reset` done.
    pub fn verification_reset(&self, user: &Username) {
        if self.json {
            self.value(json!({"type": "verification_reset", "user": user.as_str()}));
            return;
        }
        self.line(&format!(
            "Forgot the keys pinned for {user}: their devices are pinned again from the server's directory, unverified. Compare safety numbers again (@verify {user})."
        ));
    }

    pub fn verification(&self, v: &Verification, confirmed: bool) {
        if self.json {
            self.value(json!({"type": "verification", "user": v.user.as_str(),
                "safety_number": v.safety_number, "verified": v.verified}));
            return;
        }
        self.line(&format!(
            "Safety number with {}: {}",
            v.user, v.safety_number
        ));
        if confirmed && v.verified {
            self.line(&format!(
                "{} is now verified: a device they add gets no keys until you accept it.",
                v.user
            ));
        } else if v.verified {
            self.line(&format!("{} is verified.", v.user));
        } else {
            self.line(&format!(
                "Compare it with {} in person or on a call; if it matches, type \
                 @verify {} confirm followed by the number",
                v.user, v.user
            ));
        }
    }

    pub fn opened(&self, id: u64, from: &Username, text: &str) {
        if self.json {
            self.value(json!({"type": "opened", "id": id, "from": from.as_str(), "text": text}));
        } else {
            self.message(&format!("(secret #{id}) {from}: {text}"));
        }
    }

    pub fn history(&self, items: &[ClientEvent]) {
        if self.json {
            let items: Vec<Value> = items.iter().filter_map(|e| self.event_json(e)).collect();
            self.value(json!({"type": "history", "items": items}));
            return;
        }
        let messages = items
            .iter()
            .filter(|e| !matches!(e, ClientEvent::HistoryPruned { .. }))
            .count();
        self.line(&format!("--- last {messages} messages ---"));
        for item in items {
            if let Some(text) = self.event_text(item, true) {
                self.message(&text);
            }
        }
        self.line("--- end of history ---");
    }

    pub fn event(&self, event: &ClientEvent) {
        if self.json {
            if let Some(value) = self.event_json(event) {
                self.value(value);
            }
        } else if let Some(text) = self.event_text(event, false) {
            self.message(&text);
        }
    }
}

mod events;
