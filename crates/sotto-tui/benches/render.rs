//! Drawing a conversation of 100,000 messages (issue 11): the frame time
//! at the newest line and scrolled far up, and the memory the model holds.
//! The model keeps the newest `MAX_TIMELINE_IN_MEMORY` entries of a
//! conversation as they arrive; only the lines in view are laid out.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use sotto_client::ClientEvent;
use sotto_proto::Username;
use sotto_tui::{App, Session};

const MESSAGES: usize = 100_000;

/// Resident memory of this process, in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

fn app_with_messages() -> App {
    let user = |n: usize| Username::parse(&format!("user{}", n % 50)).unwrap();
    let mut app = App::new(
        Session {
            me: Username::parse("alice").unwrap(),
            server: "bench:7443".into(),
            fingerprint: "ab12cd34".into(),
        },
        true,
    );
    let start = 1_796_409_000_000i64;
    for n in 0..MESSAGES {
        app.event(&ClientEvent::Lobby {
            from: user(n),
            text: format!(
                "message {n}: a line of ordinary chat that is long enough to wrap on a narrow \
                 terminal now and then"
            ),
            ts: start + n as i64 * 1_000,
        });
    }
    app
}

fn render(c: &mut Criterion) {
    let before = rss_kib();
    let mut app = app_with_messages();
    let after = rss_kib();
    let kept = app
        .front
        .model
        .conversation(app.front.model.selected())
        .map_or(0, |c| c.timeline.len());
    println!(
        "{MESSAGES} messages applied, {kept} kept in memory; resident memory grew by {} KiB \
         ({:.0} bytes per kept entry)",
        after.saturating_sub(before),
        (after.saturating_sub(before) * 1024) as f64 / kept.max(1) as f64
    );
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    c.bench_function("draw 120x40, newest", |b| {
        b.iter(|| {
            terminal
                .draw(|frame| sotto_tui::ui::draw(frame, black_box(&mut app)))
                .unwrap();
        })
    });
    app.scroll = 4_000;
    c.bench_function("draw 120x40, scrolled up 4,000 lines", |b| {
        b.iter(|| {
            terminal
                .draw(|frame| sotto_tui::ui::draw(frame, black_box(&mut app)))
                .unwrap();
        })
    });
}

criterion_group!(benches, render);
criterion_main!(benches);
