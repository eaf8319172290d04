//! Around the conversation: the sidebar (search, conversations with their
//! unread and mention badges, who is online or a group's members), the
//! security banner that stays until seen, and the status bar
//! (connection, account, server certificate, status, transfers).

use eframe::egui::{self, Color32, RichText};
use sotto_client::front::Front;
use sotto_client::model::{ConnectionState, Conversation, ConversationId};
use sotto_proto::{Status, Username};

use crate::chat::{ChatScreen, title};
use crate::dialogs::Dialog;

const GREEN: Color32 = Color32::from_rgb(0x2e, 0xa0, 0x43);
const AMBER: Color32 = Color32::from_rgb(0xd9, 0x8c, 0x1f);
const RED: Color32 = Color32::from_rgb(0xd0, 0x3a, 0x2f);

/// What the sidebar asked for.
#[derive(Debug)]
pub enum Asked {
    Select(ConversationId),
    Dialog(Dialog),
}

/// Draws the sidebar.
pub fn show(ui: &mut egui::Ui, chat: &mut ChatScreen) -> Option<Asked> {
    let mut asked = None;
    let search = egui::TextEdit::singleline(&mut chat.search)
        .hint_text("Search conversations (Ctrl+K)")
        .desired_width(f32::INFINITY);
    let response = ui.add(search);
    if std::mem::take(&mut chat.focus_search) {
        response.request_focus();
    }
    // Enter in the search opens the first match.
    let open_first = response.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    let needle = chat.search.trim().to_lowercase();
    ui.add_space(4.0);
    ui.label(RichText::new("Conversations").strong());
    let selected = chat.front.model.selected().clone();
    let list: Vec<&Conversation> = chat
        .front
        .model
        .conversations()
        .into_iter()
        .filter(|c| needle.is_empty() || title(&c.id).to_lowercase().contains(&needle))
        .collect();
    if open_first && let Some(first) = list.first() {
        asked = Some(Asked::Select(first.id.clone()));
        chat.search.clear();
    }
    egui::ScrollArea::vertical()
        .id_salt("conversations")
        .max_height(ui.available_height() * 0.55)
        .show(ui, |ui| {
            for (n, conversation) in list.iter().enumerate() {
                let mut text = title(&conversation.id);
                // Everything private is for the user: "@" marks a mention
                // in the lobby or a group.
                let mentioned =
                    conversation.mentioned && !matches!(conversation.id, ConversationId::Direct(_));
                if conversation.unread > 0 {
                    let mark = if mentioned { "@" } else { "" };
                    text.push_str(&format!("  ({mark}{})", conversation.unread));
                }
                let mut label = RichText::new(text);
                if conversation.unread > 0 {
                    label = label.strong();
                }
                if mentioned {
                    label = label.color(Color32::from_rgb(0xe0, 0x6c, 0x4a));
                }
                let response = ui.selectable_label(conversation.id == selected, label);
                let response = if n < 9 {
                    response.on_hover_text(format!("Alt+{}", n + 1))
                } else {
                    response
                };
                if response.clicked() {
                    asked = Some(Asked::Select(conversation.id.clone()));
                }
            }
        });
    if ui.button("+ New group").clicked() {
        asked = Some(Asked::Dialog(Dialog::NewGroup {
            name: String::new(),
            members: String::new(),
        }));
    }
    ui.separator();
    let people = people(chat, &selected);
    let heading = match &selected {
        ConversationId::Group(group) => format!("Members of #{group} ({})", people.len()),
        _ => format!("Online ({})", chat.front.model.online.len()),
    };
    ui.label(RichText::new(heading).strong());
    egui::ScrollArea::vertical()
        .id_salt("people")
        .show(ui, |ui| {
            for (user, status) in people {
                let (colour, word) = match status {
                    Some(Status::Normal) => (GREEN, ""),
                    Some(Status::Away) => (AMBER, " (away)"),
                    Some(Status::Dnd) => (RED, " (do not disturb)"),
                    None => (Color32::GRAY, " (offline)"),
                };
                let me = user == chat.front.me;
                let text = format!("{user}{}{word}", if me { " (you)" } else { "" });
                let response = ui
                    .horizontal(|ui| {
                        dot(ui, colour);
                        ui.selectable_label(false, text)
                    })
                    .inner;
                if me {
                    continue;
                }
                let id = ConversationId::Direct(user.clone());
                if response.clicked() {
                    asked = Some(Asked::Select(id.clone()));
                }
                response.context_menu(|ui| {
                    if ui.button("Message").clicked() {
                        asked = Some(Asked::Select(id.clone()));
                    }
                    if ui.button("Verify…").clicked() {
                        asked = Some(Asked::Dialog(Dialog::Verify {
                            user: user.clone(),
                            verification: None,
                        }));
                    }
                    if ui.button("Devices…").clicked() {
                        asked = Some(Asked::Dialog(Dialog::Devices {
                            user: Some(user.clone()),
                            list: None,
                            removing: None,
                        }));
                    }
                });
            }
        });
    asked
}

