//! Drawing: the sidebar (conversations with badges, who is online), the
//! timeline of the selected conversation, the security banner, the input
//! and the status bar. Only the lines in view are laid out, so a long
//! conversation costs no more to draw than a short one.

use chrono::{Local, TimeZone};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use sotto_client::model::{
    ConnectionState, Content, Conversation, ConversationId, Entry, SendState,
};
use sotto_proto::Status;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::app::App;

/// Below this the screen only asks for more room.
const MIN_WIDTH: u16 = 40;
const MIN_HEIGHT: u16 = 12;
/// The sidebar's width.
const SIDEBAR: u16 = 22;
/// Input lines shown at most.
const MAX_INPUT_LINES: u16 = 5;
/// Colours for senders' names (not red: that is for errors).
const PALETTE: [Color; 6] = [
    Color::Cyan,
    Color::Green,
    Color::Yellow,
    Color::Blue,
    Color::Magenta,
    Color::LightCyan,
];

/// The keys, for the help overlay.
pub const KEYS: &[(&str, &str)] = &[
    (
        "Enter",
        "send to the conversation shown (or run an @command)",
    ),
    ("Alt+Enter", "new line in the message"),
    ("Up / Down", "earlier lines you typed"),
    ("Tab", "complete @commands, names, groups, :emoji:"),
    ("Alt+1..9", "show conversation 1..9"),
    ("Ctrl+N / Ctrl+P", "next / previous conversation"),
    ("@bob  @crew", "alone on the line: open that conversation"),
    (
        "PageUp / PageDown",
        "scroll (also the mouse wheel); Ctrl+End: newest",
    ),
    ("Ctrl+O", "mark the security notice shown as seen"),
    (
        "Ctrl+A/E/U/K/W",
        "start, end, delete to start/end, delete word",
    ),
    ("F1 or ?", "this help; @help lists every command"),
    ("Ctrl+C", "quit"),
];

struct Theme {
    color: bool,
}

impl Theme {
    fn fg(&self, color: Color) -> Style {
        if self.color {
            Style::default().fg(color)
        } else {
            Style::default()
        }
    }

    fn dim(&self) -> Style {
        if self.color {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default()
        }
    }

    fn sender(&self, name: &str) -> Style {
        let hash = name
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
        self.fg(PALETTE[hash as usize % PALETTE.len()])
            .add_modifier(Modifier::BOLD)
    }

    fn alert(&self) -> Style {
        if self.color {
            Style::default().fg(Color::White).bg(Color::Red)
        } else {
            Style::default().add_modifier(Modifier::REVERSED)
        }
    }
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, app: &mut App) {
    let theme = Theme { color: app.color };
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        frame.render_widget(
            Paragraph::new(format!(
                "Make this window at least {MIN_WIDTH}×{MIN_HEIGHT} (it is {}×{}); \
                 80×24 or more is best.",
                area.width, area.height
            ))
            .wrap(Wrap { trim: true }),
            area,
        );
        return;
    }
    let input_lines = input_height(app, area.width.saturating_sub(2));
    let banner = u16::from(!app.model.notices.is_empty());
    let [main, banner_area, input_area, status_area] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(banner),
        Constraint::Length(input_lines + 2),
        Constraint::Length(1),
    ])
    .areas(area);
    let sidebar = SIDEBAR.min(area.width / 3);
    let [side, timeline_area] =
        Layout::horizontal([Constraint::Length(sidebar), Constraint::Min(10)]).areas(main);
    draw_sidebar(frame, app, &theme, side);
    draw_timeline(frame, app, &theme, timeline_area);
    if banner > 0 {
        draw_banner(frame, app, &theme, banner_area);
    }
    draw_input(frame, app, input_area);
    draw_status(frame, app, &theme, status_area);
    if app.help {
        draw_help(frame, &theme, area);
    }
}

fn title(id: &ConversationId) -> String {
    match id {
        ConversationId::Lobby => "lobby".to_owned(),
        ConversationId::Direct(user) => format!("@{user}"),
        ConversationId::Group(group) => format!("#{group}"),
    }
}

