//! A conversation's timeline, drawn virtually: only the rows in view are
//! laid out, whatever the length. Each row's height is estimated until
//! it is first drawn, then measured; the rows' tops are prefix sums, so
//! finding the rows in view is a binary search. The first row in view is
//! the anchor: when rows are read in above it (older history) or rows
//! above it turn out taller or shorter than estimated, the view is moved
//! by as much, so what the user reads stays put.

use std::collections::HashMap;

use chrono::{Local, TimeZone};
use eframe::egui::{self, Color32, Rect, RichText, UiBuilder, vec2};
use sotto_client::model::{Content, Conversation, Entry, EntryId, SendState};
use sotto_proto::Username;

/// What a row asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowAction {
    Open(std::path::PathBuf),
    ShowInFolder(std::path::PathBuf),
    Accept(u64),
    Reject(u64),
    OpenSealed(u64),
}

/// What drawing a timeline found.
#[derive(Debug, Default)]
pub struct Drawn {
    pub actions: Vec<RowAction>,
    /// The oldest row is in view and the user wants older ones (the view
    /// is scrolled to its top, or does not fill the window).
    pub at_top: bool,
    /// How many rows were laid out (for the benchmark and tests).
    pub laid_out: usize,
}

/// The layout of one conversation's rows.
#[derive(Debug, Default)]
pub struct Rows {
    /// The timeline these rows are of: length, first and last entry.
    key: (usize, EntryId, EntryId),
    width: f32,
    ids: Vec<EntryId>,
    heights: Vec<f32>,
    measured: Vec<bool>,
    /// `tops[i]` is where row `i` starts; `tops[len]` is the total.
    tops: Vec<f32>,
    /// Rows from here on have stale tops.
    dirty_from: Option<usize>,
    /// The first row in view and how far into it the view starts.
    anchor: Option<(EntryId, f32)>,
    /// The view followed the newest row at the last frame.
    at_bottom: bool,
    /// Where the view was at the last frame.
    last_offset: f32,
    /// Move the view to the anchor at the next frame, wherever it is.
    jump: bool,
}

impl Rows {
    /// Brings the rows in line with `timeline` (new rows estimated, known
    /// heights kept) at this `width`.
    fn sync(&mut self, conversation: &Conversation, width: f32, style: &Metrics) {
        let timeline = &conversation.timeline;
        let key = (
            timeline.len(),
            timeline.front().map_or(0, |e| e.id),
            timeline.back().map_or(0, |e| e.id),
        );
        if key == self.key && (width - self.width).abs() < 0.5 {
            return;
        }
        // The common change: new rows at the end, perhaps the oldest
        // dropped at the start (a full conversation): the rows kept keep
        // their heights, and nothing is laid out again.
        let dropped = self
            .ids
            .iter()
            .take(64)
            .position(|id| timeline.front().map(|e| e.id) == Some(*id));
        let kept = dropped.map_or(0, |d| self.ids.len() - d);
        let extended = (width - self.width).abs() < 0.5
            && dropped.is_some()
            && kept <= key.0
            && kept > 0
            && timeline.get(kept - 1).map(|e| e.id) == self.ids.last().copied();
        if let (true, Some(dropped)) = (extended, dropped) {
            self.ids.drain(..dropped);
            self.heights.drain(..dropped);
            self.measured.drain(..dropped);
            for i in kept..key.0 {
                let Some(entry) = timeline.get(i) else { break };
                let previous = i.checked_sub(1).and_then(|p| timeline.get(p));
                self.ids.push(entry.id);
                self.heights.push(style.estimate(entry, previous, width));
                self.measured.push(false);
            }
            self.mark_dirty(if dropped > 0 { 0 } else { kept });
        } else {
            let same_width = (width - self.width).abs() < 0.5;
            let known: HashMap<EntryId, f32> = if same_width {
                self.ids
                    .iter()
                    .zip(&self.heights)
                    .zip(&self.measured)
                    .filter(|(_, m)| **m)
                    .map(|((id, h), _)| (*id, *h))
                    .collect()
            } else {
                HashMap::new()
            };
            self.ids.clear();
            self.heights.clear();
            self.measured.clear();
            let mut previous: Option<&Entry> = None;
            for entry in timeline {
                self.ids.push(entry.id);
                match known.get(&entry.id) {
                    Some(height) => {
                        self.heights.push(*height);
                        self.measured.push(true);
                    }
                    None => {
                        self.heights.push(style.estimate(entry, previous, width));
                        self.measured.push(false);
                    }
                }
                previous = Some(entry);
            }
            self.mark_dirty(0);
        }
        self.key = key;
        self.width = width;
        self.refresh_tops();
    }

    /// Shows the row at `index` at the top of the view at the next
    /// frame (a row not yet laid out: its estimate places it).
    pub fn scroll_to_row(&mut self, index: usize) {
        if let Some(id) = self.ids.get(index) {
            self.anchor = Some((*id, 0.0));
            self.at_bottom = false;
            self.jump = true;
        }
    }