/// Who the sidebar lists: a group's members (online or not) when a group
/// is shown, else who is online.
fn people(chat: &ChatScreen, selected: &ConversationId) -> Vec<(Username, Option<Status>)> {
    let model = &chat.front.model;
    match selected {
        ConversationId::Group(group) => model
            .members
            .get(group)
            .map(|members| {
                members
                    .iter()
                    .map(|m| (m.clone(), model.online.get(m).copied()))
                    .collect()
            })
            .unwrap_or_default(),
        _ => model
            .online
            .iter()
            .map(|(user, status)| (user.clone(), Some(*status)))
            .collect(),
    }
}

/// The oldest security notice not yet seen, until it is marked seen.
/// `devices` is set when the user asks to see their devices from it.
pub fn banner(ui: &mut egui::Ui, notice: &str, more: usize, front: &mut Front, devices: &mut bool) {
    let frame = egui::Frame::new()
        .fill(Color32::from_rgb(0x8b, 0x1e, 0x1e))
        .inner_margin(6.0);
    egui::Panel::top("banner").frame(frame).show(ui, |ui| {
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new("⚠ Security").strong().color(Color32::WHITE));
            ui.label(RichText::new(notice).color(Color32::WHITE));
            if more > 0 {
                ui.label(RichText::new(format!("({more} more)")).color(Color32::WHITE));
            }
            if ui.button("Seen (Ctrl+O)").clicked() {
                front.model.take_notice();
            }
            if notice.contains("device") && ui.button("Devices…").clicked() {
                *devices = true;
            }
        });
    });
}

/// The status bar.
pub fn status_bar(ui: &mut egui::Ui, chat: &ChatScreen) {
    ui.horizontal(|ui| {
        let (text, colour) = match &chat.front.model.connection {
            ConnectionState::Connected => ("connected".to_owned(), GREEN),
            ConnectionState::Reconnecting {
                reason,
                attempt,
                retry_in_ms,
            } => (
                format!(
                    "reconnecting (try {attempt}, in {:.0} s): {reason}",
                    *retry_in_ms as f64 / 1000.0
                ),
                AMBER,
            ),
            ConnectionState::Disconnected(reason) => (format!("disconnected: {reason}"), RED),
        };
        dot(ui, colour);
        ui.label(RichText::new(text).color(colour));
        ui.separator();
        ui.label(format!("{}@{}", chat.front.me, chat.connected.server));
        let fingerprint = chat.connected.fingerprint.to_string();
        let short: String = fingerprint
            .trim_start_matches("SHA256:")
            .chars()
            .take(8)
            .collect();
        ui.label(RichText::new(format!("cert {short}")).weak())
            .on_hover_text(format!("The server's certificate, pinned: {fingerprint}"));
        ui.separator();
        ui.label(match chat.own_status() {
            Status::Normal => "available",
            Status::Away => "away",
            Status::Dnd => "do not disturb",
        });
        if let Some(flash) = &chat.front.flash {
            ui.separator();
            ui.label(RichText::new(flash).strong());
        }
    });
}

/// A coloured dot (a status), drawn rather than a glyph: fonts draw
/// symbols differently, some as colour emoji.
fn dot(ui: &mut egui::Ui, colour: Color32) {
    let size = ui.text_style_height(&egui::TextStyle::Body);
    let (rect, _) = ui.allocate_exact_size(egui::vec2(size * 0.7, size), egui::Sense::hover());
    ui.painter()
        .circle_filled(rect.center(), size * 0.28, colour);
}
