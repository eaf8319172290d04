//! Lobby, private messages, names, presence, emoji, history, secrets, files.

use sotto_client::{ClientError, ClientEvent, Target};
use sotto_crypto::Passphrase;
use sotto_proto::{GroupName, PresenceChange, Status, Username};
use sotto_test_support::TestServer;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

#[tokio::test]
async fn lobby_messages_reach_everyone_else() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let mut carol = server.client("carol").await;
    alice.client.send_lobby("hello everyone").await.unwrap();
    assert_eq!(
        bob.expect_lobby().await,
        ("alice".into(), "hello everyone".into())
    );
    assert_eq!(
        carol.expect_lobby().await,
        ("alice".into(), "hello everyone".into())
    );
    // The sender gets no echo of its own lobby message: the next lobby
    // message it sees is bob's.
    bob.client.send_lobby("hi alice").await.unwrap();
    assert_eq!(
        alice.expect_lobby().await,
        ("bob".into(), "hi alice".into())
    );
}

#[tokio::test]
async fn private_messages_reach_only_the_recipient() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let mut carol = server.client("carol").await;
    let sent = alice
        .client
        .send_private(user("bob"), "just for you")
        .await
        .unwrap();
    assert_eq!(sent.note, None);
    assert_eq!(
        bob.expect_private().await,
        ("alice".into(), "just for you".into())
    );
    alice.client.send_lobby("marker").await.unwrap();
    let seen = carol
        .expect("the marker", |e| match e {
            ClientEvent::Private { .. } => Some(Err(format!("carol saw {e:?}"))),
            ClientEvent::Lobby { text, .. } if text == "marker" => Some(Ok(())),
            _ => None,
        })
        .await;
    seen.unwrap();
}

#[tokio::test]
async fn names_and_presence() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let bob = server.client("bob").await;
    alice
        .expect("bob joining", |e| match e {
            ClientEvent::Presence {
                user,
                change: PresenceChange::Online(_),
            } if user.as_str() == "bob" => Some(()),
            _ => None,
        })
        .await;
    bob.client.set_status(Status::Away).await.unwrap();
    alice
        .expect("bob away", |e| match e {
            ClientEvent::Presence {
                user,
                change: PresenceChange::Status(Status::Away),
            } if user.as_str() == "bob" => Some(()),
            _ => None,
        })
        .await;
    let (names, total) = alice.client.names().await.unwrap();
    assert_eq!(total, 2);
    let listed: Vec<(String, Status)> = names
        .iter()
        .map(|p| (p.user.to_string(), p.status))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("alice".into(), Status::Normal),
            ("bob".into(), Status::Away)
        ]
    );
    assert_eq!(bob.client.status().await.unwrap(), Status::Away);
    bob.client.quit().await.unwrap();
    alice
        .expect("bob leaving", |e| match e {
            ClientEvent::Presence {
                user,
                change: PresenceChange::Offline,
            } if user.as_str() == "bob" => Some(()),
            _ => None,
        })
        .await;
    let (names, total) = alice.client.names().await.unwrap();
    assert_eq!((names.len(), total), (1, 1));
}

#[tokio::test]
async fn emoji_shortcodes_become_emoji() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice
        .client
        .send_lobby("hi :smile: :heart: :thumbsup: :nosuchcode:")
        .await
        .unwrap();
    let (_, text) = bob.expect_lobby().await;
    assert_eq!(text, "hi 😄 ❤️ 👍 :nosuchcode:");
}

#[tokio::test]
async fn history_shows_what_the_user_can_see_oldest_first() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let carol = server.client("carol").await;
    alice.client.send_lobby("one").await.unwrap();
    alice.client.send_private(user("bob"), "two").await.unwrap();
    alice
        .client
        .send_private(user("carol"), "not for bob")
        .await
        .unwrap();
    let team = GroupName::parse("team").unwrap();
    alice
        .client
        .group_create(team.clone(), vec![user("bob")])
        .await
        .unwrap();
    bob.accept_invitation("team").await;
    alice
        .client
        .send_group(team.clone(), "three")
        .await
        .unwrap();
    bob.expect_group().await;
    let history = bob.client.history(10).await.unwrap();
    let texts: Vec<String> = history
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Lobby { text, .. }
            | ClientEvent::Private { text, .. }
            | ClientEvent::Group { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, vec!["one", "two", "three"]);
    // The limit takes the newest entries.
    let last = bob.client.history(1).await.unwrap();
    assert!(matches!(&last[..], [ClientEvent::Group { text, .. }] if text == "three"));
    drop(carol);
}

