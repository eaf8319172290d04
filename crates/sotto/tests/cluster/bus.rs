//! The bus is no way in: a message on it that the cluster did not sign is
//! ignored, whoever can reach the NATS server.

use sotto_proto::cluster::{Change, LogEntry};
use sotto_proto::{EventBody, EventKind, RoomContent, RoomEvent, RoomRef, SharedEvent, Username};
use sotto_test_support::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_not_signed_by_the_cluster_are_ignored() {
    let cluster = TestCluster::start(2).await;
    let alice = cluster.nodes[0].client("alice").await;
    let mut bob = cluster.nodes[1].client("bob").await;

    // Someone else on the NATS server publishes lobby messages as log
    // entries for every epoch a node could be waiting for, unsigned and
    // signed with a wrong key.
    let server_id = cluster.nodes[0].db().server_id().await;
    let id: String = server_id.0.iter().map(|b| format!("{b:02x}")).collect();
    let subject = format!("sotto.{id}.log");
    let nats = async_nats::connect(&cluster.nats).await.unwrap();
    for epoch in 1..=200u64 {
        let event = EventBody {
            ts: 0,
            kind: EventKind::Room(RoomEvent {
                room_id: 1,
                room: RoomRef::Lobby,
                seq: 10_000 + epoch,
                sender: Username::parse("mallory").unwrap(),
                content: RoomContent::Text {
                    text: "forged".into(),
                },
            }),
        };
        let body = SharedEvent::encode(&event).unwrap().as_bytes().to_vec();
        let entry = LogEntry {
            epoch,
            node: 1,
            changes: vec![Change::Event {
                room: 1,
                seq: 10_000 + epoch,
                ts: 0,
                sender: 1,
                body,
            }],
            elided: false,
        }
        .encode()
        .unwrap();
        let mut wrong_key = vec![0u8; 32];
        wrong_key.extend_from_slice(&entry);
        for message in [entry, wrong_key] {
            nats.publish(subject.clone(), message.into()).await.unwrap();
        }
    }
    nats.flush().await.unwrap();

    // The next lobby message bob sees is alice's.
    alice.client.send_lobby("the real one").await.unwrap();
    assert_eq!(
        bob.expect_lobby().await,
        ("alice".into(), "the real one".into())
    );
}
