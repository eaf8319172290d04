//! A conversation of 100,000 messages: only the rows in view are laid
//! out, the view reaches the oldest, and rows read in above the one being
//! read do not move it.

use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sotto_client::ClientEvent;
use sotto_client::model::{ConversationId, Model};
use sotto_desktop::timeline::{self, Rows};
use sotto_proto::Username;

fn lobby(n: i64) -> ClientEvent {
    ClientEvent::Lobby {
        from: Username::parse(if n % 2 == 0 { "bob" } else { "carol" }).unwrap(),
        text: format!("message {n}"),
        // A message a minute, ending now.
        ts: 1_800_000_000_000 + n * 60_000,
    }
}

struct State {
    model: Model,
    rows: Rows,
    laid_out: usize,
}

#[test]
fn a_hundred_thousand_messages_lay_out_only_what_is_in_view_and_reading_older_ones_keeps_the_place()
{
    let me = Username::parse("alice").unwrap();
    let mut model = Model::new(me.clone());
    for n in 1_000..100_000 {
        model.apply_history_up_to(&lobby(n), sotto_desktop::MAX_SCROLLBACK);
    }
    let state = State {
        model,
        rows: Rows::default(),
        laid_out: 0,
    };
    let mut harness = Harness::builder()
        .with_size(egui::vec2(800.0, 600.0))
        .build_ui_state(
            move |ui, state: &mut State| {
                let conversation = state.model.conversation(&ConversationId::Lobby).unwrap();
                let drawn = timeline::show(ui, conversation, &mut state.rows, &me);
                state.laid_out = drawn.laid_out;
            },
            state,
        );
    harness.step();
    harness.step();
    // The newest is shown, and only a screenful was laid out.
    harness.get_by_label("message 99999");
    assert!(harness.query_by_label("message 1000").is_none());
    let laid_out = harness.state().laid_out;
    assert!((10..=80).contains(&laid_out), "{laid_out} rows laid out");
    // Scrolled all the way up: the oldest, still a screenful.
    harness.hover_at(egui::pos2(400.0, 300.0));
    for _ in 0..40 {
        harness.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Page,
            delta: egui::vec2(0.0, 5_000.0),
            phase: egui::TouchPhase::Move,
            modifiers: egui::Modifiers::NONE,
            source: egui::MouseWheelSource::Wheel,
        });
        harness.step();
        if harness.query_by_label("message 1000").is_some() {
            break;
        }
    }
    harness.get_by_label("message 1000");
    assert!(harness.state().laid_out <= 80);
    // A little down, then a page of older messages arrives above: the
    // message at the top of the view stays at the top.
    for _ in 0..3 {
        harness.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Line,
            delta: egui::vec2(0.0, -10.0),
            phase: egui::TouchPhase::Move,
            modifiers: egui::Modifiers::NONE,
            source: egui::MouseWheelSource::Wheel,
        });
        harness.step();
    }
    // Let the scrolling come to rest (it goes on by inertia).
    for _ in 0..20 {
        if harness.run_ok().is_some() {
            break;
        }
    }
    let top_label = |h: &Harness<'_, State>| {
        let mut shown: Vec<(f32, String)> = (1_000..1_200)
            .filter_map(|n| {
                let label = format!("message {n}");
                let top = h.query_by_label(&label).map(|node| node.rect().top());
                top.map(|top| (top, label))
            })
            .collect();
        shown.sort_by(|a, b| a.0.total_cmp(&b.0));
        shown.into_iter().find(|(top, _)| *top >= 0.0)
    };
    let (before_top, before) = top_label(&harness).expect("a row in view");
    for n in 0..1_000 {
        harness
            .state_mut()
            .model
            .apply_history_up_to(&lobby(n), sotto_desktop::MAX_SCROLLBACK);
    }
    harness.step();
    harness.step();
    let (after_top, after) = top_label(&harness).expect("a row in view");
    assert_eq!(before, after, "the row read stays in view at the top");
    // It lost the day's separator above it (the day starts earlier now),
    // so its text may move up by that much, never down.
    assert!(
        after_top <= before_top + 1.0 && after_top >= before_top - 40.0,
        "{before_top} → {after_top}"
    );
    assert!(harness.query_by_label("message 999").is_none());
}
