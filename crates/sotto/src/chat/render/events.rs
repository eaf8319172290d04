//! One event as a line of text, or as a JSON object for `--json`.

use chrono::{DateTime, Local};
use serde_json::{Value, json};
use sotto_client::ClientEvent;
use sotto_proto::{PresenceChange, Username};

use super::{Renderer, day_and_time, human_size, join, place, time};

impl Renderer {
    pub(super) fn event_text(&self, event: &ClientEvent, dated: bool) -> Option<String> {
        let stamp = |ts: i64| {
            if dated {
                DateTime::from_timestamp_millis(ts)
                    .map(|t| t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default()
            } else {
                time(ts)
            }
        };
        Some(match event {
            ClientEvent::Lobby { from, text, ts } => format!("[{}] {from}: {text}", stamp(*ts)),
            ClientEvent::Private {
                from,
                peer,
                text,
                ts,
            } if *from == self.me => {
                format!("[{}] (private) you -> {peer}: {text}", stamp(*ts))
            }
            ClientEvent::Private { from, text, ts, .. } => {
                format!("[{}] (private) {from}: {text}", stamp(*ts))
            }
            ClientEvent::Group {
                group,
                from,
                text,
                ts,
            } => format!("[{}] [{group}] {from}: {text}", stamp(*ts)),
            ClientEvent::Sealed {
                id,
                from,
                group,
                ts,
            } => {
                let place = place(group.as_ref());
                format!(
                    "[{}] {place} {from} sent a sealed message #{id}: open it with @open {id} KEY",
                    stamp(*ts)
                )
            }
            ClientEvent::File {
                from,
                group,
                name,
                path,
                size,
                ts,
            } => {
                let place = place(group.as_ref());
                format!(
                    "[{}] {place} {from} sent file {name} ({size} bytes), saved to {}",
                    stamp(*ts),
                    path.display()
                )
            }
            ClientEvent::FileOffered {
                id,
                from,
                group,
                name,
                size,
                ts,
            } => {
                let place = place(group.as_ref());
                format!(
                    "[{}] {place} {from} sends file {name} ({}): @accept {id} to save it, \
                     @reject {id} to discard it",
                    stamp(*ts),
                    human_size(*size)
                )
            }
            ClientEvent::FileRefused {
                from,
                group,
                name,
                size,
                reason,
                ts,
            } => {
                let place = place(group.as_ref());
                format!(
                    "[{}] {place} {from} sent file {name} ({}), not kept: {reason}",
                    stamp(*ts),
                    human_size(*size)
                )
            }
            ClientEvent::GroupCreated { group, by, members } => {
                format!("* {by} created group {group} with {}", join(members))
            }
            ClientEvent::MembersAdded { group, by, members } => {
                format!("* {by} added {} to group {group}", join(members))
            }
            ClientEvent::MembersInvited { group, by, members } => {
                format!("* {by} invited {} to group {group}", join(members))
            }
            ClientEvent::MemberJoined { group, user } if *user == self.me => {
                format!("* you joined group {group}")
            }
            ClientEvent::MemberJoined { group, user } => format!("* {user} joined group {group}"),
            ClientEvent::InvitationDeclined { group, user } => {
                format!("* {user} declined the invitation to group {group}")
            }
            ClientEvent::Invited {
                group,
                by,
                auto_join: false,
                ..
            } => format!(
                "* {by} invited you to group {group}: @group accept {group} or @group decline {group}"
            ),
            ClientEvent::Invited {
                group,
                by,
                auto_join: true,
                ..
            } => format!(
                "* {by}, whom you verified, invited you to group {group}: joining \
                 (@auto groups off to be asked first)"
            ),
            ClientEvent::MembersKicked { group, by, members } => {
                format!("* {by} removed {} from group {group}", join(members))
            }
            ClientEvent::MemberLeft {
                group,
                user,
                new_owner,
            } => match new_owner {
                Some(owner) => format!("* {user} left group {group}; {owner} is now its owner"),
                None => format!("* {user} left group {group}"),
            },
            ClientEvent::GroupDeleted { group, by } => {
                format!("* group {group} was deleted by {by}")
            }
            ClientEvent::RemovedFromGroup { group, by } => {
                format!("* {by} removed you from group {group}")
            }
            ClientEvent::Presence { user, change } => match change {
                PresenceChange::Online(_) => format!("* {user} joined"),
                PresenceChange::Offline => format!("* {user} left"),
                PresenceChange::Status(status) => format!("* {user} is now {}", status.as_str()),
            },
            ClientEvent::CaughtUp => return None,
            // The send's own answer says when it is stored.
            ClientEvent::Sending { .. } => return None,
            ClientEvent::LobbyMissed { count } => format!(
                "* {count} older lobby messages were sent while you were away; @history shows them"
            ),
            ClientEvent::Undecodable { from, reason, ts } => {
                format!(
                    "[{}] ! could not read a message from {from}: {reason}",
                    stamp(*ts)
                )
            }
            ClientEvent::Shutdown { message } => format!("* server: {message}"),
            ClientEvent::HistoryPruned { oldest_kept } => format!(
                "* older messages were deleted by the server's retention policy; \
                 it keeps them from {} on",
                day_and_time(*oldest_kept)
            ),
            ClientEvent::Security { message } => format!("! security: {message}"),
            ClientEvent::Disconnected { reason } => format!("! disconnected: {reason}"),
            ClientEvent::Reconnecting {
                reason,
                attempt,
                retry_in_ms,
            } => {
                // Said once per outage; the tries after it are quiet.
                if *attempt > 1 {
                    return None;
                }
                format!(
                    "! connection lost ({reason}); reconnecting in {:.1} s, and messages you \
                     send meanwhile go once it is back",
                    *retry_in_ms as f64 / 1000.0
                )
            }
            ClientEvent::Reconnected { online } => {
                format!("* reconnected; {} online", online.len())
            }
        })
    }

    pub(super) fn event_json(&self, event: &ClientEvent) -> Option<Value> {
        Some(match event {
            ClientEvent::Lobby { from, text, ts } => {
                json!({"type": "lobby", "from": from.as_str(), "text": text, "ts": ts})
            }
            ClientEvent::Private {
                from,
                peer,
                text,
                ts,
            } => {
                let to = if *from == self.me { peer } else { &self.me };
                json!({"type": "private", "from": from.as_str(), "to": to.as_str(), "text": text, "ts": ts})
            }
            ClientEvent::Group {
                group,
                from,
                text,
                ts,
            } => {
                json!({"type": "group", "group": group.as_str(), "from": from.as_str(), "text": text, "ts": ts})
            }
            ClientEvent::Sealed {
                id,
                from,
                group,
                ts,
            } => json!({"type": "sealed", "id": id, "from": from.as_str(),
                "group": group.as_ref().map(|g| g.as_str()), "ts": ts}),
            ClientEvent::File {
                from,
                group,
                name,
                path,
                size,
                ts,
            } => json!({"type": "file", "from": from.as_str(),
                "group": group.as_ref().map(|g| g.as_str()), "name": name, "path": path, "size": size, "ts": ts}),
            ClientEvent::FileOffered {
                id,
                from,
                group,
                name,
                size,
                ts,
            } => json!({"type": "file_offered", "id": id, "from": from.as_str(),
                "group": group.as_ref().map(|g| g.as_str()), "name": name, "size": size, "ts": ts}),
            ClientEvent::FileRefused {
                from,
                group,
                name,
                size,
                reason,
                ts,
            } => json!({"type": "file_refused", "from": from.as_str(),
                "group": group.as_ref().map(|g| g.as_str()), "name": name, "size": size,
                "reason": reason, "ts": ts}),
            ClientEvent::GroupCreated { group, by, members } => {
                json!({"type": "group_created", "group": group.as_str(),
                "from": by.as_str(), "members": members.iter().map(Username::as_str).collect::<Vec<_>>()})
            }
            ClientEvent::MembersAdded { group, by, members } => {
                json!({"type": "members_added", "group": group.as_str(),
                "from": by.as_str(), "members": members.iter().map(Username::as_str).collect::<Vec<_>>()})
            }
            ClientEvent::MembersInvited { group, by, members } => {
                json!({"type": "members_invited", "group": group.as_str(),
                "from": by.as_str(), "members": members.iter().map(Username::as_str).collect::<Vec<_>>()})
            }
            ClientEvent::MemberJoined { group, user } => {
                json!({"type": "member_joined", "group": group.as_str(), "user": user.as_str()})
            }
            ClientEvent::InvitationDeclined { group, user } => {
                json!({"type": "invitation_declined", "group": group.as_str(), "user": user.as_str()})
            }
            ClientEvent::Invited {
                group,
                by,
                auto_join,
                ..
            } => {
                json!({"type": "invited", "group": group.as_str(), "from": by.as_str(), "auto_join": auto_join})
            }
            ClientEvent::MembersKicked { group, by, members } => {
                json!({"type": "members_kicked", "group": group.as_str(),
                "from": by.as_str(), "members": members.iter().map(Username::as_str).collect::<Vec<_>>()})
            }
            ClientEvent::MemberLeft {
                group,
                user,
                new_owner,
            } => json!({"type": "member_left", "group": group.as_str(),
                "from": user.as_str(), "new_owner": new_owner.as_ref().map(|o| o.as_str())}),
            ClientEvent::GroupDeleted { group, by } => {
                json!({"type": "group_deleted", "group": group.as_str(), "from": by.as_str()})
            }
            ClientEvent::RemovedFromGroup { group, by } => {
                json!({"type": "removed_from_group", "group": group.as_str(), "from": by.as_str()})
            }
            ClientEvent::Presence { user, change } => {
                let (change, status) = match change {
                    PresenceChange::Online(s) => ("online", Some(s.as_str())),
                    PresenceChange::Offline => ("offline", None),
                    PresenceChange::Status(s) => ("status", Some(s.as_str())),
                };
                json!({"type": "presence", "user": user.as_str(), "change": change, "status": status})
            }
            ClientEvent::CaughtUp => json!({"type": "caught_up"}),
            ClientEvent::Sending {
                id,
                name,
                sent,
                total,
            } => json!({"type": "sending", "id": id, "name": name, "sent": sent, "total": total}),
            ClientEvent::LobbyMissed { count } => json!({"type": "lobby_missed", "count": count}),
            ClientEvent::Undecodable { from, reason, ts } => {
                json!({"type": "undecodable", "from": from.as_str(), "reason": reason, "ts": ts})
            }
            ClientEvent::Shutdown { message } => json!({"type": "shutdown", "text": message}),
            ClientEvent::HistoryPruned { oldest_kept } => {
                json!({"type": "history_pruned", "oldest_kept": oldest_kept})
            }
            ClientEvent::Security { message } => json!({"type": "security", "text": message}),
            ClientEvent::Disconnected { reason } => json!({"type": "disconnected", "text": reason}),
            ClientEvent::Reconnecting {
                reason,
                attempt,
                retry_in_ms,
            } => {
                json!({"type": "reconnecting", "text": reason, "attempt": attempt, "retry_in_ms": retry_in_ms})
            }
            ClientEvent::Reconnected { online } => json!({
                "type": "reconnected",
                "online": online.iter().map(|p| p.user.as_str()).collect::<Vec<_>>(),
            }),
        })
    }
}
