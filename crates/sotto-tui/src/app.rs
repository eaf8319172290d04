//! The terminal UI's state: the shared front-end model plus what only a
//! terminal needs (the input line, scrolling, the help overlay, a prompt).
//! Keys go in, [`Action`]s come out; nothing here touches the terminal or
//! the network, so it is tested with plain values.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};
use sotto_client::command::Command;
use sotto_client::dispatch::Outcome;
use sotto_client::front::{self, Front, Pending};
use sotto_client::model::{ConversationId, Model};
use sotto_client::{ClientError, ClientEvent};
use sotto_proto::{Password, Username};

use crate::input::Input;

/// Lines scrolled by PageUp/PageDown beyond a screen's worth kept in view.
const PAGE_OVERLAP: usize = 2;
/// Lines scrolled by one mouse-wheel step.
const WHEEL_LINES: usize = 3;

/// What the runtime should do after a key.
#[derive(Debug)]
pub enum Action {
    /// Carry out a command; for a message, the pending entry it fills in.
    Run {
        command: Command,
        pending: Pending,
    },
    /// Change the password (typed into the masked prompt).
    ChangePassword {
        old: Password,
        new: Password,
    },
    Quit,
}

/// The masked prompt of `@password`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordStep {
    Current,
    New { old: String },
    Again { old: String, new: String },
}

/// Facts for the status bar.
#[derive(Debug, Clone)]
pub struct Session {
    pub me: Username,
    pub server: String,
    /// Short form of the pinned certificate fingerprint.
    pub fingerprint: String,
}

/// Everything the screen shows.
#[derive(Debug)]
pub struct App {
    /// The model and what every front end does with it.
    pub front: Front,
    pub session: Session,
    pub input: Input,
    /// Lines scrolled up from the newest in the timeline (0: following).
    pub scroll: usize,
    /// The timeline's height at the last draw, for paging.
    pub page: usize,
    pub help: bool,
    pub password: Option<PasswordStep>,
    /// Colours allowed (`NO_COLOR` unset).
    pub color: bool,
    pub quit: bool,
    /// Times in UTC instead of the local zone (for tests).
    pub utc: bool,
    /// Ring the terminal's bell (a private message or a mention arrived
    /// in a conversation not shown): taken by the loop.
    pub bell: bool,
}

impl App {
    pub fn new(session: Session, color: bool) -> Self {
        Self {
            front: Front::new(session.me.clone()),
            session,
            input: Input::default(),
            scroll: 0,
            page: 20,
            help: false,
            password: None,
            color,
            quit: false,
            utc: false,
            bell: false,
        }
    }

    /// The model drawn.
    pub fn model(&self) -> &Model {
        &self.front.model
    }

    /// Takes in an event from the client; a private message or a mention
    /// elsewhere rings the bell (a terminal shows it as a notification or
    /// an urgency hint).
    pub fn event(&mut self, event: &ClientEvent) {
        if self.front.event(event).is_some_and(|alert| !alert.shown) {
            self.bell = true;
        }
    }

    /// A command ended with `result`; `pending` is its message entry.
    pub fn finished(&mut self, result: Result<Outcome, ClientError>, pending: Pending) {
        self.front.finished(result, pending);
    }

    pub fn mouse(&mut self, mouse: MouseEvent) {
        match mouse.kind {
            MouseEventKind::ScrollUp => self.scroll_by(WHEEL_LINES as isize),
            MouseEventKind::ScrollDown => self.scroll_by(-(WHEEL_LINES as isize)),
            _ => {}
        }
    }

    fn scroll_by(&mut self, lines: isize) {
        self.scroll = self.scroll.saturating_add_signed(lines);
    }

    /// Pasted text goes into the input as typed (newlines kept), refused
    /// with a message when the message would be over the limit.
    pub fn paste(&mut self, text: &str) {
        if let Err(message) = self.input.paste(text) {
            self.front.flash = Some(message);
        }
    }

