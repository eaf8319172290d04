//! The app: the connect screen or the main window, the messages from the
//! network thread applied between frames, and the desktop's manners
//! (window title with unread counts, notifications and attention while
//! unfocused, theme, settings kept between runs).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use eframe::egui;
use sotto_client::front::{Action, Done};

use crate::net::Finished;
use sotto_client::model::ConversationId;
use sotto_proto::{GroupName, Username};

use crate::chat::{ChatScreen, Out, title};
use crate::connect::{Asked, ConnectScreen, Problem, TrustQuestion};
use crate::net::{FromNet, MAX_IN_FLIGHT, Net, ToNet};
use crate::os::Notifier;
use crate::settings::{Settings, Theme};

/// Messages from the network applied per frame at most; the rest wait
/// for the next frame (asked for at once), so a burst never freezes the
/// window.
const MESSAGES_PER_FRAME: usize = 2_000;
/// How long a status-bar message stays.
const FLASH_FOR: Duration = Duration::from_secs(6);

/// What the app is showing.
#[derive(Debug)]
enum Screen {
    Connect(Box<ConnectScreen>),
    Chat(Box<ChatScreen>),
}

/// The desktop app.
pub struct DesktopApp {
    data_dir: PathBuf,
    settings: Settings,
    screen: Screen,
    /// Started at the first frame (it needs the context to wake the UI).
    net: Option<Net>,
    notifier: Box<dyn Notifier>,
    /// Commands sent and not answered yet.
    in_flight: usize,
    /// The status-bar message shown, and since when.
    flash: Option<(String, Instant)>,
    /// The theme applied to the context.
    applied_theme: Option<Theme>,
    /// The window title set.
    title: String,
    /// Sign in with the remembered device key at the first frame.
    auto_connect: bool,
    /// Whether the server and user on the form are remembered here,
    /// looked up again only when either changes (not a file check a frame).
    remembered: Option<((String, String), bool)>,
}

impl std::fmt::Debug for DesktopApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesktopApp")
            .field("data_dir", &self.data_dir)
            .field("screen", &self.screen)
            .finish_non_exhaustive()
    }
}

impl DesktopApp {
    /// The app keeping its files in `data_dir`.
    pub fn new(data_dir: PathBuf, notifier: Box<dyn Notifier>) -> Self {
        let settings = Settings::load(&crate::settings::file(&data_dir));
        let remembered = Username::parse(&settings.user).is_ok_and(|user| {
            sotto_client::remember::is_remembered(&data_dir, &settings.server, &user)
        });
        let screen = ConnectScreen::new(
            settings.server.clone(),
            settings.user.clone(),
            settings.remember,
        );
        Self {
            auto_connect: settings.remember && remembered,
            data_dir,
            settings,
            screen: Screen::Connect(Box::new(screen)),
            net: None,
            notifier,
            in_flight: 0,
            flash: None,
            applied_theme: None,
            title: String::new(),
            remembered: None,
        }
    }

    /// The settings as they stand (saved at exit).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The main window's state, once signed in.
    pub fn chat(&self) -> Option<&ChatScreen> {
        match &self.screen {
            Screen::Chat(chat) => Some(chat),
            Screen::Connect(_) => None,
        }
    }

    /// Saves the settings, saying in the log when it cannot.
    pub fn save_settings(&self) {
        if let Err(e) = self.settings.save(&crate::settings::file(&self.data_dir)) {
            tracing::warn!("saving the settings: {e}");
        }
    }

