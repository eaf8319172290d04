//! What a finished command shows: its pending message marked sent or
//! failed, and its result as lines in the conversation it was typed in.

use sotto_client::ClientError;
use sotto_client::dispatch::Outcome;
use sotto_client::model::{ConversationId, EntryId};
use sotto_proto::DeliveryNote;

use crate::app::{App, now_ms};

impl App {
    /// A command ended with `result`; `pending` is its message entry.
    pub fn finished(
        &mut self,
        result: Result<Outcome, ClientError>,
        pending: Option<(ConversationId, EntryId)>,
    ) {
        let here = self.model.selected().clone();
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
                    let ts = echo.as_ref().and_then(|e| e.ts()).unwrap_or_else(now_ms);
                    self.model.sent(to, *entry, ts);
                }
                if let Some((user, note)) = note {
                    let to = pending.map_or(here, |(to, _)| to);
                    let text = match note {
                        DeliveryNote::RecipientOffline => {
                            format!("{user} is offline; they get it when they log in")
                        }
                        DeliveryNote::RecipientDnd => {
                            format!("{user} is in do-not-disturb; it waits until they leave it")
                        }
                        DeliveryNote::RecipientAway => format!("{user} is away"),
                    };
                    self.model.note(&to, text, now_ms());
                }
            }
            Ok(Outcome::Status(status)) => {
                self.status = status;
                self.flash = Some(format!("your status: {}", status.as_str()));
            }
            Ok(Outcome::Done("status")) => {
                self.flash = Some("status changed".into());
            }
            Ok(Outcome::Help(_)) => self.help = true,
            Ok(Outcome::Quit) => self.quit = true,
            Ok(Outcome::Joined(group)) => {
                self.model.set_group(&group);
                if !self.groups.contains(&group.name) {
                    self.groups.push(group.name.clone());
                }
                let id = ConversationId::Group(group.name.clone());
                self.model
                    .note(&id, format!("you joined {}", group.name), now_ms());
                self.select(id);
            }
            Ok(Outcome::Invited {
                command,
                group,
                asked,
            }) => {
                self.model.set_group(&group);
                if !self.groups.contains(&group.name) {
                    self.groups.push(group.name.clone());
                }
                let lines = describe(&Ok(Outcome::Invited {
                    command,
                    group: group.clone(),
                    asked,
                }));
                let id = ConversationId::Group(group.name);
                for line in lines {
                    self.model.note(&id, line, now_ms());
                }
                self.select(id);
            }
            Ok(Outcome::Groups {
                groups,
                invitations,
            }) => {
                for group in &groups {
                    self.model.set_group(group);
                    if !self.groups.contains(&group.name) {
                        self.groups.push(group.name.clone());
                    }
                }
                let outcome = Ok(Outcome::Groups {
                    groups,
                    invitations,
                });
                for line in describe(&outcome) {
                    self.model.note(&here, line, now_ms());
                }
            }
            Ok(Outcome::History(events)) => {
                for event in &events {
                    self.model.apply_history(event);
                }
                if pending.is_none() && self.history_loaded {
                    self.flash = Some(format!(
                        "{} messages of history, each in its conversation (PageUp for older)",
                        events.len()
                    ));
                }
                self.history_loaded = true;
            }
            Ok(outcome) => {
                for line in describe(&Ok(outcome)) {
                    self.model.note(&here, line, now_ms());
                }
            }
        }
    }
}