    fn mark_dirty(&mut self, from: usize) {
        self.dirty_from = Some(self.dirty_from.map_or(from, |d| d.min(from)));
    }

    fn refresh_tops(&mut self) {
        let Some(from) = self.dirty_from.take() else {
            return;
        };
        self.tops.resize(self.heights.len() + 1, 0.0);
        let mut top = if from == 0 { 0.0 } else { self.tops[from] };
        for i in from..self.heights.len() {
            self.tops[i] = top;
            top += self.heights[i];
        }
        self.tops[self.heights.len()] = top;
    }

    fn total(&self) -> f32 {
        self.tops.last().copied().unwrap_or(0.0)
    }

    /// The row at height `y`.
    fn row_at(&self, y: f32) -> usize {
        let rows = self.heights.len();
        self.tops[..rows]
            .partition_point(|top| *top <= y)
            .saturating_sub(1)
    }

    fn index_of(&self, id: EntryId) -> Option<usize> {
        // Entry ids grow along a timeline, except where history was read
        // in between: look around the binary search's answer.
        let guess = self.ids.partition_point(|x| *x < id);
        (guess.saturating_sub(64)..(guess + 64).min(self.ids.len()))
            .find(|i| self.ids[*i] == id)
            .or_else(|| self.ids.iter().position(|x| *x == id))
    }
}

/// Sizes used to estimate rows not yet drawn.
struct Metrics {
    line: f32,
    char_width: f32,
    /// The offset of local time from UTC, for day boundaries.
    offset_ms: i64,
}

impl Metrics {
    fn estimate(&self, entry: &Entry, previous: Option<&Entry>, width: f32) -> f32 {
        let chars = match &entry.content {
            Content::Text(text) | Content::Notice(text) => text.chars().count(),
            Content::File { name, .. } => name.len() + 40,
            Content::Sealed { .. } => 40,
        } + 24;
        let per_line = (width / self.char_width).max(10.0);
        let lines = (chars as f32 / per_line).ceil().max(1.0);
        let mut height = lines * self.line + 6.0;
        let day = |ts: i64| ts.saturating_add(self.offset_ms).div_euclid(86_400_000);
        if previous.is_none_or(|p| day(p.ts) != day(entry.ts)) {
            height += self.line + 12.0;
        }
        height
    }
}

/// Draws `conversation`'s timeline with `rows` (its layout) into `ui`.
pub fn show(
    ui: &mut egui::Ui,
    conversation: &Conversation,
    rows: &mut Rows,
    me: &Username,
) -> Drawn {
    let mut drawn = Drawn::default();
    let width = ui.available_width();
    let metrics = Metrics {
        line: ui.text_style_height(&egui::TextStyle::Body),
        char_width: ui
            .fonts_mut(|f| f.glyph_width(&egui::TextStyle::Body.resolve(ui.style()), 'n')),
        offset_ms: i64::from(Local::now().offset().local_minus_utc()) * 1000,
    };
    rows.sync(conversation, width, &metrics);
    let mut area = egui::ScrollArea::vertical()
        .id_salt(("timeline", format!("{:?}", conversation.id)))
        .auto_shrink(false)
        // Moves are immediate: an animation toward an old target would
        // undo the anchor's correction.
        .animated(false)
        .stick_to_bottom(true);
    // Keep the anchor row where it was.
    if !rows.at_bottom
        && let Some((id, into)) = rows.anchor
        && let Some(index) = rows.index_of(id)
    {
        let wanted = rows.tops[index] + into;
        if std::mem::take(&mut rows.jump) || (wanted - rows.last_offset).abs() > 0.5 {
            area = area.vertical_scroll_offset(wanted);
        }
    }
    let scrolled_up = ui.input(|i| i.smooth_scroll_delta.y > 0.0);
    let output = area.show_viewport(ui, |ui, viewport| {
        let total = rows.total();
        ui.set_height(total);
        if rows.heights.is_empty() {
            return;
        }
        let origin = ui.max_rect().min;
        let first = rows.row_at(viewport.min.y.max(0.0));
        let mut i = first;
        // Rows are placed one below the other as measured this frame.
        let mut top = rows.tops[first];
        while i < rows.heights.len() && top < viewport.max.y {
            let Some(entry) = conversation.timeline.get(i) else {
                break;
            };
            let previous = i.checked_sub(1).and_then(|p| conversation.timeline.get(p));
            let rect = Rect::from_min_size(origin + vec2(0.0, top), vec2(width, 1.0e6));
            let unread_line = conversation.first_unread == Some(entry.id);
            let response = ui
                .scope_builder(UiBuilder::new().max_rect(rect).id_salt(entry.id), |ui| {
                    row(ui, entry, previous, unread_line, me, &mut drawn.actions);
                })
                .response;
            let height = response.rect.height();
            if !rows.measured[i] || (rows.heights[i] - height).abs() > 0.5 {
                rows.heights[i] = height;
                rows.measured[i] = true;
                rows.mark_dirty(i);
            }
            drawn.laid_out += 1;
            top += height;
            i += 1;
        }
    });
    let view = output.inner_rect.height();
    let offset = output.state.clamped_offset().y;
    // The anchor is where the view ends up this frame (after the user's
    // scrolling), by the tops the rows were drawn at; the next frame moves
    // the view only if rows above it changed (read in, or measured).
    if !rows.heights.is_empty() {
        let row = rows.row_at(offset);
        rows.anchor = Some((rows.ids[row], offset - rows.tops[row]));
    }
    rows.refresh_tops();
    rows.last_offset = offset;
    rows.at_bottom = offset + view >= rows.total() - 1.0;
    drawn.at_top = offset <= 1.0 && (rows.total() > view + 1.0 || scrolled_up);
    drawn
}