    /// Draws a frame (the whole UI).
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        if self.net.is_none() {
            let waker = ctx.clone();
            match Net::start(std::sync::Arc::new(move || waker.request_repaint())) {
                Ok(net) => self.net = Some(net),
                Err(e) => tracing::error!("cannot start the network thread: {e}"),
            }
        }
        self.apply_theme(&ctx);
        self.pump(&ctx);
        if std::mem::take(&mut self.auto_connect)
            && let Screen::Connect(screen) = &mut self.screen
            && let Ok(request) = screen.request(self.data_dir.clone(), true)
        {
            screen.busy = true;
            self.connect(request);
        }
        match &mut self.screen {
            Screen::Connect(screen) => {
                let form = (
                    screen.server.trim().to_owned(),
                    screen.user.trim().to_owned(),
                );
                let remembered = match &self.remembered {
                    Some((seen, remembered)) if *seen == form => *remembered,
                    _ => {
                        let remembered = Username::parse(&form.1).is_ok_and(|user| {
                            sotto_client::remember::is_remembered(&self.data_dir, &form.0, &user)
                        });
                        self.remembered = Some((form, remembered));
                        remembered
                    }
                };
                if let Some(asked) = screen.show(ui, remembered, &self.data_dir) {
                    self.connect_asked(asked);
                }
            }
            Screen::Chat(chat) => {
                let outs = chat.show(ui);
                for out in outs {
                    self.out(&ctx, out);
                }
            }
        }
        self.expire_flash(&ctx);
        self.set_title(&ctx);
        if let Some(size) = ctx.input(|i| i.viewport().inner_rect).map(|r| r.size()) {
            self.settings.window = Some([size.x, size.y]);
        }
    }

    /// Applies what the network thread sent since the last frame.
    fn pump(&mut self, ctx: &egui::Context) {
        let Some(net) = &mut self.net else { return };
        let mut messages = Vec::new();
        let mut done = Vec::new();
        while messages.len() < MESSAGES_PER_FRAME {
            match net.try_recv() {
                Some(message) => messages.push(message),
                None => break,
            }
        }
        while done.len() < MESSAGES_PER_FRAME {
            match net.try_done() {
                Some(d) => done.push(d),
                None => break,
            }
        }
        if messages.len() == MESSAGES_PER_FRAME || done.len() == MESSAGES_PER_FRAME {
            ctx.request_repaint();
        }
        for message in messages {
            self.message(ctx, message);
        }
        for finished in done {
            if matches!(
                finished,
                Finished::Front(Done::Command(..)) | Finished::Dialog(..)
            ) {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            if let Screen::Chat(chat) = &mut self.screen
                && let Some(out) = chat.finished(finished)
            {
                self.out(ctx, out);
            }
        }
    }

    fn message(&mut self, ctx: &egui::Context, message: FromNet) {
        match (message, &mut self.screen) {
            (
                FromNet::Trust {
                    server,
                    fingerprint,
                    reply,
                },
                Screen::Connect(screen),
            ) => {
                screen.trust = Some(TrustQuestion {
                    server,
                    fingerprint,
                    reply,
                });
            }
            (FromNet::Failed(error), Screen::Connect(screen)) => screen.failed(error),
            (FromNet::Connected(connected), _) => {
                self.settings.server = connected.server.clone();
                self.settings.user = connected.session.user.to_string();
                self.settings.remember = connected.remembered;
                self.save_settings();
                // Where people keep what they send: Documents, else home.
                let files_dir = dirs::document_dir()
                    .filter(|d| d.is_dir())
                    .or_else(dirs::home_dir)
                    .unwrap_or_else(|| self.data_dir.clone());
                let mut chat = ChatScreen::new(
                    *connected,
                    files_dir,
                    self.settings.theme,
                    self.settings.notifications,
                );
                if let Some(id) = self.settings.conversation.as_deref().and_then(conversation) {
                    chat.select(id);
                }
                // The history read at start is the session's first request.
                self.in_flight = 1;
                self.screen = Screen::Chat(Box::new(chat));
            }
            (FromNet::Event(event), Screen::Chat(chat)) => {
                // Where, never what: the log holds no message text.
                if event.ts().is_some()
                    && let Some(id) = ConversationId::of(&event, &chat.front.me)
                {
                    tracing::debug!(conversation = %title(&id), "message received");
                }
                if let Some(alert) = chat.event(&event) {
                    let focused = ctx.input(|i| i.viewport().focused).unwrap_or(true);
                    if !focused {
                        ctx.send_viewport_cmd(egui::ViewportCommand::RequestUserAttention(
                            egui::UserAttentionType::Informational,
                        ));
                        if self.settings.notifications {
                            let place = match &alert.conversation {
                                ConversationId::Direct(_) => String::new(),
                                other => format!(" in {}", title(other)),
                            };
                            self.notifier
                                .notify(&format!("{}{place}", alert.from), &alert.preview);
                        }
                    }
                }
            }
            (FromNet::SignedOut(forgotten), _) => {
                self.remembered = None;
                self.settings.remember = false;
                self.save_settings();
                let mut screen = ConnectScreen::new(
                    self.settings.server.clone(),
                    self.settings.user.clone(),
                    false,
                );
                screen.problem = Some(match forgotten {
                    Ok(()) => Problem::Note("Signed out.".into()),
                    Err(why) => Problem::Said(format!(
                        "Signed out, but this device may still be remembered: {why}"
                    )),
                });
                self.screen = Screen::Connect(Box::new(screen));
            }
            // A late message for a screen no longer shown (a trust
            // question is answered no by dropping it).
            _ => {}
        }
    }

    fn connect_asked(&mut self, asked: Asked) {
        match asked {
            Asked::Connect(request) => {
                self.settings.server = request.server.clone();
                self.settings.user = request.user.to_string();
                self.connect(request);
            }
            Asked::ReplacePin {
                server,
                fingerprint,
                known_servers,
            } => {
                let replaced = sotto_client::known_servers::KnownServers::load(&known_servers)
                    .and_then(|mut known| known.replace(&server, &fingerprint));
                if let Screen::Connect(screen) = &mut self.screen {
                    screen.problem = Some(match replaced {
                        Ok(()) => {
                            Problem::Note("The new certificate is trusted: connect again.".into())
                        }
                        Err(e) => Problem::Said(format!(
                            "Could not change {}: {e}",
                            known_servers.display()
                        )),
                    });
                }
            }
        }
    }

    fn connect(&mut self, request: crate::net::ConnectRequest) {
        if let Err(why) = self.send(ToNet::Connect(request))
            && let Screen::Connect(screen) = &mut self.screen
        {
            screen.busy = false;
            screen.problem = Some(Problem::Said(why));
        }
    }

    fn out(&mut self, ctx: &egui::Context, out: Out) {
        match out {
            Out::Net(request) => {
                // Requests answered by a command result count as in flight.
                let answered = matches!(
                    request,
                    ToNet::Run(_)
                        | ToNet::Dialog { .. }
                        | ToNet::ChangePassword { .. }
                        | ToNet::Remember(_)
                );
                let older = matches!(request, ToNet::Older(..));
                let pending = match &request {
                    ToNet::Run(Action::Run { pending, .. }) => pending.clone(),
                    _ => None,
                };
                if answered && self.in_flight >= MAX_IN_FLIGHT {
                    self.refuse(pending, "too many commands are waiting for the server");
                    return;
                }
                match self.send(request) {
                    Ok(()) if answered => self.in_flight += 1,
                    Ok(()) => {}
                    Err(why) => {
                        if older && let Screen::Chat(chat) = &mut self.screen {
                            chat.front.older.loading = false;
                        }
                        self.refuse(pending, &why);
                    }
                }
            }
            Out::SetTheme(theme) => {
                self.settings.theme = theme;
                self.save_settings();
            }
            Out::SetNotifications(on) => {
                self.settings.notifications = on;
                self.save_settings();
            }
            Out::SetRemember(on) => {
                self.settings.remember = on;
                self.save_settings();
            }
            Out::Quit => ctx.send_viewport_cmd(egui::ViewportCommand::Close),
        }
    }

    fn refuse(&mut self, pending: sotto_client::front::Pending, why: &str) {
        if let Screen::Chat(chat) = &mut self.screen {
            crate::chat::refused(&mut chat.front, pending, why.to_owned());
        }
    }

    fn send(&mut self, request: ToNet) -> Result<(), String> {
        match &self.net {
            Some(net) => net.send(request),
            None => Err("the network thread is not running".into()),
        }
    }

    fn apply_theme(&mut self, ctx: &egui::Context) {
        if self.applied_theme == Some(self.settings.theme) {
            return;
        }
        ctx.set_theme(match self.settings.theme {
            Theme::System => egui::ThemePreference::System,
            Theme::Light => egui::ThemePreference::Light,
            Theme::Dark => egui::ThemePreference::Dark,
        });
        self.applied_theme = Some(self.settings.theme);
    }

    /// A status-bar message goes after a while.
    fn expire_flash(&mut self, ctx: &egui::Context) {
        let Screen::Chat(chat) = &mut self.screen else {
            return;
        };
        match (&chat.front.flash, &self.flash) {
            (Some(now), Some((seen, since))) if now == seen => {
                if since.elapsed() >= FLASH_FOR {
                    chat.front.flash = None;
                    self.flash = None;
                } else {
                    ctx.request_repaint_after(FLASH_FOR.saturating_sub(since.elapsed()));
                }
            }
            (Some(now), _) => {
                self.flash = Some((now.clone(), Instant::now()));
                ctx.request_repaint_after(FLASH_FOR);
            }
            (None, _) => self.flash = None,
        }
    }

    /// "Sotto (3) · alice@server": unread counts in the title, where the
    /// taskbar shows them.
    fn set_title(&mut self, ctx: &egui::Context) {
        let title = match &self.screen {
            Screen::Connect(_) => "Sotto".to_owned(),
            Screen::Chat(chat) => {
                let unread: u32 = chat
                    .front
                    .model
                    .conversations()
                    .iter()
                    .map(|c| c.unread)
                    .sum();
                let id = chat.front.model.selected();
                self.settings.conversation = Some(title(id));
                let count = if unread > 0 {
                    format!(" ({unread})")
                } else {
                    String::new()
                };
                format!(
                    "Sotto{count} · {} · {}@{}",
                    title(id),
                    chat.front.me,
                    chat.connected.server
                )
            }
        };
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }
}

/// The conversation a setting names (`lobby`, `@user`, `#group`).
fn conversation(name: &str) -> Option<ConversationId> {
    if name == "lobby" {
        return Some(ConversationId::Lobby);
    }
    if let Some(user) = name.strip_prefix('@') {
        return Username::parse(user).ok().map(ConversationId::Direct);
    }
    let group = name.strip_prefix('#')?;
    GroupName::parse(group).ok().map(ConversationId::Group)
}

impl eframe::App for DesktopApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        DesktopApp::ui(self, ui);
    }

    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        // Also while the window is hidden: events keep flowing.
        self.pump(ctx);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.save_settings();
    }
}
