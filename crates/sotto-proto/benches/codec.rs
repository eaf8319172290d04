//! Frame codec micro-benchmarks.
//!
//! Every message a server routes is decoded once (the sender's request) and
//! framed once per recipient (the event), so these costs bound how many
//! deliveries per second one core can produce before TLS and the socket are
//! counted. Measured here:
//!
//! - encode and decode of the frames that dominate traffic: a 100-byte lobby
//!   `SendLobby` request, a 1 KiB `SendGroup` envelope, a `Sent` reply, and
//!   a room event (`SharedEvent::encode` + `frame::write_event`);
//! - splitting and decoding a read buffer that holds many frames, as a
//!   connection's reader does after one large socket read;
//! - fanout of one event to 1000 recipients: encode once and frame the same
//!   bytes per recipient (what the server does) against encoding the whole
//!   event per recipient (what it avoids).
//!
//! Run with `cargo bench -p sotto-proto --bench codec`.

// A benchmark's inputs are built here, not received from a peer: failing
// loudly on a bug in the setup is the right behaviour.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sotto_proto::frame::write_event;
use sotto_proto::{
    ClientFrame, DeviceId, EventBody, EventKind, FrameDecoder, GroupName, Request, Response,
    RoomContent, RoomEvent, RoomRef, ServerFrame, SharedEvent, Username,
};

/// Recipients in the fanout comparison.
const RECIPIENTS: u64 = 1000;
/// Frames in the many-frames read buffer.
const FRAMES_PER_BUFFER: u64 = 1000;

fn lobby_request() -> ClientFrame {
    ClientFrame::Request {
        id: 42,
        request: Request::SendLobby {
            text: "x".repeat(100),
        },
    }
}

fn group_request() -> ClientFrame {
    ClientFrame::Request {
        id: 43,
        request: Request::SendGroup {
            group: GroupName::parse("bench").expect("valid group name"),
            payload: vec![0xa5; 1024],
        },
    }
}

fn sent_reply() -> ServerFrame {
    ServerFrame::Reply {
        id: 43,
        result: Ok(Response::Sent {
            room_id: 7,
            seq: 123_456,
            ts: 1_700_000_000_000,
            note: None,
        }),
    }
}

/// A group message event as the core builds it: 1 KiB opaque envelope.
fn group_event() -> EventBody {
    EventBody {
        ts: 1_700_000_000_000,
        kind: EventKind::Room(RoomEvent {
            room_id: 7,
            room: RoomRef::Group {
                name: GroupName::parse("bench").expect("valid group name"),
            },
            seq: 123_456,
            sender: Username::parse("alice").expect("valid username"),
            content: RoomContent::Envelope {
                device: DeviceId::parse("device-0001").expect("valid device id"),
                payload: vec![0xa5; 1024],
            },
        }),
    }
}

fn encoded(frame: &ClientFrame) -> BytesMut {
    let mut buf = BytesMut::new();
    frame.encode(&mut buf).expect("encodes");
    buf
}

