//! Drawing a conversation of 100,000 messages in the desktop app: a
//! frame at the newest message, a frame scrolled to the middle (rows
//! estimated, not yet measured), and a frame with a message arriving (the
//! layout extended, not rebuilt). Only the rows in view are laid out.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use eframe::egui;
use sotto_client::ClientEvent;
use sotto_client::model::{ConversationId, Model};
use sotto_desktop::timeline::{self, Rows};
use sotto_proto::Username;

const MESSAGES: i64 = 100_000;

/// Resident memory of this process, in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

fn message(n: i64) -> ClientEvent {
    ClientEvent::Lobby {
        from: Username::parse(&format!("user{}", n % 50)).unwrap(),
        text: format!(
            "message {n}: a line of ordinary chat that is long enough to wrap in a narrow \
             window now and then"
        ),
        ts: 1_796_409_000_000 + n * 1_000,
    }
}

fn frame(ctx: &egui::Context, model: &Model, rows: &mut Rows, me: &Username) -> usize {
    let input = egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1000.0, 700.0),
        )),
        ..Default::default()
    };
    let mut laid_out = 0;
    let _ = ctx.run_ui(input, |ui| {
        let conversation = model.conversation(&ConversationId::Lobby).unwrap();
        laid_out = timeline::show(ui, conversation, rows, me).laid_out;
    });
    laid_out
}

fn timeline(c: &mut Criterion) {
    let me = Username::parse("alice").unwrap();
    let before = rss_kib();
    let mut model = Model::new(me.clone());
    model.keep = sotto_desktop::MAX_SCROLLBACK;
    for n in 0..MESSAGES {
        model.apply_history_up_to(&message(n), sotto_desktop::MAX_SCROLLBACK);
    }
    let ctx = egui::Context::default();
    let mut rows = Rows::default();
    let laid_out = frame(&ctx, &model, &mut rows, &me);
    println!(
        "{MESSAGES} messages in one conversation; {laid_out} rows laid out a frame; resident \
         memory grew by {} KiB (model and row layout together)",
        rss_kib().saturating_sub(before)
    );
    c.bench_function("frame at the newest of 100,000", |b| {
        b.iter(|| black_box(frame(&ctx, &model, &mut rows, &me)));
    });
    let mut middle = 0;
    c.bench_function("frame jumped to a row not yet laid out", |b| {
        b.iter(|| {
            middle = (middle + 7_919) % MESSAGES as usize;
            rows.scroll_to_row(middle);
            black_box(frame(&ctx, &model, &mut rows, &me))
        });
    });
    let mut n = MESSAGES;
    rows.scroll_to_row(MESSAGES as usize - 1);
    c.bench_function("frame with a new message arriving", |b| {
        b.iter(|| {
            model.apply(&message(n));
            n += 1;
            black_box(frame(&ctx, &model, &mut rows, &me))
        });
    });
}

criterion_group!(benches, timeline);
criterion_main!(benches);