fn draw_sidebar(frame: &mut Frame<'_>, app: &App, theme: &Theme, area: Rect) {
    let conversations = app.model.conversations();
    let online = app.model.online.len() as u16;
    let wanted = conversations.len() as u16 + 2;
    let [top, bottom] = Layout::vertical([
        Constraint::Max(wanted.max(area.height.saturating_sub(online + 2).max(area.height / 2))),
        Constraint::Min(3),
    ])
    .areas(area);
    let width = top.width.saturating_sub(2) as usize;
    let lines: Vec<Line<'_>> = conversations
        .iter()
        .enumerate()
        .map(|(i, c)| conversation_line(app, theme, i, c, width))
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title("Conversations"),
        ),
        top,
    );
    // A group's members (online or not) when a group is shown, else
    // who is online.
    let group = match app.model.selected() {
        ConversationId::Group(group) => app.model.members.get(group),
        _ => None,
    };
    let (people, heading): (Vec<(&sotto_proto::Username, Option<Status>)>, String) = match group {
        Some(members) => (
            members
                .iter()
                .map(|m| (m, app.model.online.get(m).copied()))
                .collect(),
            format!("Members ({})", members.len()),
        ),
        None => (
            app.model
                .online
                .iter()
                .map(|(u, s)| (u, Some(*s)))
                .collect(),
            format!("Online ({})", app.model.online.len()),
        ),
    };
    let lines: Vec<Line<'_>> = people
        .into_iter()
        .map(|(user, status)| {
            let (mark, style) = match status {
                Some(Status::Normal) => ("●", theme.fg(Color::Green)),
                Some(Status::Away) => ("◐", theme.fg(Color::Yellow)),
                Some(Status::Dnd) => ("⊘", theme.fg(Color::Red)),
                None => ("○", theme.dim()),
            };
            let me = if *user == app.session.me {
                " (you)"
            } else {
                ""
            };
            Line::from(vec![
                Span::styled(format!("{mark} "), style),
                Span::raw(format!("{user}{me}")),
                Span::styled(
                    match status {
                        Some(Status::Normal) => String::new(),
                        Some(other) => format!(" {}", other.as_str()),
                        None => " offline".to_owned(),
                    },
                    theme.dim(),
                ),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(heading)),
        bottom,
    );
}

fn conversation_line<'a>(
    app: &App,
    theme: &Theme,
    index: usize,
    c: &Conversation,
    width: usize,
) -> Line<'a> {
    let selected = c.id == *app.model.selected();
    let key = if index < 9 {
        format!("{} ", index + 1)
    } else {
        "  ".to_owned()
    };
    let badge = match (c.unread, c.mentioned) {
        (0, _) => String::new(),
        (n, true) => format!(" @{n}"),
        (n, false) => format!(" {n}"),
    };
    let name_width = width.saturating_sub(key.len() + badge.width());
    let mut style = Style::default();
    if selected {
        style = style.add_modifier(Modifier::REVERSED);
    } else if c.unread > 0 {
        style = style.add_modifier(Modifier::BOLD);
    }
    let badge_style = if c.mentioned {
        theme.alert()
    } else {
        theme.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    };
    Line::from(vec![
        Span::styled(key, theme.dim()),
        Span::styled(fit(&title(&c.id), name_width), style),
        Span::styled(badge, badge_style),
    ])
}