/// One row: a day separator and the "new messages" line where they
/// belong, then the entry.
fn row(
    ui: &mut egui::Ui,
    entry: &Entry,
    previous: Option<&Entry>,
    unread_line: bool,
    me: &Username,
    actions: &mut Vec<RowAction>,
) {
    let when = Local.timestamp_millis_opt(entry.ts).single();
    let day = when.map(|t| t.date_naive());
    if previous
        .and_then(|p| Local.timestamp_millis_opt(p.ts).single())
        .map(|t| t.date_naive())
        != day
        && let Some(when) = when
    {
        ui.add_space(6.0);
        ui.vertical_centered(|ui| {
            ui.label(
                RichText::new(when.format("%A %-d %B %Y").to_string())
                    .weak()
                    .small(),
            );
        });
        ui.add_space(6.0);
    }
    if unread_line {
        ui.vertical_centered(|ui| {
            ui.label(
                RichText::new("new messages")
                    .color(Color32::from_rgb(0xe0, 0x6c, 0x4a))
                    .small(),
            );
        });
    }
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 6.0;
        let time = when.map_or_else(String::new, |t| t.format("%H:%M").to_string());
        let full = when.map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        ui.label(RichText::new(time).weak().monospace())
            .on_hover_text(full);
        if let Some(sender) = &entry.sender {
            let mine = sender == me;
            ui.label(
                RichText::new(format!("{sender}"))
                    .strong()
                    .color(sender_colour(sender, mine)),
            );
        }
        match &entry.content {
            Content::Text(text) => {
                ui.label(text);
            }
            Content::Notice(text) => {
                ui.label(RichText::new(text).italics().weak());
            }
            Content::Sealed { id } => {
                ui.label(format!("🔒 sealed message #{id}"));
                if ui.small_button("Open…").clicked() {
                    actions.push(RowAction::OpenSealed(*id));
                }
            }
            Content::File {
                name,
                size,
                path,
                offer,
            } => {
                ui.label(format!("📎 {name} ({})", human_size(*size)));
                if let Some(id) = offer {
                    if ui.small_button("Accept").clicked() {
                        actions.push(RowAction::Accept(*id));
                    }
                    if ui.small_button("Reject").clicked() {
                        actions.push(RowAction::Reject(*id));
                    }
                }
                if let Some(path) = path {
                    if ui.small_button("Open").clicked() {
                        actions.push(RowAction::Open(path.clone()));
                    }
                    if ui.small_button("Show in folder").clicked() {
                        actions.push(RowAction::ShowInFolder(path.clone()));
                    }
                }
            }
        }
        match &entry.state {
            Some(SendState::Pending) => {
                ui.label(RichText::new("…").weak())
                    .on_hover_text("sending: not stored by the server yet");
            }
            Some(SendState::Sent) if entry.sender.as_ref() == Some(me) => {
                ui.label(RichText::new("✔").weak())
                    .on_hover_text("stored by the server");
            }
            Some(SendState::Failed(reason)) => {
                ui.label(
                    RichText::new(format!("✖ not sent: {reason}"))
                        .color(Color32::from_rgb(0xd0, 0x3a, 0x2f)),
                );
            }
            _ => {}
        }
    });
}

/// A colour per sender, stable across runs; one's own is the accent.
fn sender_colour(user: &Username, mine: bool) -> Color32 {
    if mine {
        return Color32::from_rgb(0x3b, 0x82, 0xf6);
    }
    const PALETTE: [Color32; 6] = [
        Color32::from_rgb(0x1b, 0x9e, 0x77),
        Color32::from_rgb(0xd9, 0x5f, 0x02),
        Color32::from_rgb(0x75, 0x70, 0xb3),
        Color32::from_rgb(0xe7, 0x29, 0x8a),
        Color32::from_rgb(0x66, 0xa6, 0x1e),
        Color32::from_rgb(0xa6, 0x76, 0x1d),
    ];
    let hash = user
        .as_str()
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    PALETTE[hash as usize % PALETTE.len()]
}

/// `1.5 MiB`, `300 bytes`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(human_size(300), "300 bytes");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(10 * 1024 * 1024), "10.0 MiB");
    }
}
