//! The main screens on ratatui's test backend, compared with snapshots
//! (`cargo insta review` after a deliberate change).

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use sotto_client::ClientEvent;
use sotto_client::model::ConversationId;
use sotto_proto::{PresenceChange, Status, Username};

use crate::app::{App, Session};

fn u(name: &str) -> Username {
    Username::parse(name).unwrap()
}

/// 4 December 2026, 18:30:00 UTC.
const T: i64 = 1_796_409_000_000;

fn app(color: bool) -> App {
    let mut app = App::new(
        Session {
            me: u("alice"),
            server: "chat.example:7443".into(),
            fingerprint: "ab12cd34".into(),
        },
        color,
    );
    app.utc = true;
    app.front.fixed_now = Some(T - 86_400_000 - 60_000);
    app.front.model.set_online([(u("alice"), Status::Normal)]);
    for (user, status) in [("bob", Status::Normal), ("carol", Status::Away)] {
        app.event(&ClientEvent::Presence {
            user: u(user),
            change: PresenceChange::Online(status),
        });
    }
    app.event(&ClientEvent::Lobby {
        from: u("bob"),
        text: "morning all".into(),
        ts: T - 86_400_000,
    });
    app.event(&ClientEvent::Lobby {
        from: u("carol"),
        text: "a long line that wraps onto the next line of the timeline because it is long".into(),
        ts: T,
    });
    app.event(&ClientEvent::Private {
        from: u("bob"),
        peer: u("bob"),
        text: "are you there, alice?".into(),
        ts: T + 1_000,
    });
    app
}

fn screen(app: &mut App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| crate::ui::draw(frame, app)).unwrap();
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

#[test]
fn the_lobby_with_an_unread_mention_at_80_by_24() {
    let mut app = app(true);
    insta::assert_snapshot!(screen(&mut app, 80, 24));
}

#[test]
fn a_private_conversation_with_the_new_messages_line_and_a_pending_reply() {
    let mut app = app(true);
    app.select(ConversationId::Direct(u("bob")));
    app.front
        .model
        .sending(&ConversationId::Direct(u("bob")), "yes, here", T + 2_000);
    insta::assert_snapshot!(screen(&mut app, 80, 24));
}

#[test]
fn the_help_overlay_and_a_security_notice() {
    let mut app = app(false);
    app.event(&ClientEvent::Security {
        message: "bob has a new device".into(),
    });
    app.help = true;
    insta::assert_snapshot!(screen(&mut app, 80, 24));
}

#[test]
fn reconnecting_is_shown_in_the_status_bar() {
    let mut app = app(true);
    app.event(&ClientEvent::Reconnecting {
        reason: "the server shut down".into(),
        attempt: 3,
        retry_in_ms: 2_000,
    });
    let text = screen(&mut app, 80, 24);
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains("reconnecting (try 3, in 2 s)"),
        "{text}"
    );
}

#[test]
fn your_own_status_is_in_the_status_bar() {
    let mut app = app(true);
    app.event(&ClientEvent::Presence {
        user: u("alice"),
        change: PresenceChange::Status(Status::Dnd),
    });
    let text = screen(&mut app, 80, 24);
    assert!(text.lines().last().unwrap().contains("│ dnd │"), "{text}");
}

#[test]
fn a_group_shows_its_members_online_or_not() {
    let mut app = app(true);
    let group = sotto_proto::GroupName::parse("crew").unwrap();
    app.event(&ClientEvent::GroupCreated {
        group: group.clone(),
        by: u("alice"),
        members: vec![u("bob"), u("dave")],
    });
    app.select(ConversationId::Group(group));
    let text = screen(&mut app, 80, 24);
    assert!(text.contains("Members (3)"), "{text}");
    assert!(text.contains("○ dave offline"), "{text}");
    assert!(text.contains("● bob"), "{text}");
}

#[test]
fn a_file_being_sent_shows_its_progress_in_the_status_bar() {
    let mut app = app(true);
    app.event(&ClientEvent::Sending {
        id: 1,
        name: "report.pdf".into(),
        sent: 4 * 1024 * 1024,
        total: 10 * 1024 * 1024,
    });
    let text = screen(&mut app, 80, 24);
    let last = text.lines().last().unwrap();
    assert!(
        last.contains("report.pdf [████······] 40% of 10.0 MiB"),
        "{text}"
    );
}

#[test]
fn a_window_too_small_asks_for_room() {
    let mut app = app(true);
    let text = screen(&mut app, 30, 8);
    assert!(text.contains("40×12 (it is 30×8)"), "{text}");
}