/// `text` cut (with an ellipsis) or padded to `width` columns.
fn fit(text: &str, width: usize) -> String {
    if text.width() <= width {
        return format!(
            "{text:<width$}",
            width = width - text.width() + text.chars().count()
        );
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

fn draw_timeline(frame: &mut Frame<'_>, app: &mut App, theme: &Theme, area: Rect) {
    let selected = app.model.selected().clone();
    let height = area.height.saturating_sub(2) as usize;
    let width = area.width.saturating_sub(2) as usize;
    app.page = height;
    let conversation = app.model.conversation(&selected);
    let (lines, at_top) = match conversation {
        Some(c) => timeline_lines(c, theme, app, width, height),
        None => (Vec::new(), true),
    };
    // Scrolling stops at the oldest line; older pages are asked for there.
    app.older.at_top = at_top && app.scroll > 0;
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

fn size_text(size: u64) -> String {
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

fn draw_banner(frame: &mut Frame<'_>, app: &App, theme: &Theme, area: Rect) {
    let count = app.model.notices.len();
    let Some(notice) = app.model.notices.front() else {
        return;
    };
    let more = if count > 1 {
        format!(" (+{} more)", count - 1)
    } else {
        String::new()
    };
    frame.render_widget(
        Paragraph::new(format!("! {notice}{more}  [Ctrl+O: seen]")).style(theme.alert()),
        area,
    );
}

fn input_height(app: &App, width: u16) -> u16 {
    let width = usize::from(width.max(1));
    let lines: usize = app
        .input
        .text()
        .split('\n')
        .map(|l| l.width().div_ceil(width).max(1))
        .sum();
    (lines as u16).clamp(1, MAX_INPUT_LINES)
}

fn draw_input(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let (title, shown) = match &app.password {
        Some(_) => (
            "password (not shown; Esc cancels)".to_owned(),
            "•".repeat(app.input.text().chars().count()),
        ),
        None => (
            format!(
                "to {} · {}/{} bytes",
                title(app.model.selected()),
                app.input.text().len(),
                sotto_proto::limits::MAX_TEXT_LEN
            ),
            app.input.text().to_owned(),
        ),
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    let width = usize::from(inner.width.max(1));
    // Where the cursor is, in wrapped rows and columns.
    let before = match &app.password {
        Some(_) => "•".repeat(app.input.text()[..app.input.cursor()].chars().count()),
        None => app.input.text()[..app.input.cursor()].to_owned(),
    };
    let mut row = 0usize;
    let mut col = 0usize;
    for (n, line) in before.split('\n').enumerate() {
        if n > 0 {
            row += col.div_ceil(width).max(1);
        }
        col = line.width();
    }
    row += col / width;
    col %= width;
    let visible = usize::from(inner.height.max(1));
    let scroll = row.saturating_sub(visible - 1);
    frame.render_widget(
        Paragraph::new(shown)
            .wrap(Wrap { trim: false })
            .scroll((scroll as u16, 0))
            .block(block),
        area,
    );
    frame.set_cursor_position(Position::new(
        inner.x + col as u16,
        inner.y + (row - scroll) as u16,
    ));
}

fn draw_status(frame: &mut Frame<'_>, app: &App, theme: &Theme, area: Rect) {
    let (state, style) = match &app.model.connection {
        ConnectionState::Connected => ("● connected".to_owned(), theme.fg(Color::Green)),
        ConnectionState::Reconnecting {
            attempt,
            retry_in_ms,
            ..
        } => (
            format!(
                "○ reconnecting (try {attempt}, in {:.0} s)",
                (*retry_in_ms as f64 / 1000.0).ceil()
            ),
            theme.fg(Color::Yellow),
        ),
        ConnectionState::Disconnected(_) => ("✗ disconnected".to_owned(), theme.fg(Color::Red)),
    };
    // The server announces one's own status changes like everyone's.
    let status = app
        .model
        .online
        .get(&app.session.me)
        .copied()
        .unwrap_or(app.status);
    let sending = app
        .model
        .transfers
        .values()
        .next()
        .map(|(name, sent, total)| {
            let percent = sent.saturating_mul(100) / (*total).max(1);
            let filled = (percent / 10) as usize;
            format!(
                " │ ⇡ {name} [{}{}] {percent}% of {}",
                "█".repeat(filled),
                "·".repeat(10 - filled.min(10)),
                size_text(*total)
            )
        });
    let middle = match (&app.flash, sending) {
        (_, Some(progress)) => Span::styled(progress, theme.fg(Color::Cyan)),
        (Some(flash), None) => Span::styled(format!(" {flash}"), theme.fg(Color::Yellow)),
        (None, None) => Span::raw(format!(
            " │ {}@{} │ cert {} │ {} │ F1 help",
            app.session.me,
            app.session.server,
            app.session.fingerprint,
            status.as_str()
        )),
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![Span::styled(state, style), middle])),
        area,
    );
}

fn draw_help(frame: &mut Frame<'_>, theme: &Theme, area: Rect) {
    let width = area.width.saturating_sub(4).min(76);
    let height = (KEYS.len() as u16 + 4).min(area.height);
    let rect = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let mut lines: Vec<Line<'_>> = KEYS
        .iter()
        .map(|(key, what)| {
            Line::from(vec![
                Span::styled(
                    format!("{key:>18}  "),
                    theme.fg(Color::Cyan).add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::styled("any key closes this", theme.dim()));
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title("Keys")),
        rect,
    );
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
