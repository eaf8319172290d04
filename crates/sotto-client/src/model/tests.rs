use super::*;

fn u(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn g(name: &str) -> GroupName {
    GroupName::parse(name).unwrap()
}

fn private(from: &str, peer: &str, text: &str, ts: i64) -> ClientEvent {
    ClientEvent::Private {
        from: u(from),
        peer: u(peer),
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
fn events_go_to_their_conversation_and_count_as_unread_elsewhere() {
    let mut model = Model::new(u("alice"));
    model.apply(&lobby("bob", "hi all", 10));
    model.apply(&private("bob", "bob", "hi alice", 20));
    model.apply(&private("bob", "bob", "are you there?", 30));
    model.apply(&ClientEvent::Group {
        group: g("crew"),
        from: u("carol"),
        text: "standup".into(),
        ts: 25,
    });
    // The lobby is shown: nothing unread there.
    assert_eq!(
        model.conversation(&ConversationId::Lobby).unwrap().unread,
        0
    );
    let bob = model
        .conversation(&ConversationId::Direct(u("bob")))
        .unwrap();
    assert_eq!(bob.unread, 2);
    assert_eq!(bob.timeline.len(), 2);
    let first = bob.timeline[0].id;
    assert_eq!(bob.first_unread, Some(first));
    // Most recent first.
    let order: Vec<ConversationId> = model.conversations().iter().map(|c| c.id.clone()).collect();
    assert_eq!(
        order,
        [
            ConversationId::Direct(u("bob")),
            ConversationId::Group(g("crew")),
            ConversationId::Lobby
        ]
    );
    // Selecting clears the count; the "new messages" line stays until the
    // next selection.
    model.select(ConversationId::Direct(u("bob")));
    let bob = model
        .conversation(&ConversationId::Direct(u("bob")))
        .unwrap();
    assert_eq!((bob.unread, bob.first_unread), (0, Some(first)));
    model.select(ConversationId::Lobby);
    let bob = model
        .conversation(&ConversationId::Direct(u("bob")))
        .unwrap();
    assert_eq!(bob.first_unread, None);
    // Entry ids are unique across conversations.
    let mut ids: Vec<EntryId> = model
        .conversations()
        .iter()
        .flat_map(|c| c.timeline.iter().map(|e| e.id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4);
}

#[test]
fn a_mention_is_flagged_but_not_ones_own_words() {
    let mut model = Model::new(u("alice"));
    model.select(ConversationId::Direct(u("bob")));
    model.apply(&lobby("bob", "lunch, @alice?", 1));
    model.apply(&lobby("carol", "alicent is not alice's name", 2));
    let lobby_now = model.conversation(&ConversationId::Lobby).unwrap();
    assert!(lobby_now.mentioned);
    assert_eq!(lobby_now.unread, 2);
    model.select(ConversationId::Lobby);
    model.select(ConversationId::Direct(u("bob")));
    model.apply(&lobby("carol", "malice aforethought", 3));
    assert!(
        !model
            .conversation(&ConversationId::Lobby)
            .unwrap()
            .mentioned
    );
    model.apply(&private("alice", "bob", "alice here", 4));
    let bob = model
        .conversation(&ConversationId::Direct(u("bob")))
        .unwrap();
    assert_eq!(bob.unread, 0, "one's own message is not unread");
    assert_eq!(bob.timeline[0].state, Some(SendState::Sent));
}

#[test]
fn ones_own_messages_go_from_pending_to_sent_or_failed() {
    let mut model = Model::new(u("alice"));
    let bob = ConversationId::Direct(u("bob"));
    let first = model.sending(&bob, "one", 100);
    let second = model.sending(&bob, "two", 101);
    model.sent(&bob, first, 150);
    model.failed(&bob, second, "bob is not a user here");
    let timeline = &model.conversation(&bob).unwrap().timeline;
    assert_eq!(timeline[0].state, Some(SendState::Sent));
    assert_eq!(timeline[0].ts, 150);
    assert_eq!(
        timeline[1].state,
        Some(SendState::Failed("bob is not a user here".into()))
    );
    assert_eq!(model.conversation(&bob).unwrap().unread, 0);
}

#[test]
fn presence_notices_and_files_are_kept_where_a_ui_finds_them() {
    let mut model = Model::new(u("alice"));
    model.apply(&ClientEvent::Presence {
        user: u("bob"),
        change: PresenceChange::Online(Status::Normal),
    });
    model.apply(&ClientEvent::Presence {
        user: u("bob"),
        change: PresenceChange::Status(Status::Dnd),
    });
    model.apply(&ClientEvent::Presence {
        user: u("carol"),
        change: PresenceChange::Online(Status::Away),
    });
    model.apply(&ClientEvent::Presence {
        user: u("carol"),
        change: PresenceChange::Offline,
    });
    assert_eq!(model.online.get(&u("bob")), Some(&Status::Dnd));
    assert!(!model.online.contains_key(&u("carol")));

    model.apply(&ClientEvent::Security {
        message: "bob has a new device".into(),
    });
    assert_eq!(model.take_notice().as_deref(), Some("bob has a new device"));
    assert_eq!(model.take_notice(), None);

    model.apply(&ClientEvent::FileOffered {
        id: 3,
        from: u("bob"),
        group: None,
        name: "a.txt".into(),
        size: 5,
        ts: 9,
    });
    let bob = model
        .conversation(&ConversationId::Direct(u("bob")))
        .unwrap();
    assert!(matches!(
        &bob.timeline[0].content,
        Content::File {
            offer: Some(3),
            path: None,
            ..
        }
    ));
    model.apply(&ClientEvent::Invited {
        group: g("crew"),
        by: u("bob"),
        auto_join: false,
        room_id: 4,
    });
    assert_eq!(
        model
            .conversation(&ConversationId::Group(g("crew")))
            .unwrap()
            .unread,
        1
    );
    model.apply(&ClientEvent::Reconnecting {
        reason: "reset".into(),
        attempt: 2,
        retry_in_ms: 500,
    });
    assert_eq!(
        model.connection,
        ConnectionState::Reconnecting {
            reason: "reset".into(),
            attempt: 2,
            retry_in_ms: 500
        }
    );
    model.apply(&ClientEvent::Reconnected {
        online: vec![sotto_proto::UserPresence {
            user: u("carol"),
            status: Status::Away,
        }],
    });
    assert_eq!(model.connection, ConnectionState::Connected);
    assert_eq!(model.online.get(&u("carol")), Some(&Status::Away));
    model.apply(&ClientEvent::Disconnected {
        reason: "gone".into(),
    });
    assert_eq!(
        model.connection,
        ConnectionState::Disconnected("gone".into())
    );
}

#[test]
fn a_timeline_keeps_a_bounded_window_in_memory() {
    let mut model = Model::new(u("alice"));
    for n in 0..(MAX_TIMELINE_IN_MEMORY as i64 + 10) {
        model.apply(&lobby("bob", "x", n));
    }
    let lobby_now = model.conversation(&ConversationId::Lobby).unwrap();
    assert_eq!(lobby_now.timeline.len(), MAX_TIMELINE_IN_MEMORY);
    assert_eq!(lobby_now.timeline[0].ts, 10);
}

#[test]
fn history_goes_in_time_order_once_and_is_not_unread() {
    let mut model = Model::new(u("alice"));
    model.apply(&lobby("bob", "live and in history", 20));
    model.apply_history(&lobby("bob", "older", 10));
    model.apply_history(&lobby("bob", "live and in history", 20));
    let texts: Vec<_> = model
        .conversation(&ConversationId::Lobby)
        .unwrap()
        .timeline
        .iter()
        .map(|e| e.content.clone())
        .collect();
    assert_eq!(
        texts,
        [
            Content::Text("older".into()),
            Content::Text("live and in history".into())
        ]
    );
    model.apply_history(&ClientEvent::Private {
        from: u("carol"),
        peer: u("carol"),
        text: "old news".into(),
        ts: 5,
    });
    let carol = model
        .conversation(&ConversationId::Direct(u("carol")))
        .unwrap();
    assert_eq!((carol.unread, carol.timeline.len()), (0, 1));
}

#[test]
fn a_notice_without_a_time_takes_the_newest_time_seen() {
    let mut model = Model::new(u("alice"));
    model.apply(&lobby("bob", "hi", 5_000));
    model.apply(&ClientEvent::MemberJoined {
        group: g("crew"),
        user: u("bob"),
    });
    let crew = model
        .conversation(&ConversationId::Group(g("crew")))
        .unwrap();
    assert_eq!(crew.timeline[0].ts, 5_000);
}

#[test]
fn group_members_follow_the_membership_events() {
    let mut model = Model::new(u("alice"));
    model.apply(&ClientEvent::GroupCreated {
        group: g("crew"),
        by: u("alice"),
        members: vec![],
    });
    model.apply(&ClientEvent::MemberJoined {
        group: g("crew"),
        user: u("bob"),
    });
    model.apply(&ClientEvent::MembersAdded {
        group: g("crew"),
        by: u("alice"),
        members: vec![u("carol"), u("dave")],
    });
    model.apply(&ClientEvent::MembersKicked {
        group: g("crew"),
        by: u("alice"),
        members: vec![u("dave")],
    });
    model.apply(&ClientEvent::MemberLeft {
        group: g("crew"),
        user: u("carol"),
        new_owner: None,
    });
    let members: Vec<&str> = model.members[&g("crew")]
        .iter()
        .map(|m| m.as_str())
        .collect();
    assert_eq!(members, ["alice", "bob"]);
    model.apply(&ClientEvent::GroupDeleted {
        group: g("crew"),
        by: u("alice"),
    });
    assert!(!model.members.contains_key(&g("crew")));
}

#[test]
fn a_file_being_sent_shows_until_it_is_all_written() {
    let mut model = Model::new(u("alice"));
    let sending = |sent| ClientEvent::Sending {
        id: 3,
        name: "report.pdf".into(),
        sent,
        total: 100,
    };
    model.apply(&sending(40));
    assert_eq!(
        model.transfers.get(&3),
        Some(&("report.pdf".to_owned(), 40, 100))
    );
    model.apply(&sending(100));
    assert!(model.transfers.is_empty());
}

#[test]
fn a_message_that_comes_live_and_in_history_is_shown_once_either_way_round() {
    let mut model = Model::new(u("alice"));
    // History first (read at start), then the same message live (backlog).
    model.apply_history(&lobby("bob", "hello", 10));
    model.apply(&lobby("bob", "hello", 10));
    model.apply(&lobby("bob", "hello again", 11));
    let lobby_now = model.conversation(&ConversationId::Lobby).unwrap();
    assert_eq!(lobby_now.timeline.len(), 2);
}

#[test]
fn joins_leaves_and_status_changes_are_said_in_the_lobby() {
    let mut model = Model::new(u("alice"));
    model.apply(&ClientEvent::Presence {
        user: u("bob"),
        change: PresenceChange::Online(Status::Normal),
    });
    model.apply(&ClientEvent::Presence {
        user: u("bob"),
        change: PresenceChange::Status(Status::Away),
    });
    let lobby_now = model.conversation(&ConversationId::Lobby).unwrap();
    let said: Vec<_> = lobby_now
        .timeline
        .iter()
        .map(|e| e.content.clone())
        .collect();
    assert_eq!(
        said,
        [
            Content::Notice("joined".into()),
            Content::Notice("is now away".into())
        ]
    );
    assert_eq!(lobby_now.unread, 0);
}
