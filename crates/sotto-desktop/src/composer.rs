//! The composer: a multi-line message with Enter to send and Shift+Enter
//! for a new line, completion of `:shortcodes:` (into emoji), names and
//! `@commands` in a popup, an emoji picker, and the size limit shown as
//! the message is typed (in bytes as sent, shortcodes replaced), before
//! anything is sent.

use eframe::egui::{self, Color32, CompletionPopup, Key, Modifiers, RichText, Suggestion};
use sotto_client::front::Front;
use sotto_proto::limits::MAX_TEXT_LEN;

/// Emoji shown in the picker at once (searching finds the others).
const PICKER_SHOWN: usize = 120;

/// The composer's state.
#[derive(Debug, Default)]
pub struct Composer {
    pub text: String,
    /// The completion popup was open at the last frame (Enter accepts a
    /// suggestion then, rather than sending).
    popup_open: bool,
    /// The emoji picker is open.
    pub picker: bool,
    picker_search: String,
    /// Ask for the keyboard focus at the next frame.
    pub focus: bool,
}

impl Composer {
    /// A composer that takes the keyboard focus.
    pub fn new() -> Self {
        Self {
            focus: true,
            ..Self::default()
        }
    }

    /// The message's size as it will be sent.
    pub fn bytes(&self) -> usize {
        sotto_client::emoji::expand_shortcodes(&self.text).len()
    }

    /// Draws the composer; the line to send when the user sent it.
    pub fn show(&mut self, ui: &mut egui::Ui, front: &Front, to: &str) -> Option<String> {
        let id = ui.make_persistent_id("composer");
        let bytes = self.bytes();
        let over = bytes > MAX_TEXT_LEN;
        // Enter alone sends; the popup, when open, takes it first.
        let enter = !self.popup_open
            && ui.memory(|m| m.has_focus(id))
            && ui.input_mut(|i| i.consume_key(Modifiers::NONE, Key::Enter));
        let mut send = false;
        let mut label = None;
        ui.horizontal(|ui| {
            label = Some(
                ui.label(RichText::new(format!("Message to {to}")).weak())
                    .id,
            );
            let (text, colour) = if over {
                (
                    format!(
                        "{bytes} / {MAX_TEXT_LEN} bytes: {} too many",
                        bytes - MAX_TEXT_LEN
                    ),
                    Color32::from_rgb(0xd0, 0x3a, 0x2f),
                )
            } else {
                (
                    format!("{bytes} / {MAX_TEXT_LEN} bytes"),
                    ui.visuals().weak_text_color(),
                )
            };
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                ui.label(RichText::new(text).color(colour).small());
            });
        });
        ui.horizontal(|ui| {
            let width = ui.available_width() - 90.0;
            let edit = egui::TextEdit::multiline(&mut self.text)
                .desired_rows(2)
                .desired_width(width.max(100.0))
                .hint_text("Write a message; Enter sends, Shift+Enter starts a new line")
                .return_key(Some(egui::KeyboardShortcut::new(
                    Modifiers::SHIFT,
                    Key::Enter,
                )));
            let output = CompletionPopup::new(id)
                .word_boundary(|c: char| c.is_whitespace())
                .show(ui, edit, |query| {
                    suggestions(front, query.word, query.is_at_start())
                });
            self.popup_open = output.is_open;
            if let Some(label) = label {
                output
                    .text_edit
                    .response
                    .response
                    .clone()
                    .labelled_by(label);
            }
            if self.focus {
                output.text_edit.response.request_focus();
                self.focus = false;
            }
            ui.vertical(|ui| {
                if ui
                    .button("😀")
                    .on_hover_text("Emoji (type : and a name to complete)")
                    .clicked()
                {
                    self.picker = !self.picker;
                }
                send = ui.add_enabled(!over, egui::Button::new("Send")).clicked();
            });
        });
        if self.picker {
            self.picker(ui);
        }
        if (enter || send) && !over && !self.text.trim().is_empty() {
            self.focus = true;
            return Some(std::mem::take(&mut self.text));
        }
        None
    }

    /// The emoji picker: a search field and a grid; a click inserts.
    fn picker(&mut self, ui: &mut egui::Ui) {
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label("Emoji:");
                ui.add(
                    egui::TextEdit::singleline(&mut self.picker_search)
                        .hint_text("search, e.g. smile")
                        .desired_width(160.0),
                );
                if ui.small_button("Close").clicked() {
                    self.picker = false;
                }
            });
            let search = self.picker_search.trim().to_lowercase();
            let found: Vec<&'static emojis::Emoji> = emojis::iter()
                .filter(|e| {
                    search.is_empty()
                        || e.name().contains(search.as_str())
                        || e.shortcodes().any(|c| c.contains(search.as_str()))
                })
                .take(PICKER_SHOWN)
                .collect();
            egui::ScrollArea::vertical()
                .max_height(140.0)
                .id_salt("emoji picker")
                .show(ui, |ui| {
                    ui.horizontal_wrapped(|ui| {
                        for emoji in found {
                            let button =
                                egui::Button::new(RichText::new(emoji.as_str()).size(20.0))
                                    .frame(false);
                            if ui.add(button).on_hover_text(emoji.name()).clicked() {
                                self.text.push_str(emoji.as_str());
                                self.focus = true;
                            }
                        }
                    });
                });
        });
    }
}

/// What the popup offers for `word`: emoji for `:sh…`, names (and, at
/// the start of the line, commands) for `@na…`.
fn suggestions(front: &Front, word: &str, first: bool) -> Vec<Suggestion> {
    if let Some(code) = word.strip_prefix(':') {
        if code.len() < 2 || code.ends_with(':') {
            return Vec::new();
        }
        return front
            .candidates(word, first)
            .into_iter()
            .filter_map(|shortcode| {
                let emoji = sotto_client::emoji::expand_shortcodes(&shortcode);
                (emoji != shortcode).then(|| {
                    Suggestion::new(format!("{emoji} ")).content(format!("{emoji}  {shortcode}"))
                })
            })
            .collect();
    }
    if word.len() >= 2 && word.starts_with('@') {
        return front
            .candidates(word, first)
            .into_iter()
            .take(20)
            .map(|name| Suggestion::new(format!("{name} ")))
            .collect();
    }
    Vec::new()
}
