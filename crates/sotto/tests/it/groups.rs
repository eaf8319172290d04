//! `@group set/send/leave/delete/add/kick/list`.

use sotto_client::{AutoAccept, ClientError, ClientEvent};
use sotto_proto::{ErrorCode, GroupName, Username};
use sotto_test_support::TestServer;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn group(name: &str) -> GroupName {
    GroupName::parse(name).unwrap()
}

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Server(e)) => e.code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_send_leave_delete() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let mut carol = server.client("carol").await;
    let dave = server.client("dave").await;

    let info = alice
        .client
        .group_create(group("team"), vec![user("bob"), user("carol")])
        .await
        .unwrap();
    assert_eq!(info.owner.as_str(), "alice");
    assert_eq!(info.members, [user("alice")]);
    assert_eq!(info.invited, [user("bob"), user("carol")]);
    bob.accept_invitation("team").await;
    let info = carol.accept_invitation("team").await;
    assert_eq!(info.members.len(), 3);

    alice
        .client
        .send_group(group("team"), "standup in 5")
        .await
        .unwrap();
    assert_eq!(
        bob.expect_group().await,
        ("team".into(), "alice".into(), "standup in 5".into())
    );
    assert_eq!(
        carol.expect_group().await,
        ("team".into(), "alice".into(), "standup in 5".into())
    );

    // Members only.
    assert_eq!(
        code(dave.client.send_group(group("team"), "let me in").await),
        ErrorCode::NotMember
    );
    assert_eq!(
        code(dave.client.send_group(group("nope"), "hello?").await),
        ErrorCode::UnknownGroup
    );
    assert_eq!(
        code(alice.client.group_create(group("team"), vec![]).await),
        ErrorCode::GroupExists
    );
    assert_eq!(
        code(
            alice
                .client
                .group_create(group("x"), vec![user("zed")])
                .await
        ),
        ErrorCode::UnknownUser
    );

    bob.client.group_leave(group("team")).await.unwrap();
    alice
        .expect("bob leaving", |e| match e {
            ClientEvent::MemberLeft {
                group,
                user,
                new_owner: None,
            } if group.as_str() == "team" && user.as_str() == "bob" => Some(()),
            _ => None,
        })
        .await;
    assert_eq!(
        code(bob.client.send_group(group("team"), "still here?").await),
        ErrorCode::NotMember
    );

    // Owner only.
    assert_eq!(
        code(carol.client.group_delete(group("team")).await),
        ErrorCode::NotOwner
    );
    alice.client.group_delete(group("team")).await.unwrap();
    carol
        .expect("group deleted", |e| match e {
            ClientEvent::GroupDeleted { group, by }
                if group.as_str() == "team" && by.as_str() == "alice" =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
    assert_eq!(
        code(alice.client.send_group(group("team"), "gone").await),
        ErrorCode::UnknownGroup
    );
    assert!(carol.client.group_list().await.unwrap().0.is_empty());
}

#[tokio::test]
async fn add_kick_and_list() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let mut carol = server.client("carol").await;

    alice
        .client
        .group_create(group("club"), vec![user("bob")])
        .await
        .unwrap();
    bob.accept_invitation("club").await;
    let info = alice
        .client
        .group_add(group("club"), vec![user("carol")])
        .await
        .unwrap();
    assert_eq!(info.invited, [user("carol")]);
    let invited = bob
        .expect("carol invited", |e| match e {
            ClientEvent::MembersInvited { group, members, .. } if group.as_str() == "club" => {
                Some(members.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(invited, vec![user("carol")]);
    let info = carol.accept_invitation("club").await;
    assert_eq!(
        info.members.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        ["alice", "bob", "carol"]
    );
    assert_eq!(
        code(
            bob.client
                .group_add(group("club"), vec![user("dave")])
                .await
        ),
        ErrorCode::NotOwner
    );
    assert_eq!(
        code(
            bob.client
                .group_kick(group("club"), vec![user("carol")])
                .await
        ),
        ErrorCode::NotOwner
    );

    let (groups, _) = bob.client.group_list().await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].name.as_str(), "club");

    alice
        .client
        .group_kick(group("club"), vec![user("bob")])
        .await
        .unwrap();
    bob.expect("being removed", |e| match e {
        ClientEvent::RemovedFromGroup { group, by }
            if group.as_str() == "club" && by.as_str() == "alice" =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    alice
        .client
        .send_group(group("club"), "after the kick")
        .await
        .unwrap();
    assert_eq!(carol.expect_group().await.2, "after the kick");
    // Bob never sees it: the next thing he gets is a later lobby marker.
    alice.client.send_lobby("marker").await.unwrap();
    bob.expect("the marker", |e| match e {
        ClientEvent::Group { text, .. } => panic!("kicked member got {text}"),
        ClientEvent::Lobby { text, .. } if text == "marker" => Some(()),
        _ => None,
    })
    .await;
    assert!(bob.client.group_list().await.unwrap().0.is_empty());
    assert_eq!(
        code(bob.client.send_group(group("club"), "hi").await),
        ErrorCode::NotMember
    );
}

#[tokio::test]
async fn owner_leaving_hands_the_group_over() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice
        .client
        .group_create(group("g1"), vec![user("bob")])
        .await
        .unwrap();
    bob.accept_invitation("g1").await;
    alice.client.group_leave(group("g1")).await.unwrap();
    let owner = bob
        .expect("alice leaving", |e| match e {
            ClientEvent::MemberLeft {
                user,
                new_owner: Some(owner),
                ..
            } if user.as_str() == "alice" => Some(owner.clone()),
            _ => None,
        })
        .await;
    assert_eq!(owner.as_str(), "bob");
    let (groups, _) = bob.client.group_list().await.unwrap();
    assert_eq!(groups[0].owner.as_str(), "bob");
    // The last member leaving deletes the group.
    bob.client.group_leave(group("g1")).await.unwrap();
    assert!(bob.client.group_list().await.unwrap().0.is_empty());
    alice
        .client
        .group_create(group("g1"), vec![])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_group_is_joined_by_accepting_an_invitation() {
    let mut server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let carol = server.client("carol").await;
    let dave = server.client("dave").await;
    let info = alice
        .client
        .group_create(group("club"), vec![user("bob"), user("carol")])
        .await
        .unwrap();
    assert_eq!(info.members, [user("alice")]);
    assert_eq!(info.invited, [user("bob"), user("carol")]);
    alice
        .client
        .send_group(group("club"), "before you joined")
        .await
        .unwrap();
    let by = bob
        .expect("the invitation", |e| match e {
            ClientEvent::Invited {
                group,
                by,
                auto_join: false,
                ..
            } if group.as_str() == "club" => Some(by.clone()),
            _ => None,
        })
        .await;
    assert_eq!(by, user("alice"));
    // An invitee is not a member yet.
    assert_eq!(
        code(bob.client.send_group(group("club"), "me too").await),
        ErrorCode::NotMember
    );
    // The invitation is listed, also after a restart.
    server.restart().await;
    let mut alice = alice.reconnect(server.addr).await;
    let mut bob = bob.reconnect(server.addr).await;
    let (groups, invitations) = bob.client.group_list().await.unwrap();
    assert!(groups.is_empty());
    assert_eq!(invitations.len(), 1);
    assert_eq!(
        (invitations[0].group.as_str(), invitations[0].by.as_str()),
        ("club", "alice")
    );

    let info = bob.client.group_accept(group("club")).await.unwrap();
    assert_eq!(info.members, [user("alice"), user("bob")]);
    assert_eq!(info.invited, [user("carol")]);
    let joined = alice
        .expect("bob joining", |e| match e {
            ClientEvent::MemberJoined { group, user } if group.as_str() == "club" => {
                Some(user.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(joined, user("bob"));
    alice
        .client
        .send_group(group("club"), "after bob joined")
        .await
        .unwrap();
    // What came before he joined is not his to read.
    assert_eq!(bob.expect_group().await.2, "after bob joined");
    assert_eq!(
        code(bob.client.group_accept(group("club")).await),
        ErrorCode::Invalid
    );

    // Carol declines; the group hears of it.
    let carol = carol.reconnect(server.addr).await;
    carol.client.group_decline(group("club")).await.unwrap();
    let declined = alice
        .expect("carol declining", |e| match e {
            ClientEvent::InvitationDeclined { group, user } if group.as_str() == "club" => {
                Some(user.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(declined, user("carol"));
    assert_eq!(
        code(carol.client.group_accept(group("club")).await),
        ErrorCode::Invalid
    );
    assert!(carol.client.group_list().await.unwrap().1.is_empty());

    // The owner withdraws an invitation.
    let mut dave = dave.reconnect(server.addr).await;
    alice
        .client
        .group_add(group("club"), vec![user("dave")])
        .await
        .unwrap();
    assert_eq!(
        code(
            alice
                .client
                .group_add(group("club"), vec![user("dave"), user("bob")])
                .await
        ),
        ErrorCode::Invalid
    );
    alice
        .client
        .group_kick(group("club"), vec![user("dave")])
        .await
        .unwrap();
    dave.expect("the withdrawal", |e| match e {
        ClientEvent::RemovedFromGroup { group, .. } if group.as_str() == "club" => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(
        code(dave.client.group_accept(group("club")).await),
        ErrorCode::Invalid
    );
}

#[tokio::test]
async fn verified_contacts_may_add_you_directly_if_you_allow_it() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let carol = server.client("carol").await;
    let bob = server.client("bob").await;
    bob.verify("alice").await;
    assert_eq!(bob.client.auto_accept(), AutoAccept::default());
    bob.client
        .set_auto_accept(AutoAccept {
            groups: true,
            files: false,
        })
        .await
        .unwrap();
    // The setting is kept in the local store.
    let mut bob = bob.reconnect(server.addr).await;
    assert!(bob.client.auto_accept().groups);

    // From carol, whom bob has not verified: asked.
    carol
        .client
        .group_create(group("theirs"), vec![user("bob")])
        .await
        .unwrap();
    bob.expect("carol's invitation", |e| match e {
        ClientEvent::Invited {
            group,
            auto_join: false,
            ..
        } if group.as_str() == "theirs" => Some(()),
        _ => None,
    })
    .await;
    // From alice, whom he verified: joined at once.
    alice
        .client
        .group_create(group("ours"), vec![user("bob")])
        .await
        .unwrap();
    bob.expect("alice's invitation", |e| match e {
        ClientEvent::Invited {
            group,
            auto_join: true,
            ..
        } if group.as_str() == "ours" => Some(()),
        _ => None,
    })
    .await;
    let joined = bob
        .expect("joining", |e| match e {
            ClientEvent::MemberJoined { group, user } if group.as_str() == "ours" => {
                Some(user.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(joined, user("bob"));
    let (groups, invitations) = bob.client.group_list().await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].name.as_str(), "ours");
    assert_eq!(invitations.len(), 1);
    assert_eq!(invitations[0].group.as_str(), "theirs");

    // An old invitation never joins a new group that took its name: alice
    // invites bob while he is away and deletes the group, carol makes one
    // of that name and invites him.
    let bob = bob.reconnect_later().await;
    alice
        .client
        .group_create(group("reused"), vec![user("bob")])
        .await
        .unwrap();
    alice.client.group_delete(group("reused")).await.unwrap();
    carol
        .client
        .group_create(group("reused"), vec![user("bob")])
        .await
        .unwrap();
    let mut bob = bob.connect(server.addr).await;
    let refused = bob.expect_notice("could not join group reused").await;
    assert!(refused.contains("no longer valid"), "{refused}");
    let (groups, _) = bob.client.group_list().await.unwrap();
    assert!(
        !groups.iter().any(|g| g.name.as_str() == "reused"),
        "{groups:?}"
    );
}

/// Clients remember how far they read by room id: a room made after the
/// newest room was deleted must not take its id, or its first messages
/// would be taken for ones already read (and dropped).
#[tokio::test]
async fn a_new_room_never_takes_the_id_of_a_deleted_one() {
    let mut server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    // Every other room (notices, private room, key inboxes) exists before
    // the group that is deleted: that group is the newest room then.
    alice
        .client
        .group_create(group("first"), vec![user("bob")])
        .await
        .unwrap();
    bob.accept_invitation("first").await;
    alice.client.group_delete(group("first")).await.unwrap();
    alice.client.send_private(user("bob"), "hi").await.unwrap();
    assert_eq!(bob.expect_private().await.1, "hi");
    let mut alice = alice;
    bob.client.send_private(user("alice"), "hi").await.unwrap();
    assert_eq!(alice.expect_private().await.1, "hi");
    alice
        .client
        .group_create(group("gone"), vec![user("bob")])
        .await
        .unwrap();
    bob.accept_invitation("gone").await;
    for n in 0..5 {
        alice
            .client
            .send_group(group("gone"), &format!("in gone {n}"))
            .await
            .unwrap();
        assert_eq!(bob.expect_group().await.2, format!("in gone {n}"));
    }
    alice.client.group_delete(group("gone")).await.unwrap();
    bob.expect("the deletion", |e| match e {
        ClientEvent::GroupDeleted { group, .. } if group.as_str() == "gone" => Some(()),
        _ => None,
    })
    .await;
    // Also after a restart of the server.
    server.restart().await;
    let alice = alice.reconnect(server.addr).await;
    let mut bob = bob.reconnect(server.addr).await;
    alice
        .client
        .group_create(group("again"), vec![user("bob")])
        .await
        .unwrap();
    bob.accept_invitation("again").await;
    for n in 0..3 {
        alice
            .client
            .send_group(group("again"), &format!("in again {n}"))
            .await
            .unwrap();
        assert_eq!(bob.expect_group().await.2, format!("in again {n}"));
    }
}
