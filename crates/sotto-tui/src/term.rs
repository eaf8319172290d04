//! The terminal and the event loop: raw mode and the alternate screen,
//! restored on exit, on Ctrl-C (a key in raw mode) and on panic; keys read
//! on a thread of their own; commands run on tasks of their own, so the
//! client's events are always read while a command waits for its reply.

use std::io::{self, Stdout};
use std::time::Duration;

use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event,
};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use sotto_client::dispatch::{self, Outcome};
use sotto_client::model::{ConversationId, EntryId};
use sotto_client::{Client, ClientError, ClientEvent, Events};
use tokio::sync::mpsc;

use crate::app::{Action, App, OLDER_PAGE, Session};

/// History loaded into the timelines at start.
const START_HISTORY: u32 = 200;
/// How often the screen is drawn while nothing happens (the reconnect
/// countdown).
const TICK: Duration = Duration::from_secs(1);
/// How long a status-bar message stays.
const FLASH_FOR: Duration = Duration::from_secs(6);

/// What the UI needs besides the client.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server as typed, for the status bar.
    pub server: String,
    /// Colours allowed (`NO_COLOR` unset).
    pub color: bool,
}

/// What a task the UI started came back with.
enum Done {
    Command(
        Result<Outcome, ClientError>,
        Option<(ConversationId, EntryId)>,
    ),
    Older(ConversationId, Result<Vec<ClientEvent>, ClientError>),
}

/// Runs the UI until the user quits or the session ends for good.
pub async fn run(client: Client, mut events: Events, options: Options) -> io::Result<()> {
    let session = client.session();
    let fingerprint = client.server_fingerprint().to_string();
    // Enough to recognize it; `@verify` and the server's banner show it all.
    let short = fingerprint
        .trim_start_matches("SHA256:")
        .chars()
        .take(8)
        .collect::<String>();
    let mut app = App::new(
        Session {
            me: session.user.clone(),
            server: options.server.clone(),
            fingerprint: short,
        },
        options.color,
    );
    app.model
        .set_online(session.online.iter().map(|p| (p.user.clone(), p.status)));
    app.groups = session.groups.iter().map(|g| g.name.clone()).collect();
    for group in &session.groups {
        app.model.set_group(group);
    }

    let mut terminal = enter()?;
    let (keys_tx, mut keys) = mpsc::channel::<Event>(256);
    std::thread::spawn(move || {
        while let Ok(event) = crossterm::event::read() {
            if keys_tx.blocking_send(event).is_err() {
                break;
            }
        }
    });
    let (done_tx, mut done) = mpsc::unbounded_channel::<Done>();
    {
        let (client, done_tx) = (client.clone(), done_tx.clone());
        tokio::spawn(async move {
            let history = client.history(START_HISTORY).await.map(Outcome::History);
            let _ = done_tx.send(Done::Command(history, None));
        });
    }
    let mut tick = tokio::time::interval(TICK);
    // A status-bar message goes after a while, giving the bar back.
    let mut flash_seen: Option<(String, std::time::Instant)> = None;
    let result = loop {
        if let Err(e) = terminal.draw(|frame| crate::ui::draw(frame, &mut app)) {
            break Err(e);
        }
        if std::mem::take(&mut app.bell) {
            use std::io::Write;
            let _ = io::stdout().write_all(b"\x07");
            let _ = io::stdout().flush();
        }
        match (&app.flash, &flash_seen) {
            (Some(flash), Some((seen, at))) if flash == seen => {
                if at.elapsed() >= FLASH_FOR {
                    app.flash = None;
                    flash_seen = None;
                }
            }
            (Some(flash), _) => flash_seen = Some((flash.clone(), std::time::Instant::now())),
            (None, _) => flash_seen = None,
        }
        if let Some((id, before)) = app.older_wanted() {
            let (client, done_tx) = (client.clone(), done_tx.clone());
            tokio::spawn(async move {
                let cursor = sotto_proto::HistoryCursor {
                    ts: before,
                    room_id: 0,
                    seq: 0,
                };
                let page = client.history_before(Some(cursor), OLDER_PAGE).await;
                let _ = done_tx.send(Done::Older(id, page));
            });
        }
        tokio::select! {
            event = events.next() => match event {
                Some(event) => {
                    let end = matches!(event, ClientEvent::Disconnected { .. });
                    app.event(&event);
                    if end {
                        app.flash = Some("disconnected for good; press any key to quit".into());
                    }
                }
                None => {
                    if app.quit {
                        break Ok(());
                    }
                    // The session ended: show it until a key is pressed.
                    let _ = terminal.draw(|frame| crate::ui::draw(frame, &mut app));
                    let _ = keys.recv().await;
                    break Ok(());
                }
            },
            key = keys.recv() => match key {
                Some(Event::Key(key)) => {
                    if let Some(action) = app.key(key) {
                        perform(&client, action, &done_tx);
                    }
                }
                Some(Event::Paste(text)) => app.paste(&text),
                Some(Event::Mouse(mouse)) => app.mouse(mouse),
                Some(_) => {}
                None => break Ok(()),
            },
            Some(finished) = done.recv() => match finished {
                Done::Command(result, pending) => app.finished(result, pending),
                Done::Older(id, page) => app.older_loaded(id, page),
            },
            _ = tick.tick() => {}
        }
        if app.quit {
            let _ = client.quit().await;
            break Ok(());
        }
    };
    leave(&mut terminal);
    result
}

/// Starts what a key asked for.
fn perform(client: &Client, action: Action, done: &mpsc::UnboundedSender<Done>) {
    let (client, done) = (client.clone(), done.clone());
    match action {
        Action::Quit => {}
        Action::Run { command, pending } => {
            tokio::spawn(async move {
                let result = dispatch::execute(&client, command).await;
                let _ = done.send(Done::Command(result, pending));
            });
        }
        Action::ChangePassword { old, new } => {
            tokio::spawn(async move {
                let result = client
                    .change_password(old, new)
                    .await
                    .map(|()| Outcome::Done("password change"));
                let _ = done.send(Done::Command(result, None));
            });
        }
    }
}

type Term = Terminal<CrosstermBackend<Stdout>>;

/// Raw mode, the alternate screen, mouse and bracketed paste; a panic
/// restores the terminal before its message is printed.
fn enter() -> io::Result<Term> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    enable_raw_mode()?;
    let mut stdout = io::stdout();
    if let Err(e) = execute!(
        stdout,
        EnterAlternateScreen,
        EnableMouseCapture,
        EnableBracketedPaste
    ) {
        restore();
        return Err(e);
    }
    Terminal::new(CrosstermBackend::new(stdout))
}

fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

fn leave(terminal: &mut Term) {
    restore();
    let _ = terminal.show_cursor();
}
