use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use sotto_client::ClientEvent;
use sotto_client::command::Command;
use sotto_client::model::{ConversationId, SendState};

use sotto_proto::{Status, Username};

use super::*;

fn u(name: &str) -> Username {
    Username::parse(name).unwrap()
}

pub(crate) fn app() -> App {
    App::new(
        Session {
            me: u("alice"),
            server: "chat.example:7443".into(),
            fingerprint: "ab12cd34".into(),
        },
        true,
    )
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn with(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
    KeyEvent::new(code, modifiers)
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        app.key(key(KeyCode::Char(c)));
    }
}

fn private(from: &str, text: &str) -> ClientEvent {
    ClientEvent::Private {
        from: u(from),
        peer: u(from),
        text: text.into(),
        ts: 1_000,
    }
}

#[test]
fn typing_in_a_private_conversation_sends_there_without_a_prefix() {
    let mut app = app();
    app.event(&private("bob", "hi"));
    app.select(ConversationId::Direct(u("bob")));
    typed(&mut app, "hello bob");
    let Some(Action::Run { command, pending }) = app.key(key(KeyCode::Enter)) else {
        panic!("nothing to run");
    };
    let Command::Private { to, text } = command else {
        panic!("{command:?}");
    };
    assert_eq!((to.as_str(), text.as_str()), ("bob", "hello bob"));
    // Shown at once, pending, then sent.
    let (id, entry) = pending.unwrap();
    let last = |app: &App| {
        app.front
            .model
            .conversation(&id)
            .unwrap()
            .timeline
            .back()
            .unwrap()
            .clone()
    };
    assert_eq!(last(&app).state, Some(SendState::Pending));
    app.finished(
        Ok(sotto_client::dispatch::Outcome::Sent {
            to: "bob".into(),
            note: None,
            echo: None,
        }),
        Some((id.clone(), entry)),
    );
    assert_eq!(last(&app).state, Some(SendState::Sent));
}

#[test]
fn commands_work_from_any_conversation_and_a_name_alone_opens_it() {
    let mut app = app();
    app.select(ConversationId::Direct(u("bob")));
    typed(&mut app, "@status away");
    assert!(matches!(
        app.key(key(KeyCode::Enter)),
        Some(Action::Run {
            command: Command::SetStatus(Status::Away),
            pending: None
        })
    ));
    // Someone unknown (a typo, a word) does not open a conversation.
    typed(&mut app, "@zzqx");
    assert!(app.key(key(KeyCode::Enter)).is_none());
    assert_eq!(
        app.front.model.selected(),
        &ConversationId::Direct(u("bob"))
    );
    assert!(
        app.front
            .flash
            .as_deref()
            .unwrap()
            .contains("no conversation with 'zzqx'")
    );
    app.event(&ClientEvent::Presence {
        user: u("carol"),
        change: sotto_proto::PresenceChange::Online(Status::Normal),
    });
    typed(&mut app, "@carol");
    assert!(app.key(key(KeyCode::Enter)).is_none());
    assert_eq!(
        app.front.model.selected(),
        &ConversationId::Direct(u("carol"))
    );
    typed(&mut app, "@lobby");
    assert!(app.key(key(KeyCode::Enter)).is_none());
    assert_eq!(app.front.model.selected(), &ConversationId::Lobby);
    typed(&mut app, "@stauts");
    assert!(app.key(key(KeyCode::Enter)).is_none());
    assert!(
        app.front.flash.as_deref().unwrap().contains("@status"),
        "{:?}",
        app.front.flash
    );
}

#[test]
fn alt_numbers_and_ctrl_n_p_switch_conversations() {
    let mut app = app();
    app.event(&private("bob", "one"));
    app.event(&ClientEvent::Private {
        from: u("carol"),
        peer: u("carol"),
        text: "two".into(),
        ts: 2_000,
    });
    // Most recent first: carol, bob, then the lobby.
    app.key(with(KeyCode::Char('1'), KeyModifiers::ALT));
    assert_eq!(
        app.front.model.selected(),
        &ConversationId::Direct(u("carol"))
    );
    app.key(with(KeyCode::Char('n'), KeyModifiers::CONTROL));
    assert_eq!(
        app.front.model.selected(),
        &ConversationId::Direct(u("bob"))
    );
    app.key(with(KeyCode::Char('p'), KeyModifiers::CONTROL));
    assert_eq!(
        app.front.model.selected(),
        &ConversationId::Direct(u("carol"))
    );
    assert_eq!(
        app.front
            .model
            .conversation(&ConversationId::Direct(u("bob")))
            .unwrap()
            .unread,
        0
    );
}

#[test]
fn alt_enter_makes_a_new_line_and_pastes_over_the_limit_are_refused() {
    let mut app = app();
    typed(&mut app, "one");
    app.key(with(KeyCode::Enter, KeyModifiers::ALT));
    typed(&mut app, "two");
    assert_eq!(app.input.text(), "one\ntwo");
    app.input.clear();
    app.paste(&"x".repeat(5_000));
    assert!(app.input.is_empty());
    assert!(app.front.flash.as_deref().unwrap().contains("5000 bytes"));
    app.paste("a\r\nb");
    assert_eq!(app.input.text(), "a\nb");
}

