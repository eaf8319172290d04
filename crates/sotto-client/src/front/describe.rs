//! What a command's outcome says, as lines for a conversation: the
//! words every front end uses for a result it has no view of its own for.

use sotto_proto::Username;

use crate::dispatch::Outcome;

/// The lines a command's outcome shows.
pub fn describe(outcome: &Outcome) -> Vec<String> {
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
            let mut lines = vec![format!("group {}: {}", group.name, names(&group.members))];
            if !asked.is_empty() {
                lines.push(format!("invited (they must accept): {}", names(asked)));
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
                    format!(
                        "group {} (owner {}): {}",
                        g.name,
                        g.owner,
                        names(&g.members)
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
        Outcome::FileSaved {
            name, path, size, ..
        } => {
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

fn names(users: &[Username]) -> String {
    users
        .iter()
        .map(Username::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}
