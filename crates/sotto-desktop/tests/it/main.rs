//! The desktop app driven through its UI (egui_kittest finds widgets by
//! what they say, through AccessKit) against a real in-process server over
//! real TLS, with real clients on the other side.

mod chat;
mod composer;
mod connect;
mod scrollback;
mod window;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sotto_desktop::DesktopApp;
use sotto_desktop::os::Notifier;
use sotto_desktop::settings::Settings;
use sotto_test_support::{PATIENCE, TestServer};

/// Notifications shown, for the tests to read.
#[derive(Debug, Clone, Default)]
pub struct Shown(Arc<Mutex<Vec<(String, String)>>>);

impl Notifier for Shown {
    fn notify(&mut self, title: &str, body: &str) {
        self.0
            .lock()
            .unwrap()
            .push((title.to_owned(), body.to_owned()));
    }
}

/// The newest entry of conversation `id` in the app's model, if any.
pub fn newest_in(
    harness: &Harness<'static, DesktopApp>,
    id: &sotto_client::model::ConversationId,
) -> Option<sotto_client::model::Entry> {
    let chat = harness.state().chat()?;
    chat.front.model.conversation(id)?.timeline.back().cloned()
}

/// Every label and value on the screen, for a failure's message.
pub fn shown<S>(harness: &Harness<'_, S>) -> Vec<String> {
    use egui_kittest::kittest::NodeT;
    harness
        .root()
        .children_recursive()
        .filter_map(|node| {
            let node = node.accesskit_node();
            node.label().or_else(|| node.value())
        })
        .filter(|text| !text.is_empty())
        .collect()
}

/// The app in a test harness, with its data dir.
pub struct App {
    pub harness: Harness<'static, DesktopApp>,
    pub notifications: Shown,
    pub dir: tempfile::TempDir,
}

/// A tokio runtime for the server and the clients on the other side; it
/// runs their tasks while the test thread drives the window.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The app for `user` of `server`, its form filled in as last time.
pub fn app(server: &TestServer, user: &str) -> App {
    let dir = tempfile::tempdir().unwrap();
    remember_server(dir.path(), server, user);
    open(dir)
}

/// Writes what the app remembers of a last session: the server and user.
pub fn remember_server(dir: &Path, server: &TestServer, user: &str) {
    let settings = Settings {
        server: server.addr.to_string(),
        user: user.to_owned(),
        ..Settings::default()
    };
    settings.save(&sotto_desktop::settings::file(dir)).unwrap();
}

/// Opens the app on an existing data dir.
pub fn open(dir: tempfile::TempDir) -> App {
    let notifications = Shown::default();
    let app = DesktopApp::new(dir.path().to_owned(), Box::new(notifications.clone()));
    let harness = Harness::builder()
        .with_size(egui::vec2(1100.0, 760.0))
        .build_ui_state(|ui, app: &mut DesktopApp| app.ui(ui), app);
    App {
        harness,
        notifications,
        dir,
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Steps frames until `found` holds (the network works on its own
    /// threads meanwhile); panics after [`PATIENCE`].
    pub fn wait_until(
        &mut self,
        what: &str,
        found: impl Fn(&Harness<'static, DesktopApp>) -> bool,
    ) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.harness.step();
            if found(&self.harness) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; shown: {:?}",
                shown(&self.harness)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until something labelled `text` is shown.
    pub fn wait_for(&mut self, text: &str) {
        self.wait_until(text, |h| h.query_by_label(text).is_some());
    }

    /// Waits until something whose label contains `text` is shown.
    pub fn wait_for_part(&mut self, text: &str) {
        self.wait_until(text, |h| h.query_by_label_contains(text).is_some());
    }

    /// Clicks what is labelled `label` (after two frames, so that what
    /// just appeared, a dialog growing, is where it will stay).
    pub fn click(&mut self, label: &str) {
        self.harness.step();
        self.harness.step();
        self.harness.get_by_label(label).click();
        self.harness.step();
        self.harness.step();
    }

    /// Types `text` into the field labelled `label`.
    pub fn type_into(&mut self, label: &str, text: &str) {
        self.harness.get_by_label(label).focus();
        self.harness.step();
        self.harness.get_by_label(label).type_text(text);
        self.harness.step();
    }

    /// Replaces the text of the field labelled `label` with `text`.
    pub fn retype(&mut self, label: &str, text: &str) {
        self.harness.get_by_label(label).focus();
        self.harness.step();
        self.harness
            .key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
        self.harness.get_by_label(label).type_text(text);
        self.harness.step();
    }

    /// The newest entry of conversation `id`, if any.
    pub fn newest(
        &self,
        id: &sotto_client::model::ConversationId,
    ) -> Option<sotto_client::model::Entry> {
        newest_in(&self.harness, id)
    }

    /// Types into the composer and sends with Enter.
    pub fn say(&mut self, text: &str) {
        self.harness.step();
        self.harness.step();
        let composer = self.harness.get_by_label_contains("Message to");
        composer.focus();
        self.harness.step();
        self.harness
            .get_by_label_contains("Message to")
            .type_text(text);
        self.harness.step();
        self.harness.key_press(egui::Key::Enter);
        self.harness.step();
        self.harness.step();
    }

    /// Signs in with the password (the server and name were remembered),
    /// creating the account, trusting the server when asked.
    pub fn sign_in(&mut self, server: &TestServer, password: &str) {
        self.type_into("Password", password);
        self.click("Create a new account with this name");
        self.click("Connect");
        self.wait_for("Trust and connect");
        let grouped = sotto_desktop::connect::grouped(&server.fingerprint);
        self.harness.get_by_label(&grouped);
        self.click("Trust and connect");
        self.wait_for_part("connected");
    }

    /// The app's state.
    pub fn state(&self) -> &DesktopApp {
        self.harness.state()
    }
}
