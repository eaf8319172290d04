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
    /// Input that came after an Enter in the same frame, for the next.
    deferred: Vec<egui::Event>,
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
        let focused = ui.memory(|m| m.has_focus(id));
        // What came after an Enter in the last frame is typed now, into
        // the next message (a fast typist's keys can share a frame).
        if !self.deferred.is_empty() {
            let deferred = std::mem::take(&mut self.deferred);
            ui.input_mut(|i| {
                let later = std::mem::replace(&mut i.events, deferred);
                i.events.extend(later);
            });
        }
        let enter_at = ui.input(|i| {
            i.events.iter().position(|e| {
                matches!(e, egui::Event::Key { key: Key::Enter, pressed: true, modifiers, .. }
                    if modifiers.is_none())
            })
        });
        // Enter alone sends; the popup, when open, takes it first, unless
        // text was typed before it in the same frame (the suggestion shown
        // was for a word since changed: a fast ":lock:" and Enter sends).
        let mut typed = false;
        if let Some(at) = enter_at
            && focused
        {
            ui.input_mut(|i| {
                self.deferred = i.events.split_off(at + 1);
                typed = i.events.iter().any(|e| matches!(e, egui::Event::Text(_)));
            });
            if !self.deferred.is_empty() {
                ui.ctx().request_repaint();
            }
        }
        let enter = (!self.popup_open || typed)
            && focused
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
            // A long message scrolls inside the composer rather than
            // growing over the conversation.
            let output = egui::ScrollArea::vertical()
                .id_salt("composer scroll")
                .max_height(ui.text_style_height(&egui::TextStyle::Body) * 8.0)
                .stick_to_bottom(true)
                .show(ui, |ui| {
                    CompletionPopup::new(id)
                        .word_boundary(|c: char| c.is_whitespace())
                        .show(ui, edit, |query| {
                            suggestions(front, query.word, query.is_at_start())
                        })
                })
                .inner;
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
        if self.picker
            && let Some(emoji) = self.picker(ui)
        {
            self.insert(ui.ctx(), id, emoji);
        }
        if (enter || send) && !over && !self.text.trim().is_empty() {
            self.focus = true;
            return Some(std::mem::take(&mut self.text));
        }
        None
    }

    /// Puts `text` where the cursor is (over the selection), and the
    /// cursor after it.
    fn insert(&mut self, ctx: &egui::Context, id: egui::Id, text: &str) {
        let mut state = egui::text_edit::TextEditState::load(ctx, id).unwrap_or_default();
        let chars = self.text.chars().count();
        let (start, end) = state.cursor.char_range().map_or((chars, chars), |range| {
            let (a, b) = (range.primary.index.0, range.secondary.index.0);
            (a.min(b).min(chars), a.max(b).min(chars))
        });
        let byte = |at: usize| {
            self.text
                .char_indices()
                .nth(at)
                .map_or(self.text.len(), |(i, _)| i)
        };
        let (from, to) = (byte(start), byte(end));
        self.text.replace_range(from..to, text);
        let cursor = egui::text::CCursor::new(start + text.chars().count());
        state
            .cursor
            .set_char_range(Some(egui::text::CCursorRange::one(cursor)));
        state.store(ctx, id);
        self.focus = true;
    }

    /// The emoji picker: a search field and a grid; the emoji clicked.
    fn picker(&mut self, ui: &mut egui::Ui) -> Option<&'static str> {
        let mut chosen = None;
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.horizontal(|ui| {
                let label = ui.label("Emoji:");
                ui.add(
                    egui::TextEdit::singleline(&mut self.picker_search)
                        .hint_text("search, e.g. smile")
                        .desired_width(160.0),
                )
                .labelled_by(label.id);
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
                                chosen = Some(emoji.as_str());
                            }
                        }
                    });
                });
        });
        chosen
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