    /// Handles one key; what the runtime must do.
    pub fn key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        if self.help {
            // Any key closes the overlay.
            self.help = false;
            return None;
        }
        match key.code {
            KeyCode::Char('c') if ctrl => {
                self.quit = true;
                return Some(Action::Quit);
            }
            KeyCode::Char('d') if ctrl && self.input.is_empty() => {
                self.quit = true;
                return Some(Action::Quit);
            }
            KeyCode::Esc if self.password.is_some() => {
                self.password = None;
                self.input.clear();
                self.front.flash = Some("password change cancelled".into());
                return None;
            }
            KeyCode::Enter if alt || key.modifiers.contains(KeyModifiers::SHIFT) => {
                self.input.insert('\n');
                return None;
            }
            KeyCode::Enter => return self.enter(),
            _ => {}
        }
        if self.password.is_none() {
            match key.code {
                KeyCode::F(1) => {
                    self.help = true;
                    return None;
                }
                KeyCode::Char('?') if self.input.is_empty() => {
                    self.help = true;
                    return None;
                }
                KeyCode::Char(d @ '1'..='9') if alt => {
                    self.select_index(d as usize - '1' as usize);
                    return None;
                }
                KeyCode::Char('o') if ctrl => {
                    self.front.model.take_notice();
                    return None;
                }
                KeyCode::Char('l') if ctrl => return None,
                KeyCode::Char('n') if ctrl => {
                    self.select_step(1);
                    return None;
                }
                KeyCode::Char('p') if ctrl => {
                    self.select_step(-1);
                    return None;
                }
                KeyCode::PageUp => {
                    self.scroll_by(self.page.saturating_sub(PAGE_OVERLAP).max(1) as isize);
                    return None;
                }
                KeyCode::PageDown => {
                    self.scroll_by(-(self.page.saturating_sub(PAGE_OVERLAP).max(1) as isize));
                    return None;
                }
                KeyCode::End if ctrl => {
                    self.scroll = 0;
                    return None;
                }
                KeyCode::Up if !self.input.text().contains('\n') => {
                    self.input.history_prev();
                    return None;
                }
                KeyCode::Down if !self.input.text().contains('\n') => {
                    self.input.history_next();
                    return None;
                }
                KeyCode::Tab => {
                    let word = self.input.word().1.to_owned();
                    let candidates = self.candidates(&word);
                    let matches = self.input.complete(|_| candidates);
                    self.front.flash = (!matches.is_empty()).then(|| matches.join("  "));
                    return None;
                }
                _ => {}
            }
        }
        if let Err(message) = self.input.edit(&key) {
            self.front.flash = Some(message);
        }
        None
    }

    fn select_index(&mut self, index: usize) {
        if self.front.select_index(index) {
            self.scroll = 0;
        }
    }

    fn select_step(&mut self, step: isize) {
        self.front.select_step(step);
        self.scroll = 0;
    }

    pub fn select(&mut self, id: ConversationId) {
        self.front.select(id);
        self.scroll = 0;
    }

    /// Completions of the word before the cursor.
    fn candidates(&self, word: &str) -> Vec<String> {
        let first = word == self.input.text()[..self.input.cursor()].trim_start();
        self.front.candidates(word, first)
    }

    /// Enter: a password step, or the line as a command or a message to
    /// the selected conversation.
    fn enter(&mut self) -> Option<Action> {
        if let Some(step) = self.password.take() {
            let typed = std::mem::take(&mut self.input.text().to_owned());
            self.input.clear();
            return self.password_step(step, typed);
        }
        let line = self.input.take();
        if line.trim().is_empty() {
            return None;
        }
        self.scroll = 0;
        let shown = self.front.model.selected().clone();
        let action = self.front.submit(&line);
        if *self.front.model.selected() != shown {
            self.scroll = 0;
        }
        match action? {
            front::Action::Quit => {
                self.quit = true;
                Some(Action::Quit)
            }
            front::Action::AskPassword => {
                self.password = Some(PasswordStep::Current);
                self.front.flash = Some("current password (Esc cancels):".into());
                None
            }
            front::Action::Run { command, pending } => Some(Action::Run { command, pending }),
        }
    }

    fn password_step(&mut self, step: PasswordStep, typed: String) -> Option<Action> {
        match step {
            PasswordStep::Current => {
                self.password = Some(PasswordStep::New { old: typed });
                self.front.flash = Some("new password:".into());
                None
            }
            PasswordStep::New { old } => {
                self.password = Some(PasswordStep::Again { old, new: typed });
                self.front.flash = Some("new password again:".into());
                None
            }
            PasswordStep::Again { old, new } => {
                if new != typed {
                    self.front.flash =
                        Some("the two new passwords differ; nothing was changed".into());
                    return None;
                }
                match (Password::new(old), Password::new(new)) {
                    (Ok(old), Ok(new)) => {
                        self.front.flash = Some("changing the password…".into());
                        Some(Action::ChangePassword { old, new })
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        self.front.flash = Some(format!("{e}; nothing was changed"));
                        None
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
