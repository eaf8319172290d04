//! `@group set/send/leave/delete/add/kick/list`.

use sotto_client::{ClientError, ClientEvent};
use sotto_proto::{ErrorCode, GroupName, Username};
use sotto_test_support::{TestClient, TestServer};

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

async fn expect_created(client: &mut TestClient, name: &str) -> Vec<String> {
    client
        .expect("group created", |e| match e {
            ClientEvent::GroupCreated { group, members, .. } if group.as_str() == name => {
                Some(members.iter().map(|m| m.to_string()).collect())
            }
            _ => None,
        })
        .await
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
    assert_eq!(info.members.len(), 3);
    assert_eq!(
        expect_created(&mut bob, "team").await,
        vec!["alice", "bob", "carol"]
    );
    expect_created(&mut carol, "team").await;

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
    assert!(carol.client.group_list().await.unwrap().is_empty());
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
    let info = alice
        .client
        .group_add(group("club"), vec![user("carol")])
        .await
        .unwrap();
    assert_eq!(
        info.members.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        ["alice", "bob", "carol"]
    );
    let added = carol
        .expect("being added", |e| match e {
            ClientEvent::MembersAdded { group, members, .. } if group.as_str() == "club" => {
                Some(members.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(added, vec![user("carol")]);
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

    let groups = bob.client.group_list().await.unwrap();
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
    assert!(bob.client.group_list().await.unwrap().is_empty());
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
    let groups = bob.client.group_list().await.unwrap();
    assert_eq!(groups[0].owner.as_str(), "bob");
    // The last member leaving deletes the group.
    bob.client.group_leave(group("g1")).await.unwrap();
    assert!(bob.client.group_list().await.unwrap().is_empty());
    alice
        .client
        .group_create(group("g1"), vec![])
        .await
        .unwrap();
}