fn encode_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));

    for (name, frame) in [
        ("lobby_100B", lobby_request()),
        ("group_1KiB", group_request()),
    ] {
        let mut buf = BytesMut::with_capacity(2048);
        group.bench_function(format!("encode_request/{name}"), |b| {
            b.iter(|| {
                buf.clear();
                black_box(&frame).encode(&mut buf).expect("encodes");
                black_box(buf.len())
            })
        });
        let wire = encoded(&frame);
        let decoder = FrameDecoder::default();
        group.bench_function(format!("decode_request/{name}"), |b| {
            b.iter_batched_ref(
                || wire.clone(),
                |buf| {
                    let raw = decoder.decode(buf).expect("frames").expect("whole frame");
                    black_box(ClientFrame::decode(&raw).expect("decodes"))
                },
                BatchSize::SmallInput,
            )
        });
    }

    let reply = sent_reply();
    let mut buf = BytesMut::with_capacity(256);
    group.bench_function("encode_reply/sent", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&reply).encode(&mut buf).expect("encodes");
            black_box(buf.len())
        })
    });
    let mut wire = BytesMut::new();
    reply.encode(&mut wire).expect("encodes");
    let decoder = FrameDecoder::default();
    group.bench_function("decode_reply/sent", |b| {
        b.iter_batched_ref(
            || wire.clone(),
            |buf| {
                let raw = decoder.decode(buf).expect("frames").expect("whole frame");
                black_box(ServerFrame::decode(&raw).expect("decodes"))
            },
            BatchSize::SmallInput,
        )
    });

    let event = group_event();
    let mut buf = BytesMut::with_capacity(2048);
    group.bench_function("encode_event/group_1KiB", |b| {
        b.iter(|| {
            buf.clear();
            let shared = SharedEvent::encode(black_box(&event)).expect("encodes");
            write_event(&mut buf, 1, &shared).expect("frames");
            black_box(buf.len())
        })
    });
    let mut wire = BytesMut::new();
    write_event(&mut wire, 1, &SharedEvent::encode(&event).expect("encodes")).expect("frames");
    group.bench_function("decode_event/group_1KiB", |b| {
        b.iter_batched_ref(
            || wire.clone(),
            |buf| {
                let raw = decoder.decode(buf).expect("frames").expect("whole frame");
                black_box(ServerFrame::decode(&raw).expect("decodes"))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A reader that got many frames in one socket read splits and decodes them
/// all before reading again.
fn decode_many(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_buffer");
    let mut wire = BytesMut::new();
    let frame = group_request();
    for _ in 0..FRAMES_PER_BUFFER {
        frame.encode(&mut wire).expect("encodes");
    }
    let decoder = FrameDecoder::default();
    group.throughput(Throughput::Elements(FRAMES_PER_BUFFER));
    group.bench_function("group_1KiB_x1000/frames", |b| {
        b.iter_batched_ref(
            || wire.clone(),
            |buf| {
                let mut n = 0u64;
                while let Some(raw) = decoder.decode(buf).expect("frames") {
                    black_box(ClientFrame::decode(&raw).expect("decodes"));
                    n += 1;
                }
                n
            },
            BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("group_1KiB_x1000/bytes", |b| {
        b.iter_batched_ref(
            || wire.clone(),
            |buf| {
                while let Some(raw) = decoder.decode(buf).expect("frames") {
                    black_box(ClientFrame::decode(&raw).expect("decodes"));
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// Encode once and frame per recipient, against encoding per recipient.
/// Each recipient's frame goes into its own buffer, as each connection's
/// writer has its own.
fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_1000");
    group.throughput(Throughput::Elements(RECIPIENTS));
    let event = group_event();
    let mut bufs: Vec<BytesMut> = (0..RECIPIENTS)
        .map(|_| BytesMut::with_capacity(2048))
        .collect();

    group.bench_function("encode_once_frame_many", |b| {
        b.iter(|| {
            let shared = SharedEvent::encode(black_box(&event)).expect("encodes");
            for (seq, buf) in bufs.iter_mut().enumerate() {
                buf.clear();
                write_event(buf, seq as u64, &shared).expect("frames");
            }
            black_box(bufs.len())
        })
    });
    group.bench_function("encode_per_recipient", |b| {
        b.iter(|| {
            for (seq, buf) in bufs.iter_mut().enumerate() {
                buf.clear();
                // What `ServerFrame::Event::encode` does, without cloning
                // the body into a frame first.
                let shared = SharedEvent::encode(black_box(&event)).expect("encodes");
                write_event(buf, seq as u64, &shared).expect("frames");
            }
            black_box(bufs.len())
        })
    });
    group.finish();
}

criterion_group!(benches, encode_decode, decode_many, fanout);
criterion_main!(benches);
