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
use sotto_client::front::{self, Done, Front};
use sotto_client::{Client, ClientEvent, Events};
use tokio::sync::mpsc;

use crate::app::{Action, App, Session};

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
    app.front = Front::logged_in(session);

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
    front::read_start_history(&client, sender(&done_tx));
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
        match (&app.front.flash, &flash_seen) {
            (Some(flash), Some((seen, at))) if flash == seen => {
                if at.elapsed() >= FLASH_FOR {
                    app.front.flash = None;
                    flash_seen = None;
                }
            }
            (Some(flash), _) => flash_seen = Some((flash.clone(), std::time::Instant::now())),
            (None, _) => flash_seen = None,
        }
        if let Some((id, before)) = app.front.older_wanted() {
            front::read_older(&client, id, before, sender(&done_tx));
        }
        tokio::select! {
            event = events.next() => match event {
                Some(event) => {
                    let end = matches!(event, ClientEvent::Disconnected { .. });
                    app.event(&event);
                    if end {
                        app.front.flash =
                            Some("disconnected for good; press any key to quit".into());
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
                Done::Older(id, page) => app.front.older_loaded(id, page),
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

/// Hands a finished task's result to the loop.
fn sender(done: &mpsc::UnboundedSender<Done>) -> impl FnOnce(Done) + Send + 'static {
    let done = done.clone();
    move |finished| {
        let _ = done.send(finished);
    }
}

/// Starts what a key asked for.
fn perform(client: &Client, action: Action, done: &mpsc::UnboundedSender<Done>) {
    match action {
        Action::Quit => {}
        Action::Run { command, pending } => {
            front::perform(
                client,
                front::Action::Run { command, pending },
                sender(done),
            );
        }
        Action::ChangePassword { old, new } => {
            front::change_password(client, old, new, sender(done));
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
