//! Drawing: the sidebar (conversations with badges, who is online), the
//! timeline of the selected conversation, the security banner, the input
//! and the status bar. Only the lines in view are laid out, so a long
//! conversation costs no more to draw than a short one.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use sotto_client::model::{ConnectionState, Conversation, ConversationId};
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
    let banner = u16::from(!app.front.model.notices.is_empty());
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
    let conversations = app.front.model.conversations();
    let online = app.front.model.online.len() as u16;
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
    let group = match app.front.model.selected() {
        ConversationId::Group(group) => app.front.model.members.get(group),
        _ => None,
    };
    let (people, heading): (Vec<(&sotto_proto::Username, Option<Status>)>, String) = match group {
        Some(members) => (
            members
                .iter()
                .map(|m| (m, app.front.model.online.get(m).copied()))
                .collect(),
            format!("Members ({})", members.len()),
        ),
        None => (
            app.front
                .model
                .online
                .iter()
                .map(|(u, s)| (u, Some(*s)))
                .collect(),
            format!("Online ({})", app.front.model.online.len()),
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
    let selected = c.id == *app.front.model.selected();
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

fn draw_banner(frame: &mut Frame<'_>, app: &App, theme: &Theme, area: Rect) {
    let count = app.front.model.notices.len();
    let Some(notice) = app.front.model.notices.front() else {
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
                title(app.front.model.selected()),
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
    let (state, style) = match &app.front.model.connection {
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
        .front
        .model
        .online
        .get(&app.session.me)
        .copied()
        .unwrap_or(app.front.status);
    let sending = app
        .front
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
    let middle = match (&app.front.flash, sending) {
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

mod timeline;
use timeline::{draw_timeline, size_text};