/// The lines a result shows.
pub fn describe(result: &Result<Outcome, ClientError>) -> Vec<String> {
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => return vec![format!("error: {e}")],
    };
    match outcome {
        Outcome::Help(text) => text.lines().map(str::to_owned).collect(),
        Outcome::Sent { to, .. } => vec![format!("sent to {to}")],
        Outcome::Opened { id, from, text } => vec![format!("sealed #{id} from {from}: {text}")],
        Outcome::Names { users, total } => {
            let names: Vec<String> = users
                .iter()
                .map(|u| format!("{} ({})", u.user, u.status.as_str()))
                .collect();
            vec![format!("online ({total}): {}", names.join(", "))]
        }
        Outcome::Status(status) => vec![format!("your status: {}", status.as_str())],
        Outcome::Done(what) => vec![format!("{what}: done")],
        Outcome::Invited { group, asked, .. } => {
            let members: Vec<&str> = group.members.iter().map(|m| m.as_str()).collect();
            let mut lines = vec![format!("group {}: {}", group.name, members.join(", "))];
            if !asked.is_empty() {
                let asked: Vec<&str> = asked.iter().map(|m| m.as_str()).collect();
                lines.push(format!("invited (they must accept): {}", asked.join(", ")));
            }
            lines
        }
        Outcome::Joined(group) => vec![format!("you joined {}", group.name)],
        Outcome::Groups {
            groups,
            invitations,
        } => {
            let mut lines: Vec<String> = groups
                .iter()
                .map(|g| {
                    let members: Vec<&str> = g.members.iter().map(|m| m.as_str()).collect();
                    format!(
                        "group {} (owner {}): {}",
                        g.name,
                        g.owner,
                        members.join(", ")
                    )
                })
                .collect();
            if lines.is_empty() {
                lines.push("you are in no group (@group set NAME user1,user2 makes one)".into());
            }
            for invitation in invitations {
                lines.push(format!(
                    "invited to {} by {}: @group accept {} or @group decline {}",
                    invitation.group, invitation.by, invitation.group, invitation.group
                ));
            }
            lines
        }
        Outcome::WaitingFiles(offers) => {
            if offers.is_empty() {
                return vec!["no files are waiting".into()];
            }
            offers
                .iter()
                .map(|o| {
                    format!(
                        "file #{} {} ({} bytes) from {}: @accept {} or @reject {}",
                        o.id, o.name, o.size, o.from, o.id, o.id
                    )
                })
                .collect()
        }
        Outcome::FileSaved { name, path, size } => {
            vec![format!("saved {name} ({size} bytes) to {}", path.display())]
        }
        Outcome::FileRejected(offer) => {
            vec![format!("file #{} {} discarded", offer.id, offer.name)]
        }
        Outcome::AutoAccept(auto) => vec![format!(
            "from verified contacts: groups joined by themselves {}, files saved by themselves {}",
            on_off(auto.groups),
            on_off(auto.files)
        )],
        Outcome::History(events) => vec![format!("{} messages of history", events.len())],
        Outcome::Devices(devices) => devices
            .iter()
            .map(|d| {
                format!(
                    "device {} {}{}",
                    d.device,
                    d.fingerprint,
                    if d.this_device { " (this one)" } else { "" }
                )
            })
            .collect(),
        Outcome::DeviceRemoved(device) => vec![format!("device {device} removed")],
        Outcome::DeviceTrusted(device) => vec![format!("device {} accepted", device.device)],
        Outcome::Verification {
            verification,
            confirmed,
        } => {
            let mut lines = vec![format!(
                "safety number with {} ({}):",
                verification.user,
                if verification.verified {
                    "verified"
                } else {
                    "not verified"
                }
            )];
            let groups: Vec<&str> = verification.safety_number.split_whitespace().collect();
            for row in groups.chunks(4) {
                lines.push(format!("    {}", row.join("  ")));
            }
            if *confirmed {
                lines.push(format!("{} is now verified", verification.user));
            } else if !verification.verified {
                lines.push(format!(
                    "compare it with {} in person or by call, then @verify {} confirm NUMBER",
                    verification.user, verification.user
                ));
            }
            lines
        }
        Outcome::VerificationReset(user) => vec![format!("{user} is no longer verified")],
        Outcome::PasswordWanted => vec!["type @password to change it".into()],
        Outcome::Quit => Vec::new(),
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}
