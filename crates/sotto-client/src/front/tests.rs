use sotto_proto::{PresenceChange, Status, Username};

use super::*;
use crate::model::{Content, SendState};

fn u(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn front() -> Front {
    let mut front = Front::new(u("alice"));
    front.fixed_now = Some(5_000);
    front
}

fn private(from: &str, text: &str, ts: i64) -> ClientEvent {
    ClientEvent::Private {
        from: u(from),
        peer: u(from),
        text: text.into(),
        ts,
    }
}

fn lobby(from: &str, text: &str, ts: i64) -> ClientEvent {
    ClientEvent::Lobby {
        from: u(from),
        text: text.into(),
        ts,
    }
}

#[test]
fn a_private_message_or_a_mention_alerts_and_nothing_else_does() {
    let mut front = front();
    // The lobby is shown: a mention there alerts as shown, plain text not.
    let alert = front.event(&lobby("bob", "hi alice", 1)).unwrap();
    assert!(alert.shown);
    assert_eq!(front.event(&lobby("bob", "hi all", 1)), None);
    let alert = front.event(&private("bob", "are you there?", 2)).unwrap();
    assert_eq!(
        alert,
        Alert {
            conversation: ConversationId::Direct(u("bob")),
            shown: false,
            from: u("bob"),
            preview: "are you there?".into(),
        }
    );
    front.select(ConversationId::Direct(u("bob")));
    // A mention in the lobby, now not shown, alerts; plain lobby text and
    // presence do not; a private message in the conversation shown does,
    // as shown; one's own (from another device) does not.
    assert!(!front.event(&lobby("carol", "ask @alice", 3)).unwrap().shown);
    assert_eq!(front.event(&lobby("carol", "lunch?", 4)), None);
    let online = ClientEvent::Presence {
        user: u("dave"),
        change: PresenceChange::Online(Status::Normal),
    };
    assert_eq!(front.event(&online), None);
    assert!(front.event(&private("bob", "again", 5)).unwrap().shown);
    let own = ClientEvent::Private {
        from: u("alice"),
        peer: u("bob"),
        text: "from my phone".into(),
        ts: 5,
    };
    assert_eq!(front.event(&own), None);
    // The same message again (live and from history at login) is shown
    // once and alerts once.
    front.select(ConversationId::Lobby);
    assert!(front.event(&private("bob", "later", 6)).is_some());
    assert_eq!(front.event(&private("bob", "later", 6)), None);
}

#[test]
fn a_line_goes_to_the_conversation_shown_and_is_pending_until_it_is_stored() {
    let mut front = front();
    front.event(&private("bob", "hi", 1));
    front.select(ConversationId::Direct(u("bob")));
    let Some(Action::Run { command, pending }) = front.submit("hello :smile:") else {
        panic!("nothing to run");
    };
    assert!(
        matches!(&command, Command::Private { to, text } if to.as_str() == "bob" && text == "hello :smile:")
    );
    let (id, entry) = pending.clone().unwrap();
    let last = |front: &Front| {
        front
            .model
            .conversation(&id)
            .unwrap()
            .timeline
            .back()
            .unwrap()
            .clone()
    };
    assert_eq!(last(&front).state, Some(SendState::Pending));
    assert_eq!(last(&front).content, Content::Text("hello 😄".into()));
    front.finished(Err(ClientError::Timeout("send")), Some((id.clone(), entry)));
    assert!(matches!(last(&front).state, Some(SendState::Failed(_))));
    // `@lobby` shows the lobby; `@nobody` alone says why nothing opened.
    assert!(front.submit("@lobby").is_none());
    assert_eq!(front.model.selected(), &ConversationId::Lobby);
    assert!(front.submit("@nobody").is_none());
    assert!(
        front
            .flash
            .as_deref()
            .unwrap()
            .contains("no conversation with 'nobody'")
    );
    assert!(matches!(
        front.submit("@password"),
        Some(Action::AskPassword)
    ));
    assert!(matches!(front.submit("@quit"), Some(Action::Quit)));
}

#[test]
fn older_pages_stop_at_the_front_ends_scrollback() {
    let mut front = front();
    front.scrollback = 3;
    front.older.at_top = true;
    let page: Vec<ClientEvent> = (1..=5).map(|i| lobby("bob", &format!("m{i}"), i)).collect();
    let (id, before) = front.older_wanted().unwrap();
    assert_eq!((id.clone(), before), (ConversationId::Lobby, 5_000));
    // One page at a time.
    assert!(front.older_wanted().is_none());
    front.older_loaded(id, Ok(page));
    let kept = front.model.conversation(&ConversationId::Lobby).unwrap();
    assert_eq!(kept.timeline.len(), 3);
    assert!(front.older.exhausted.contains(&ConversationId::Lobby));
    assert!(front.older_wanted().is_none());
}

#[test]
fn completion_offers_commands_only_at_the_start_of_a_line() {
    let mut front = front();
    front.event(&lobby("helen", "hi", 1));
    front.model.online.insert(u("hank"), Status::Normal);
    assert_eq!(
        front.candidates("@h", true),
        vec!["@hank", "@help", "@history"]
    );
    assert_eq!(front.candidates("@h", false), vec!["@hank"]);
    assert_eq!(front.candidates(":smil", false)[0], ":smile:");
}