#[tokio::test]
async fn sealed_messages_need_the_right_key() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice
        .client
        .send_secret(
            Target::User(user("bob")),
            Passphrase::new("open sesame").unwrap(),
            "the vault code is 1234",
        )
        .await
        .unwrap();
    let id = bob
        .expect("a sealed message", |e| match e {
            ClientEvent::Sealed { id, from, .. } if from.as_str() == "alice" => Some(*id),
            _ => None,
        })
        .await;
    let wrong = bob
        .client
        .open_sealed(id, Passphrase::new("guess").unwrap())
        .await;
    assert!(
        matches!(wrong, Err(sotto_client::ClientError::WrongKey)),
        "{wrong:?}"
    );
    let opened = bob
        .client
        .open_sealed(id, Passphrase::new("open sesame").unwrap())
        .await
        .unwrap();
    assert_eq!(opened.text, "the vault code is 1234");
    assert_eq!(opened.from.as_str(), "alice");
    // It keeps its number in every @history.
    for _ in 0..3 {
        let history = bob.client.history(10).await.unwrap();
        let numbers: Vec<u64> = history
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Sealed { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(numbers, [id]);
    }
    // The server stored only the sealed form.
    assert!(
        !server.db().contains(b"the vault code").await,
        "plaintext stored"
    );
}

#[tokio::test]
async fn a_received_file_is_saved_only_once_accepted() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let downloads = bob.dir.path().join("downloads");
    let in_downloads = || std::fs::read_dir(&downloads).map_or(0, |d| d.count());
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let send = |name: &str, data: &[u8]| {
        let path = alice.dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        let client = alice.client.clone();
        async move {
            client
                .send_file(Target::User(user("bob")), &path)
                .await
                .unwrap()
        }
    };
    send("report.bin", &data).await;
    let offered = |e: &ClientEvent| match e {
        ClientEvent::FileOffered { id, name, size, .. } => Some((*id, name.clone(), *size)),
        _ => None,
    };
    let (id, name, size) = bob.expect("a file offered", offered).await;
    assert_eq!((name.as_str(), size), ("report.bin", 300_000));
    assert_eq!(in_downloads(), 0, "nothing is saved before it is accepted");
    // It waits in the local store, also across a restart of the client.
    let bob = bob.reconnect(server.addr).await;
    let waiting = bob.client.waiting_files();
    assert_eq!(waiting.len(), 1);
    assert_eq!((waiting[0].id, waiting[0].from.as_str()), (id, "alice"));
    let (_, saved, _) = bob.client.accept_file(id).await.unwrap();
    assert_eq!(std::fs::read(&saved).unwrap(), data);
    assert!(bob.client.waiting_files().is_empty());
    assert!(matches!(
        bob.client.accept_file(id).await,
        Err(ClientError::NoSuchFile(_))
    ));

    // Rejected: discarded, and history says so.
    let mut bob = bob;
    send("spam.exe", b"no thanks").await;
    let (id, ..) = bob.expect("a second file", offered).await;
    bob.client.reject_file(id).await.unwrap();
    assert_eq!(in_downloads(), 1);
    let history = bob.client.history(10).await.unwrap();
    assert!(
        history.iter().any(|e| matches!(e,
            ClientEvent::FileRefused { name, reason, .. } if name == "spam.exe" && reason.contains("rejected"))),
        "{history:?}"
    );
    assert!(
        history
            .iter()
            .any(|e| matches!(e, ClientEvent::File { path, .. } if *path == saved)),
        "{history:?}"
    );

    // From a verified contact, with @auto files on: saved at once.
    bob.verify("alice").await;
    bob.client
        .set_auto_accept(sotto_client::AutoAccept {
            groups: false,
            files: true,
        })
        .await
        .unwrap();
    send("notes.txt", b"trusted").await;
    let path = bob
        .expect("a file saved at once", |e| match e {
            ClientEvent::File { path, .. } => Some(path.clone()),
            ClientEvent::FileOffered { .. } => panic!("asked for a verified contact's file"),
            _ => None,
        })
        .await;
    assert_eq!(std::fs::read(path).unwrap(), b"trusted");
    // Not from a device of alice's that bob has not accepted (one a hostile
    // server could have added).
    let alice2 = server.client("alice").await;
    let path = alice2.dir.path().join("from-new-device.bin");
    std::fs::write(&path, b"new device").unwrap();
    alice2
        .client
        .send_file(Target::User(user("bob")), &path)
        .await
        .unwrap();
    let (_, name, _) = bob.expect("the new device's file, waiting", offered).await;
    assert_eq!(name, "from-new-device.bin");
    // Nor from a device of bob's own account that he has not accepted: a
    // copy of what it sends reaches his other devices.
    let bob2 = server.client("bob").await;
    // (It shares its room keys with bob's first device, as a hostile
    // client would whatever it was told.)
    let first = bob.client.session().device_id.clone();
    bob2.client.trust_device(None, &first).await.unwrap();
    let path = bob2.dir.path().join("from-my-new-device.bin");
    std::fs::write(&path, b"is it me?").unwrap();
    bob2.client
        .send_file(Target::User(user("alice")), &path)
        .await
        .unwrap();
    let (_, name, _) = bob.expect("his new device's file, waiting", offered).await;
    assert_eq!(name, "from-my-new-device.bin");
    // Not from a contact bob has not verified.
    let carol = server.client("carol").await;
    let path = carol.dir.path().join("unasked.bin");
    std::fs::write(&path, b"who?").unwrap();
    carol
        .client
        .send_file(Target::User(user("bob")), &path)
        .await
        .unwrap();
    let (_, name, _) = bob.expect("carol's file, waiting", offered).await;
    assert_eq!(name, "unasked.bin");
}

