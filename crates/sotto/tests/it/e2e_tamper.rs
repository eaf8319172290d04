//! Hostile input against end-to-end encryption through the real server
//! (issue 4): unencrypted, tampered and replayed messages and a room key
//! from another device are each refused with a reason, and the
//! conversation goes on. (Key requests: `e2e_keyshare.rs`.)

use sotto_client::ClientEvent;
use sotto_crypto::e2e::E2e;
use sotto_proto::e2e::{DeviceKeys, MegolmEnvelope, OlmEnvelope};
use sotto_proto::{DeviceId, DeviceRef, Request, Response, ToDeviceMessage, Username};
use sotto_test_support::TestServer;

use crate::raw::Raw;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

/// A device driven by the test: a raw connection with real end-to-end
/// state and published keys, doing what a hostile client could.
pub(crate) struct Stranger {
    pub raw: Raw,
    pub e2e: E2e,
}

impl Stranger {
    pub(crate) async fn new(server: &TestServer, name: &str) -> Self {
        let mut raw = Raw::login(server.addr, name).await;
        let mut e2e = E2e::new(
            user(name),
            DeviceId::parse(&format!("rawdevice-{name}")).unwrap(),
        );
        let upload = e2e.keys_to_upload(0);
        let (result, _) = raw
            .ask(Request::UploadKeys {
                device_keys: Some(Box::new(e2e.device_keys())),
                one_time_keys: upload.one_time_keys,
                fallback_key: upload.fallback_key.map(Box::new),
            })
            .await;
        result.expect("keys published");
        e2e.mark_keys_published();
        Self { raw, e2e }
    }

    /// Starts an Olm session with `name`'s device `device` (from the
    /// directory and a claimed key); its keys.
    pub(crate) async fn session_with(&mut self, name: &str, device: &DeviceId) -> DeviceKeys {
        let (result, _) = self
            .raw
            .ask(Request::QueryKeys {
                users: vec![user(name)],
            })
            .await;
        let Ok(Response::Devices { devices }) = result else {
            panic!("expected devices, got {result:?}");
        };
        let keys = devices.into_iter().find(|d| d.device == *device).unwrap();
        let (result, _) = self
            .raw
            .ask(Request::ClaimKeys {
                devices: vec![DeviceRef {
                    user: user(name),
                    device: device.clone(),
                }],
            })
            .await;
        let Ok(Response::Claimed { keys: claimed }) = result else {
            panic!("expected a key, got {result:?}");
        };
        self.e2e.start_olm_session(&keys, &claimed[0].key).unwrap();
        keys
    }

    /// Shares a new room session of this device in `room_id` with one
    /// device (its key over Olm, through its queue).
    pub(crate) async fn share_room_key(&mut self, room_id: u64, to: &DeviceKeys) {
        let recipients =
            std::collections::BTreeSet::from([(to.user.clone(), to.device.clone(), to.curve25519)]);
        let prepared = self
            .e2e
            .prepare_room(room_id, &recipients, &Default::default(), 0)
            .unwrap();
        let room_key = self.e2e.room_key_for(room_id, &prepared, to).unwrap();
        self.send_to_device(to, room_key).await;
    }

    /// Sends `envelope` to one device's queue.
    pub(crate) async fn send_to_device(&mut self, to: &DeviceKeys, envelope: OlmEnvelope) {
        let (result, _) = self
            .raw
            .ask(Request::SendToDevice {
                messages: vec![ToDeviceMessage {
                    user: to.user.clone(),
                    device: to.device.clone(),
                    payload: envelope.encode().unwrap(),
                }],
            })
            .await;
        result.expect("queued");
    }
}

fn refusal(reason_has: &'static str) -> impl FnMut(&ClientEvent) -> Option<String> {
    move |e| match e {
        ClientEvent::Undecodable { reason, .. } if reason.contains(reason_has) => {
            Some(reason.clone())
        }
        _ => None,
    }
}

/// The room and payload of the next message a raw device sees.
pub(crate) async fn next_envelope(raw: &mut Raw) -> (u64, Vec<u8>) {
    let event = raw.next_envelope_event().await;
    match event.content {
        sotto_proto::RoomContent::Envelope { payload, .. }
        | sotto_proto::RoomContent::ToDevice { payload, .. } => (event.room_id, payload),
        _ => unreachable!("an envelope"),
    }
}

