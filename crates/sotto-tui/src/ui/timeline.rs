//! The timeline of the selected conversation: laid out from the newest
//! entry back, only as far as the view (and the scroll offset) reaches,
//! with day separators, the "new messages" line and wrapped text.

use chrono::{Local, TimeZone};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use sotto_client::model::{Content, Conversation, ConversationId, Entry, SendState};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::{Theme, title};
use crate::app::App;

pub(super) fn draw_timeline(frame: &mut Frame<'_>, app: &mut App, theme: &Theme, area: Rect) {
    let selected = app.front.model.selected().clone();
    let height = area.height.saturating_sub(2) as usize;
    let width = area.width.saturating_sub(2) as usize;
    app.page = height;
    let conversation = app.front.model.conversation(&selected);
    let (lines, at_top) = match conversation {
        Some(c) => timeline_lines(c, theme, app, width, height),
        None => (Vec::new(), true),
    };
    // Scrolling stops at the oldest line; older pages are asked for there.
    app.front.older.at_top = at_top && app.scroll > 0;
    if at_top && app.scroll > 0 {
        let blank = lines.iter().take_while(|l| l.width() == 0).count();
        app.scroll = app.scroll.saturating_sub(blank);
    }
    let mut name = title(&selected);
    if app.scroll > 0 {
        name.push_str(&format!(
            " (scrolled up {} lines; Ctrl+End: newest)",
            app.scroll
        ));
    }
    let block = Block::default().borders(Borders::ALL).title(name);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The lines of `c` in view: `height` lines ending `app.scroll` lines
/// above the newest, laid out from the newest entry back. The flag says
/// the oldest entry in memory is in view.
fn timeline_lines<'a>(
    c: &'a Conversation,
    theme: &Theme,
    app: &App,
    width: usize,
    height: usize,
) -> (Vec<Line<'a>>, bool) {
    let want = height + app.scroll;
    let mut reversed: Vec<Line<'a>> = Vec::with_capacity(want + 4);
    let entries = &c.timeline;
    let mut reached_top = true;
    for (i, entry) in entries.iter().enumerate().rev() {
        let mut lines = entry_lines(entry, theme, app, width);
        lines.reverse();
        reversed.extend(lines);
        if c.first_unread == Some(entry.id) {
            reversed.push(divider(" new messages ", width, theme.fg(Color::Red)));
        }
        let older = i.checked_sub(1).map(|j| &entries[j]);
        if older.is_none_or(|o| day(o.ts, app.utc) != day(entry.ts, app.utc)) {
            reversed.push(divider(
                &format!(" {} ", day_name(entry.ts, app.utc)),
                width,
                theme.dim(),
            ));
        }
        if reversed.len() >= want {
            reached_top = i == 0 && reversed.len() <= want;
            break;
        }
    }
    if entries.is_empty() {
        reversed.push(Line::styled(
            match &c.id {
                ConversationId::Lobby => {
                    "the lobby: everyone here reads it (not end-to-end encrypted)"
                }
                ConversationId::Direct(_) => "a private conversation, end-to-end encrypted",
                ConversationId::Group(_) => "a group, end-to-end encrypted",
            },
            theme.dim(),
        ));
    }
    let skip = app.scroll.min(reversed.len().saturating_sub(1));
    let mut lines: Vec<Line<'a>> = reversed.into_iter().skip(skip).take(height).collect();
    // The newest line sits at the bottom, as in every chat.
    while lines.len() < height {
        lines.push(Line::raw(""));
    }
    lines.reverse();
    (lines, reached_top)
}

/// The local time of `ts` (UTC when `utc`, for tests that must not
/// depend on the machine's zone).
fn at(ts: i64, utc: bool) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    if utc {
        chrono::Utc
            .timestamp_millis_opt(ts)
            .single()
            .map(|t| t.fixed_offset())
    } else {
        Local
            .timestamp_millis_opt(ts)
            .single()
            .map(|t| t.fixed_offset())
    }
}

fn day(ts: i64, utc: bool) -> Option<chrono::NaiveDate> {
    at(ts, utc).map(|t| t.date_naive())
}

fn day_name(ts: i64, utc: bool) -> String {
    at(ts, utc).map_or_else(String::new, |t| t.format("%A %-d %B %Y").to_string())
}

fn time(ts: i64, utc: bool) -> String {
    at(ts, utc).map_or_else(
        || "--:--:--".to_owned(),
        |t| t.format("%H:%M:%S").to_string(),
    )
}

fn divider<'a>(label: &str, width: usize, style: Style) -> Line<'a> {
    let side = width.saturating_sub(label.width()) / 2;
    Line::styled(
        format!(
            "{}{label}{}",
            "─".repeat(side),
            "─".repeat(width.saturating_sub(side + label.width()))
        ),
        style,
    )
}

