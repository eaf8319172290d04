//! Line editing for line mode on a terminal (`sotto chat --plain`): the
//! same input line as the full-screen UI (editing, history, paste of long
//! text), in raw mode on a thread of its own, with output printed above
//! the line being typed so neither garbles the other.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use crossterm::event::{
    self, DisableBracketedPaste, EnableBracketedPaste, Event, KeyCode, KeyEventKind, KeyModifiers,
};
use crossterm::terminal::{self, Clear, ClearType};
use crossterm::{cursor, execute, queue};
use tokio::sync::mpsc;

use crate::input::Input;

/// What the screen and the reader thread share.
#[derive(Debug)]
struct Shared {
    input: Input,
    prompt: String,
    /// Typed characters are shown as dots (a password).
    masked: bool,
    /// The editor stopped (Ctrl-C, Ctrl-D): no prompt is drawn again.
    ended: bool,
}

/// Prints above the line being typed. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Printer {
    shared: Arc<Mutex<Shared>>,
}

impl Printer {
    /// Prints `text` (one or more lines) above the input line.
    pub fn print(&self, text: &str) {
        let shared = lock(&self.shared);
        let mut out = io::stdout().lock();
        let _ = queue!(out, cursor::MoveToColumn(0), Clear(ClearType::CurrentLine));
        for line in text.split('\n') {
            let _ = write!(out, "{line}\r\n");
        }
        if !shared.ended {
            draw(&mut out, &shared);
        }
        let _ = out.flush();
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Draws the prompt and the input (a multi-line input on one line, with
/// `⏎` for its line breaks), the cursor where it is.
fn draw(out: &mut impl Write, shared: &Shared) {
    let shown = |s: &str| {
        if shared.masked {
            "•".repeat(s.chars().count())
        } else {
            s.replace('\n', "⏎")
        }
    };
    let text = shown(shared.input.text());
    let before = shown(&shared.input.text()[..shared.input.cursor()]);
    let col = unicode_width::UnicodeWidthStr::width(shared.prompt.as_str())
        + unicode_width::UnicodeWidthStr::width(before.as_str());
    let _ = queue!(out, cursor::MoveToColumn(0), Clear(ClearType::CurrentLine));
    let _ = write!(out, "{}{text}", shared.prompt);
    let _ = queue!(out, cursor::MoveToColumn(col.min(u16::MAX as usize) as u16));
}

/// The terminal in raw mode until dropped.
#[derive(Debug)]
pub struct RawMode(());

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = execute!(io::stdout(), DisableBracketedPaste);
        let _ = terminal::disable_raw_mode();
        let _ = io::stdout().write_all(b"\r\n");
    }
}

/// Starts the line editor: lines typed (Enter) arrive on the channel,
/// which closes on Ctrl-C or Ctrl-D on an empty line. After a line that
/// is `@password`, the next three lines are typed masked, with prompts.
/// Keep the [`RawMode`] alive as long as the editor is used.
pub fn start() -> io::Result<(mpsc::Receiver<String>, Printer, RawMode)> {
    let shared = Arc::new(Mutex::new(Shared {
        input: Input::default(),
        prompt: "> ".to_owned(),
        masked: false,
        ended: false,
    }));
    terminal::enable_raw_mode()?;
    let raw = RawMode(());
    execute!(io::stdout(), EnableBracketedPaste)?;
    let printer = Printer {
        shared: shared.clone(),
    };
    {
        let mut out = io::stdout().lock();
        draw(&mut out, &lock(&shared));
        let _ = out.flush();
    }
    let (tx, rx) = mpsc::channel(64);
    let thread_printer = printer.clone();
    std::thread::spawn(move || read_lines(&shared, &thread_printer, &tx));
    Ok((rx, printer, raw))
}

const PASSWORD_PROMPTS: [&str; 3] = [
    "Current password: ",
    "New password: ",
    "New password again: ",
];

fn read_lines(shared: &Mutex<Shared>, printer: &Printer, tx: &mpsc::Sender<String>) {
    let mut passwords: Option<usize> = None;
    while let Ok(event) = event::read() {
        let mut state = lock(shared);
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => {
                let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
                let alt = key.modifiers.contains(KeyModifiers::ALT);
                match key.code {
                    KeyCode::Char('c') if ctrl => break,
                    KeyCode::Char('d') if ctrl && state.input.is_empty() => break,
                    KeyCode::Enter if alt => state.input.insert('\n'),
                    KeyCode::Enter => {
                        // The line stays on screen as typed (a password
                        // as dots), then the next prompt.
                        let mut out = io::stdout().lock();
                        draw(&mut out, &state);
                        let _ = write!(out, "\r\n");
                        let line = if state.masked {
                            let line = state.input.text().to_owned();
                            state.input.clear();
                            line
                        } else {
                            state.input.take()
                        };
                        passwords = match passwords {
                            None if line.trim() == "@password" => Some(0),
                            None => None,
                            Some(n) if n + 1 < PASSWORD_PROMPTS.len() => Some(n + 1),
                            Some(_) => None,
                        };
                        state.masked = passwords.is_some();
                        state.prompt = passwords.map_or("> ", |n| PASSWORD_PROMPTS[n]).to_owned();
                        draw(&mut out, &state);
                        let _ = out.flush();
                        drop(out);
                        drop(state);
                        if tx.blocking_send(line).is_err() {
                            break;
                        }
                        continue;
                    }
                    KeyCode::Up if !state.masked => state.input.history_prev(),
                    KeyCode::Down if !state.masked => state.input.history_next(),
                    // Over the limit, a character is not taken.
                    _ => {
                        let _ = state.input.edit(&key);
                    }
                }
            }
            Event::Paste(text) => {
                if let Err(message) = state.input.paste(&text) {
                    drop(state);
                    printer.print(&format!("! {message}"));
                    continue;
                }
            }
            _ => {}
        }
        let mut out = io::stdout().lock();
        draw(&mut out, &state);
        let _ = out.flush();
    }
    lock(shared).ended = true;
}