#[tokio::test]
async fn a_message_that_is_not_end_to_end_encrypted_is_refused_visibly() {
    let server = TestServer::start().await;
    let mut bob = server.client("bob").await;
    // A raw client sends a plain message body where ciphertext belongs.
    let mut mallory = Raw::login(server.addr, "mallory").await;
    let body = sotto_proto::MessageBody::Text {
        text: "trust me".into(),
    };
    let (result, _) = mallory
        .ask(Request::SendDirect {
            to: user("bob"),
            payload: body.encode().unwrap(),
        })
        .await;
    result.expect("the server stores what it cannot read");
    let reason = bob
        .expect("a refusal", |e| match e {
            ClientEvent::Undecodable { from, reason, .. } if from.as_str() == "mallory" => {
                Some(reason.clone())
            }
            _ => None,
        })
        .await;
    assert!(reason.contains("not end-to-end encrypted"), "{reason}");
    // Bob's client keeps working.
    let alice = server.client("alice").await;
    alice
        .client
        .send_private(user("bob"), "still fine")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "still fine");
}

#[tokio::test]
async fn tampered_and_replayed_envelopes_are_rejected_and_nothing_else_breaks() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    // A raw device of alice's account sees what alice sends (as a hostile
    // server would) and can send it again.
    let mut replayer = Raw::login(server.addr, "alice").await;
    alice
        .client
        .send_private(user("bob"), "pay bob 10")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "pay bob 10");
    let (_, payload) = next_envelope(&mut replayer).await;

    // The same ciphertext again, as a new message. (Sent from another
    // device than the one inside, it is refused for that before it counts
    // as a replay; a replay under the original device, which only the
    // server could send, is refused as one: see sotto-crypto's tests.)
    replayer
        .request(Request::SendDirect {
            to: user("bob"),
            payload: payload.clone(),
        })
        .await;
    let reason = bob.expect("a refused replay", refusal("rejected")).await;
    assert!(reason.contains("sent from device"), "{reason}");
    // A flipped bit.
    let mut envelope = MegolmEnvelope::decode(&payload).unwrap();
    let at = envelope.ciphertext.len() / 2;
    envelope.ciphertext[at] ^= 1;
    replayer
        .request(Request::SendDirect {
            to: user("bob"),
            payload: envelope.encode().unwrap(),
        })
        .await;
    bob.expect("a refused forgery", refusal("cannot decrypt"))
        .await;
    // The conversation goes on.
    alice
        .client
        .send_private(user("bob"), "still here")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "still here");
}

#[tokio::test]
async fn a_room_key_from_another_device_does_not_vouch_for_the_sender() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let bob_device = bob.client.session().device_id.clone();
    // Mallory's device shares a room key of its own with bob's device,
    // properly over Olm, naming alice and bob's private room.
    let mut mallory = Stranger::new(&server, "mallory").await;
    let mut alice_raw = Raw::login(server.addr, "alice").await;
    let (result, _) = alice_raw
        .ask(Request::DirectRoom { with: user("bob") })
        .await;
    let Ok(Response::Room { room_id }) = result else {
        panic!("expected the room, got {result:?}");
    };
    let bob_keys = mallory.session_with("bob", &bob_device).await;
    mallory.share_room_key(room_id, &bob_keys).await;
    let forged = mallory
        .e2e
        .encrypt_room(
            room_id,
            0,
            sotto_proto::MessageBody::Text {
                text: "alice says: pay mallory".into(),
            },
        )
        .unwrap()
        .0;
    // A hostile server (here a raw device of alice's account) delivers it
    // in alice and bob's room as alice's.
    alice_raw
        .request(Request::SendDirect {
            to: user("bob"),
            payload: forged.encode().unwrap(),
        })
        .await;
    let reason = bob.expect("a refusal", refusal("mallory")).await;
    assert!(reason.contains("alice"), "{reason}");
    assert!(
        !bob.drain_for(std::time::Duration::from_millis(200))
            .await
            .iter()
            .any(|e| matches!(e, ClientEvent::Private { text, .. } if text.contains("pay"))),
        "the forgery was shown"
    );
    alice
        .client
        .send_private(user("bob"), "the real alice")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "the real alice");
}