#[tokio::test]
async fn own_messages_reach_the_senders_other_devices_but_not_the_sending_one() {
    use sotto_proto::{EventKind, Request, ServerFrame};
    let server = TestServer::start().await;
    let mut bob = server.client("bob").await;
    let mut phone = server.client("alice").await;
    let mut raw = crate::raw::Raw::login(server.addr, "alice").await;
    let id = raw
        .request(Request::SendDirect {
            to: user("bob"),
            payload: b"not a MessageBody".to_vec(),
        })
        .await;
    // Bob gets it (undecodable as a body: the server does not care).
    bob.expect("the envelope", |e| {
        matches!(e, ClientEvent::Undecodable { .. }).then_some(())
    })
    .await;
    // Alice's other device sees what she sent.
    phone
        .expect("the copy", |e| {
            matches!(e, ClientEvent::Undecodable { .. }).then_some(())
        })
        .await;
    // The sending connection gets its reply and no echo: the next room
    // event it sees is bob's answer.
    bob.client
        .send_private(user("alice"), "answer")
        .await
        .unwrap();
    let mut replied = false;
    loop {
        match raw.recv().await.expect("frames") {
            ServerFrame::Reply { id: rid, result } if rid == id => {
                assert!(result.is_ok());
                replied = true;
            }
            ServerFrame::Event { body, .. } => {
                if let EventKind::Room(event) = body.kind {
                    assert_eq!(
                        event.sender.as_str(),
                        "bob",
                        "no echo of alice's own message"
                    );
                    break;
                }
            }
            _ => {}
        }
    }
    assert!(replied);
}

#[tokio::test]
async fn presence_is_not_broadcast_above_the_limit() {
    let server = TestServer::start_with(|c| c.presence_limit = 2).await;
    let mut alice = server.client("alice").await;
    let bob = server.client("bob").await;
    alice
        .expect("bob joining", |e| match e {
            ClientEvent::Presence { user, .. } if user.as_str() == "bob" => Some(()),
            _ => None,
        })
        .await;
    // A third user online is above the limit: nobody is told.
    let carol = server.client("carol").await;
    assert_eq!(carol.client.session().online_total, 3);
    bob.client.send_lobby("marker").await.unwrap();
    alice
        .expect("the marker", |e| match e {
            ClientEvent::Presence { user, .. } => {
                panic!("presence of {user} broadcast above the limit")
            }
            ClientEvent::Lobby { text, .. } if text == "marker" => Some(()),
            _ => None,
        })
        .await;
    // Names still lists everyone.
    let (names, total) = alice.client.names().await.unwrap();
    assert_eq!((names.len(), total), (3, 3));
}