/// One entry as wrapped lines: the time and sender, then the text, with
/// continuation lines indented under the text.
fn entry_lines<'a>(entry: &'a Entry, theme: &Theme, app: &App, width: usize) -> Vec<Line<'a>> {
    let stamp = time(entry.ts, app.utc);
    let mine = entry.sender.as_ref() == Some(&app.session.me);
    let (sender, sender_style) = match &entry.sender {
        Some(user) => (format!("{user}: "), theme.sender(user.as_str())),
        None => ("* ".to_owned(), theme.dim()),
    };
    let (body, body_style) = match &entry.content {
        Content::Text(text) => (text.clone(), Style::default()),
        Content::Notice(text) => (text.clone(), theme.dim().add_modifier(Modifier::ITALIC)),
        Content::Sealed { id } => (
            format!("🔒 sealed message #{id}: @open {id} PASSPHRASE"),
            theme.fg(Color::Magenta),
        ),
        Content::File {
            name,
            size,
            path: Some(path),
            ..
        } => (
            format!(
                "📎 {name} ({}) saved to {}",
                size_text(*size),
                path.display()
            ),
            theme.fg(Color::Blue),
        ),
        Content::File {
            name,
            size,
            offer: Some(id),
            ..
        } => (
            format!(
                "📎 {name} ({}) waits: @accept {id} or @reject {id}",
                size_text(*size)
            ),
            theme.fg(Color::Blue),
        ),
        Content::File { name, size, .. } => (
            format!("📎 {name} ({})", size_text(*size)),
            theme.fg(Color::Blue),
        ),
    };
    let (mark, mark_style) = match &entry.state {
        Some(SendState::Pending) => (" …".to_owned(), theme.dim()),
        Some(SendState::Sent) if mine => (String::new(), Style::default()),
        Some(SendState::Failed(reason)) => (format!(" ✗ not sent: {reason}"), theme.fg(Color::Red)),
        _ => (String::new(), Style::default()),
    };
    let indent = stamp.width() + 1 + sender.width();
    let text_width = width.saturating_sub(indent).max(8);
    let mut out = Vec::new();
    let wrapped = wrap(&format!("{body}{mark}"), text_width);
    let mark_at = body.len();
    let mut offset = 0;
    for (n, piece) in wrapped.into_iter().enumerate() {
        let mut spans = Vec::new();
        if n == 0 {
            spans.push(Span::styled(format!("{stamp} "), theme.dim()));
            spans.push(Span::styled(sender.clone(), sender_style));
        } else {
            spans.push(Span::raw(" ".repeat(indent)));
        }
        // The send mark keeps its own style when it shares a line.
        let start = offset;
        let end = offset + piece.len();
        offset = end;
        if end <= mark_at {
            spans.push(Span::styled(piece, body_style));
        } else if start >= mark_at {
            spans.push(Span::styled(piece, mark_style));
        } else {
            let split = mark_at - start;
            spans.push(Span::styled(piece[..split].to_owned(), body_style));
            spans.push(Span::styled(piece[split..].to_owned(), mark_style));
        }
        out.push(Line::from(spans));
    }
    out
}

pub(super) fn size_text(size: u64) -> String {
    match size {
        s if s >= 1 << 20 => format!("{:.1} MiB", s as f64 / f64::from(1 << 20)),
        s if s >= 1 << 10 => format!("{:.1} KiB", s as f64 / 1024.0),
        s => format!("{s} bytes"),
    }
}

/// Splits `text` into pieces of at most `width` columns, at spaces where
/// it can and at newlines always; the pieces together are `text` without
/// its newlines.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        let mut current = String::new();
        let mut used = 0;
        let mut last_space: Option<(usize, usize)> = None;
        for c in line.chars() {
            let w = c.width().unwrap_or(0);
            if used + w > width && !current.is_empty() {
                match last_space {
                    Some((at, cols)) if at > 0 => {
                        let rest = current.split_off(at);
                        out.push(std::mem::take(&mut current));
                        current = rest;
                        used -= cols;
                    }
                    _ => {
                        out.push(std::mem::take(&mut current));
                        used = 0;
                    }
                }
                last_space = None;
            }
            current.push(c);
            used += w;
            if c == ' ' {
                last_space = Some((current.len(), used));
            }
        }
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_breaks_at_spaces_and_keeps_every_character() {
        assert_eq!(wrap("hello big world", 9), ["hello ", "big world"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("one\ntwo", 10), ["one", "two"]);
        // Wide characters count two columns.
        assert_eq!(wrap("日本語です", 4), ["日本", "語で", "す"]);
    }
}