#[test]
fn tab_completes_commands_and_names() {
    let mut app = app();
    app.event(&ClientEvent::Presence {
        user: u("bob"),
        change: sotto_proto::PresenceChange::Online(Status::Normal),
    });
    typed(&mut app, "@gro");
    app.key(key(KeyCode::Tab));
    assert_eq!(app.input.text(), "@group ");
    app.input.clear();
    typed(&mut app, "hi @b");
    app.key(key(KeyCode::Tab));
    assert_eq!(app.input.text(), "hi @bob ");
    app.input.clear();
    typed(&mut app, ":thumbsu");
    app.key(key(KeyCode::Tab));
    assert_eq!(app.input.text(), ":thumbsup: ");
}

#[test]
fn password_is_asked_masked_three_times_and_never_kept_in_history() {
    let mut app = app();
    typed(&mut app, "@password");
    assert!(app.key(key(KeyCode::Enter)).is_none());
    for secret in ["old-one", "new-one"] {
        typed(&mut app, secret);
        assert!(app.key(key(KeyCode::Enter)).is_none());
    }
    typed(&mut app, "new-one");
    assert!(matches!(
        app.key(key(KeyCode::Enter)),
        Some(Action::ChangePassword { .. })
    ));
    app.key(key(KeyCode::Up));
    assert_eq!(app.input.text(), "@password");
}

#[test]
fn ctrl_c_quits_and_help_opens_and_closes() {
    let mut app = app();
    app.key(key(KeyCode::F(1)));
    assert!(app.help);
    app.key(key(KeyCode::Char('x')));
    assert!(!app.help && app.input.is_empty());
    assert!(matches!(
        app.key(with(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Some(Action::Quit)
    ));
}

#[test]
fn scrolling_to_the_top_asks_for_older_pages_until_there_are_none() {
    let mut app = app();
    app.event(&ClientEvent::Lobby {
        from: u("bob"),
        text: "newest".into(),
        ts: 100,
    });
    assert!(
        app.front.older_wanted().is_none(),
        "not scrolled to the top"
    );
    app.front.older.at_top = true;
    assert_eq!(app.front.older_wanted(), Some((ConversationId::Lobby, 100)));
    assert!(app.front.older_wanted().is_none(), "one page at a time");
    // A page of another conversation's older messages: go on from there.
    let carol = ClientEvent::Private {
        from: u("carol"),
        peer: u("carol"),
        text: "old".into(),
        ts: 60,
    };
    app.front
        .older_loaded(ConversationId::Lobby, Ok(vec![carol]));
    assert_eq!(app.front.older_wanted(), Some((ConversationId::Lobby, 60)));
    app.front.older_loaded(
        ConversationId::Lobby,
        Ok(vec![ClientEvent::Lobby {
            from: u("bob"),
            text: "older".into(),
            ts: 50,
        }]),
    );
    let lobby = app
        .front
        .model
        .conversation(&ConversationId::Lobby)
        .unwrap();
    assert_eq!(lobby.timeline.front().unwrap().ts, 50);
    assert_eq!(app.front.older_wanted(), Some((ConversationId::Lobby, 50)));
    app.front
        .older_loaded(ConversationId::Lobby, Ok(Vec::new()));
    assert!(app.front.older_wanted().is_none(), "nothing older");
}

#[test]
fn a_private_message_or_a_mention_elsewhere_rings_the_bell_and_own_status_shows() {
    let mut app = app();
    app.event(&ClientEvent::Lobby {
        from: u("bob"),
        text: "just chatting".into(),
        ts: 10,
    });
    assert!(!app.bell, "the lobby is shown");
    app.event(&private("bob", "psst"));
    assert!(std::mem::take(&mut app.bell));
    app.select(ConversationId::Direct(u("bob")));
    app.event(&private("bob", "again"));
    assert!(!app.bell, "the conversation is shown");
    app.event(&ClientEvent::Presence {
        user: u("alice"),
        change: sotto_proto::PresenceChange::Status(Status::Dnd),
    });
    assert_eq!(app.front.model.online.get(&u("alice")), Some(&Status::Dnd));
}

#[test]
fn a_file_or_sealed_message_shows_pending_in_its_conversation() {
    let mut app = app();
    typed(&mut app, "@file bob ~/report.pdf");
    let Some(Action::Run {
        pending: Some((id, _)),
        ..
    }) = app.key(key(KeyCode::Enter))
    else {
        panic!("no pending entry");
    };
    assert_eq!(id, ConversationId::Direct(u("bob")));
    let entry = app
        .front
        .model
        .conversation(&id)
        .unwrap()
        .timeline
        .back()
        .unwrap()
        .clone();
    assert_eq!(
        entry.content,
        sotto_client::model::Content::Text("📎 report.pdf".into())
    );
    assert_eq!(entry.state, Some(SendState::Pending));
    typed(&mut app, "@secret bob hunter2 the code is 1234");
    assert!(matches!(
        app.key(key(KeyCode::Enter)),
        Some(Action::Run {
            pending: Some(_),
            ..
        })
    ));
    let last = app
        .front
        .model
        .conversation(&id)
        .unwrap()
        .timeline
        .back()
        .unwrap()
        .clone();
    assert!(
        matches!(&last.content, sotto_client::model::Content::Text(t) if t.starts_with("🔒") && !t.contains("1234")),
        "{last:?}"
    );
}

#[test]
fn at_help_lists_the_commands_in_the_conversation() {
    let mut app = app();
    typed(&mut app, "@help");
    assert!(app.key(key(KeyCode::Enter)).is_none());
    let lobby = app
        .front
        .model
        .conversation(&ConversationId::Lobby)
        .unwrap();
    let text: Vec<String> = lobby
        .timeline
        .iter()
        .filter_map(|e| match &e.content {
            sotto_client::model::Content::Notice(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert!(text.iter().any(|t| t.contains("@group set")), "{text:?}");
}