/// Three 8 MiB files do not fit one reply (the frame limit is 11 MiB): the
/// server pages history by bytes, each page says where the next begins,
/// and the client reads every page, so `@history` shows them all.
#[tokio::test]
async fn history_over_large_files_is_paged_by_bytes_and_complete() {
    use sotto_proto::limits::MAX_HISTORY_BYTES;
    use sotto_proto::{EventKind, Request, Response};
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    for n in 0..3u8 {
        let path = alice.dir.path().join(format!("big{n}.bin"));
        std::fs::write(&path, vec![n; 8 * 1024 * 1024]).unwrap();
        alice
            .client
            .send_file(Target::User(user("bob")), &path)
            .await
            .unwrap();
        let id = bob
            .expect("a file", |e| match e {
                ClientEvent::FileOffered { id, .. } => Some(*id),
                _ => None,
            })
            .await;
        bob.client.accept_file(id).await.unwrap();
    }
    alice.client.send_lobby("after the files").await.unwrap();
    bob.expect_lobby().await;

    // On the wire: pages that fit, chained by their cursors, nothing twice.
    let mut raw = crate::raw::Raw::login(server.addr, "bob").await;
    let mut before = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let limit = 10 - seen.len() as u32;
        let (result, _) = raw.ask(Request::History { limit, before }).await;
        let Ok(Response::History { events, more, .. }) = result else {
            panic!("expected history, got {result:?}");
        };
        pages += 1;
        let bytes: usize = events
            .iter()
            .map(|e| {
                sotto_proto::SharedEvent::encode(e)
                    .unwrap()
                    .as_bytes()
                    .len()
            })
            .sum();
        assert!(bytes <= MAX_HISTORY_BYTES, "{bytes}");
        assert!(!events.is_empty());
        // Each page is older than the one before it.
        let mut page: Vec<_> = events
            .iter()
            .map(|e| match &e.kind {
                EventKind::Room(room) => (e.ts, room.room_id, room.seq),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        page.append(&mut seen);
        seen = page;
        match more {
            Some(cursor) => before = Some(cursor),
            None => break,
        }
    }
    assert!(pages >= 3, "{pages} pages");
    // The lobby text, three files (and the key messages around them, if
    // any), each once.
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique, seen, "pages in order, nothing twice");
    assert!(seen.len() >= 4, "{seen:?}");

    // Through the client: all three files and the text, in order.
    let history = bob.client.history(10).await.unwrap();
    let shown: Vec<String> = history
        .iter()
        .filter_map(|e| match e {
            ClientEvent::File { name, .. } => Some(name.clone()),
            ClientEvent::Lobby { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        shown,
        vec!["big0.bin", "big1.bin", "big2.bin", "after the files"]
    );
}

/// Every front end runs a typed line the same way: parse it, hand the
/// command to the library's dispatch, show the outcome.
#[tokio::test]
async fn typed_lines_run_through_the_librarys_dispatch() {
    use sotto_client::command;
    use sotto_client::dispatch::{Outcome, execute};
    async fn run(client: &sotto_client::Client, line: &str) -> Result<Outcome, ClientError> {
        execute(client, command::parse(line).unwrap()).await
    }
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let sent_to = |outcome: Result<Outcome, ClientError>| match outcome {
        Ok(Outcome::Sent { to, .. }) => to,
        other => panic!("{other:?}"),
    };
    assert_eq!(sent_to(run(&alice.client, "hello everyone").await), "lobby");
    assert_eq!(sent_to(run(&alice.client, "  @bob hi").await), "bob");
    assert_eq!(bob.expect_private().await.1, "hi");
    match run(&alice.client, "@group set crew bob").await {
        Ok(Outcome::Invited { group, asked, .. }) => assert_eq!(group.invited, asked),
        other => panic!("{other:?}"),
    }
    bob.accept_invitation("crew").await;
    assert_eq!(
        sent_to(run(&alice.client, "@group send crew all").await),
        "#crew"
    );
    assert!(matches!(
        run(&alice.client, "@status away").await,
        Ok(Outcome::Done("status"))
    ));
    assert!(matches!(
        run(&alice.client, "@status").await,
        Ok(Outcome::Status(Status::Away))
    ));
    assert!(matches!(
        run(&alice.client, "@accept 9").await,
        Err(ClientError::NoSuchFile(9))
    ));
    assert!(matches!(
        run(&alice.client, "@quit").await,
        Ok(Outcome::Quit)
    ));
    // A mistyped command with words after it reads as a private message to
    // a user who does not exist: the answer says which command it looks like.
    match run(&alice.client, "@histroy 10").await {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, sotto_proto::ErrorCode::UnknownUser);
            assert!(e.message.contains("did you mean @history?"), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
}
