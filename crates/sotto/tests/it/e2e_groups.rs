//! Group membership and end-to-end keys (issue 4): a member who leaves or
//! is removed gets no room key for anything sent after, whoever sends it.

use sotto_proto::{GroupName, Username};
use sotto_test_support::TestServer;

use crate::raw::Raw;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

#[tokio::test]
async fn members_who_leave_or_are_removed_get_no_key_for_what_follows() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let mut carol = server.client("carol").await;
    let mut dave = server.client("dave").await;
    // Raw devices of alice's and bob's accounts see what they send.
    let mut alice_watch = Raw::login(server.addr, "alice").await;
    let mut bob_watch = Raw::login(server.addr, "bob").await;
    let crew = GroupName::parse("crew").unwrap();
    alice
        .client
        .group_create(crew.clone(), vec![user("bob"), user("carol"), user("dave")])
        .await
        .unwrap();
    bob.accept_invitation("crew").await;
    carol.accept_invitation("crew").await;
    dave.accept_invitation("crew").await;
    alice
        .client
        .send_group(crew.clone(), "all of us")
        .await
        .unwrap();
    let alice_before = alice_watch.next_session_of("alice").await;
    bob.client
        .send_group(crew.clone(), "bob too")
        .await
        .unwrap();
    let bob_before = bob_watch.next_session_of("bob").await;
    assert_eq!(bob.expect_group().await.2, "all of us");
    for member in [&mut carol, &mut dave] {
        assert_eq!(member.expect_group().await.2, "all of us");
        assert_eq!(member.expect_group().await.2, "bob too");
    }

    // Carol leaves; alice removes dave.
    carol.client.group_leave(crew.clone()).await.unwrap();
    alice
        .client
        .group_kick(crew.clone(), vec![user("dave")])
        .await
        .unwrap();
    alice
        .client
        .send_group(crew.clone(), "without them")
        .await
        .unwrap();
    let alice_after = alice_watch.next_session_of("alice").await;
    bob.client
        .send_group(crew.clone(), "bob after")
        .await
        .unwrap();
    let bob_after = bob_watch.next_session_of("bob").await;
    assert_eq!(bob.expect_group().await.2, "without them");

    // Both senders started new sessions, and the keys of the new ones
    // never reached carol's or dave's devices (which do hold the old ones).
    assert_ne!(alice_before, alice_after);
    assert_ne!(bob_before, bob_after);
    for (member, password) in [(carol, "pw-carol"), (dave, "pw-dave")] {
        let name = member.name.clone();
        let member = member.reconnect_later().await;
        let known = sotto_test_support::room_sessions(member.dir.path(), password);
        assert!(
            known.contains(&alice_before) && known.contains(&bob_before),
            "{name}: {known:?}"
        );
        assert!(
            !known.contains(&alice_after) && !known.contains(&bob_after),
            "{name} holds a key for what was sent after"
        );
    }
}
