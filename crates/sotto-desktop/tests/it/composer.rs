//! The composer: Enter sends, a shortcode completes into its emoji, the
//! size limit is shown and enforced before sending, the picker inserts
//! at the cursor.

use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sotto_client::front::Front;
use sotto_desktop::composer::Composer;
use sotto_proto::Username;

struct State {
    front: Front,
    composer: Composer,
    sent: Vec<String>,
}

fn harness() -> Harness<'static, State> {
    let state = State {
        front: Front::new(Username::parse("alice").unwrap()),
        composer: Composer::new(),
        sent: Vec::new(),
    };
    // The picker lists every emoji; the fonts built in lack the newest
    // (the system's draw them), which are drawn as boxes here.
    let harness = Harness::builder()
        .with_size(egui::vec2(700.0, 500.0))
        .build_ui_state(
            |ui, state: &mut State| {
                egui::Panel::bottom("composer").show(ui, |ui| {
                    if let Some(line) = state.composer.show(ui, &state.front, "lobby") {
                        state.sent.push(line);
                    }
                });
            },
            state,
        );
    harness
        .ctx
        .set_missing_glyph_policy(egui::epaint::text::MissingGlyphPolicy::Tofu);
    harness
}

fn type_text(h: &mut Harness<'static, State>, text: &str) {
    h.get_by_label("Message to lobby").type_text(text);
    h.step();
    h.step();
}

#[test]
fn enter_sends_and_a_shortcode_completes_into_its_emoji() {
    let mut h = harness();
    h.step();
    type_text(&mut h, "see you :smil");
    // The popup offers the emoji; Enter takes the first rather than send.
    h.get_by_label_contains(":smile:");
    h.key_press(egui::Key::Enter);
    h.step();
    assert_eq!(h.state().composer.text, "see you 😄 ");
    assert!(h.state().sent.is_empty());
    type_text(&mut h, "tomorrow");
    h.key_press(egui::Key::Enter);
    h.step();
    assert_eq!(h.state().sent, vec!["see you 😄 tomorrow".to_owned()]);
    assert_eq!(h.state().composer.text, "");
}

#[test]
fn a_message_over_the_limit_says_so_and_is_not_sent() {
    let mut h = harness();
    h.step();
    type_text(&mut h, &"a".repeat(4_095));
    h.get_by_label("4095 / 4096 bytes");
    // A shortcode counts as the emoji it becomes (4 bytes, not 4 characters).
    type_text(&mut h, " :+1:");
    h.get_by_label("4100 / 4096 bytes: 4 too many");
    h.key_press(egui::Key::Enter);
    h.step();
    h.get_by_label("Send").click();
    h.step();
    assert!(h.state().sent.is_empty());
}

#[test]
fn the_picker_inserts_where_the_cursor_is() {
    let mut h = harness();
    h.step();
    type_text(&mut h, "ab");
    h.key_press(egui::Key::ArrowLeft);
    h.step();
    h.get_by_label("😀").click();
    h.step();
    h.get_by_label("Emoji:");
    // The first of the picker's grid is the grinning face.
    let first = emojis::iter().next().unwrap().as_str();
    h.step();
    h.get_all_by_label(first).last().unwrap().click();
    h.step();
    h.step();
    assert_eq!(h.state().composer.text, format!("a{first}b"));
}

#[test]
fn keys_after_enter_in_the_same_frame_go_to_the_next_message() {
    let mut h = harness();
    h.step();
    h.get_by_label("Message to lobby").focus();
    h.step();
    // A fast typist: "@bo", a suggestion shown, then "b", Enter and the
    // next words all within one frame.
    type_text(&mut h, "@bo");
    let enter = |pressed| egui::Event::Key {
        key: egui::Key::Enter,
        physical_key: None,
        pressed,
        repeat: false,
        modifiers: egui::Modifiers::NONE,
    };
    h.input_mut().events.extend([
        egui::Event::Text("b".into()),
        enter(true),
        enter(false),
        egui::Event::Text("next one".into()),
    ]);
    h.step();
    h.step();
    assert_eq!(h.state().sent, vec!["@bob".to_owned()]);
    assert_eq!(h.state().composer.text, "next one");
}
