//! The input line: editing, history, multi-line text and Tab completion,
//! for the full-screen UI and line mode alike.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use sotto_proto::limits::MAX_TEXT_LEN;

/// Lines kept in the input history.
pub const MAX_HISTORY: usize = 500;

/// The text being typed, with a cursor (a byte offset on a char boundary).
#[derive(Debug, Default, Clone)]
pub struct Input {
    text: String,
    cursor: usize,
    history: Vec<String>,
    /// The history line shown (Up/Down), and the draft it replaced.
    browsing: Option<(usize, String)>,
    /// The completion being cycled: the word typed, its matches, the one shown.
    completing: Option<Completion>,
}

#[derive(Debug, Clone)]
struct Completion {
    start: usize,
    matches: Vec<String>,
    shown: usize,
}

impl Input {
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    fn edited(&mut self) {
        self.browsing = None;
        self.completing = None;
    }

    pub fn insert(&mut self, c: char) {
        self.text.insert(self.cursor, c);
        self.cursor += c.len_utf8();
        self.edited();
    }

    pub fn insert_str(&mut self, s: &str) {
        self.text.insert_str(self.cursor, s);
        self.cursor += s.len();
        self.edited();
    }

    fn prev_boundary(&self, from: usize) -> usize {
        self.text[..from]
            .char_indices()
            .next_back()
            .map_or(0, |(i, _)| i)
    }

    fn next_boundary(&self, from: usize) -> usize {
        self.text[from..]
            .chars()
            .next()
            .map_or(from, |c| from + c.len_utf8())
    }

    pub fn backspace(&mut self) {
        if self.cursor > 0 {
            let start = self.prev_boundary(self.cursor);
            self.text.replace_range(start..self.cursor, "");
            self.cursor = start;
        }
        self.edited();
    }

    pub fn delete(&mut self) {
        if self.cursor < self.text.len() {
            let end = self.next_boundary(self.cursor);
            self.text.replace_range(self.cursor..end, "");
        }
        self.edited();
    }

    pub fn left(&mut self) {
        self.cursor = self.prev_boundary(self.cursor);
        self.completing = None;
    }

    pub fn right(&mut self) {
        self.cursor = self.next_boundary(self.cursor);
        self.completing = None;
    }

    pub fn home(&mut self) {
        self.cursor = self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1);
    }

    pub fn end(&mut self) {
        self.cursor = self.text[self.cursor..]
            .find('\n')
            .map_or(self.text.len(), |i| self.cursor + i);
    }

    /// Ctrl+U: deletes to the start of the line.
    pub fn kill_to_start(&mut self) {
        let start = self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1);
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
        self.edited();
    }

    /// Ctrl+K: deletes to the end of the line.
    pub fn kill_to_end(&mut self) {
        let end = self.text[self.cursor..]
            .find('\n')
            .map_or(self.text.len(), |i| self.cursor + i);
        self.text.replace_range(self.cursor..end, "");
        self.edited();
    }

    /// Ctrl+W: deletes the word before the cursor.
    pub fn delete_word(&mut self) {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end();
        let start = trimmed.rfind(char::is_whitespace).map_or(0, |i| {
            i + trimmed[i..].chars().next().map_or(1, char::len_utf8)
        });
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
        self.edited();
    }

    /// Up: the previous line typed (the draft is kept).
    pub fn history_prev(&mut self) {
        let next = match &self.browsing {
            None if self.history.is_empty() => return,
            None => self.history.len() - 1,
            Some((0, _)) => return,
            Some((i, _)) => i - 1,
        };
        let draft = match self.browsing.take() {
            Some((_, draft)) => draft,
            None => std::mem::take(&mut self.text),
        };
        self.text = self.history[next].clone();
        self.cursor = self.text.len();
        self.browsing = Some((next, draft));
    }

    /// Down: the next line typed, then the draft again.
    pub fn history_next(&mut self) {
        let Some((i, draft)) = self.browsing.take() else {
            return;
        };
        if i + 1 < self.history.len() {
            self.text = self.history[i + 1].clone();
            self.browsing = Some((i + 1, draft));
        } else {
            self.text = draft;
        }
        self.cursor = self.text.len();
    }

    /// Enter: the text, cleared from the input and kept in the history.
    pub fn take(&mut self) -> String {
        let text = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.edited();
        if !text.trim().is_empty() && self.history.last() != Some(&text) {
            self.history.push(text.clone());
            if self.history.len() > MAX_HISTORY {
                self.history.remove(0);
            }
        }
        text
    }

    /// An editing key (characters, arrows, Home/End, Backspace/Delete,
    /// Ctrl+A/E/U/K/W): `Ok(true)` if it was one and was applied, `Err`
    /// with what to tell the user if the message would be over the limit.
    pub fn edit(&mut self, key: &KeyEvent) -> Result<bool, String> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Char('a') if ctrl => self.home(),
            KeyCode::Char('e') if ctrl => self.end(),
            KeyCode::Char('u') if ctrl => self.kill_to_start(),
            KeyCode::Char('k') if ctrl => self.kill_to_end(),
            KeyCode::Char('w') if ctrl => self.delete_word(),
            KeyCode::Char(c) if !ctrl && !alt => {
                if self.text.len() + c.len_utf8() > MAX_TEXT_LEN {
                    return Err(format!("a message holds at most {MAX_TEXT_LEN} bytes"));
                }
                self.insert(c);
            }
            KeyCode::Backspace => self.backspace(),
            KeyCode::Delete => self.delete(),
            KeyCode::Left => self.left(),
            KeyCode::Right => self.right(),
            KeyCode::Home => self.home(),
            KeyCode::End => self.end(),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Pasted text, as typed (line breaks kept); refused, with what to
    /// tell the user, when the message would be over the limit.
    pub fn paste(&mut self, text: &str) -> Result<(), String> {
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let total = self.text.len() + text.len();
        if total > MAX_TEXT_LEN {
            return Err(format!(
                "not pasted: {total} bytes is over the {MAX_TEXT_LEN}-byte message limit \
                 (send a long text as a file: @file USER PATH)"
            ));
        }
        self.insert_str(&text);
        Ok(())
    }

    /// Clears the input without keeping it (a password).
    pub fn clear(&mut self) {
        self.text.clear();
        self.cursor = 0;
        self.edited();
    }

    /// The word before the cursor (to complete) and where it starts.
    pub fn word(&self) -> (usize, &str) {
        let before = &self.text[..self.cursor];
        let start = before.rfind(char::is_whitespace).map_or(0, |i| {
            i + before[i..].chars().next().map_or(1, char::len_utf8)
        });
        (start, &before[start..])
    }

    /// Tab: completes the word before the cursor from `candidates` (asked
    /// for the word); Tab again shows the next match. Returns the matches
    /// when there are several.
    pub fn complete(&mut self, candidates: impl FnOnce(&str) -> Vec<String>) -> Vec<String> {
        if let Some(mut c) = self.completing.take() {
            c.shown = (c.shown + 1) % c.matches.len();
            let word = c.matches[c.shown].clone();
            self.text.replace_range(c.start..self.cursor, &word);
            self.cursor = c.start + word.len();
            let all = c.matches.clone();
            self.completing = Some(c);
            return all;
        }
        let (start, word) = self.word();
        if word.is_empty() {
            return Vec::new();
        }
        let matches = candidates(word);
        let Some(first) = matches.first().cloned() else {
            return Vec::new();
        };
        // At the start of the line a completed name is followed by a space.
        let first = if matches.len() == 1 {
            format!("{first} ")
        } else {
            first
        };
        self.text.replace_range(start..self.cursor, &first);
        self.cursor = start + first.len();
        if matches.len() > 1 {
            self.completing = Some(Completion {
                start,
                matches: matches.clone(),
                shown: 0,
            });
            matches
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> Input {
        let mut input = Input::default();
        input.insert_str(s);
        input
    }

    #[test]
    fn editing_moves_by_characters_not_bytes() {
        let mut input = typed("héllo wörld");
        input.left();
        input.backspace();
        assert_eq!(input.text(), "héllo wörd");
        input.home();
        input.right();
        input.delete();
        assert_eq!(input.text(), "hllo wörd");
        input.end();
        input.delete_word();
        assert_eq!(input.text(), "hllo ");
        input.kill_to_start();
        assert_eq!(input.text(), "");
    }

    #[test]
    fn history_goes_back_and_returns_to_the_draft() {
        let mut input = Input::default();
        for line in ["one", "two"] {
            input.insert_str(line);
            input.take();
        }
        input.insert_str("draft");
        input.history_prev();
        assert_eq!(input.text(), "two");
        input.history_prev();
        input.history_prev();
        assert_eq!(input.text(), "one");
        input.history_next();
        assert_eq!(input.text(), "two");
        input.history_next();
        assert_eq!(input.text(), "draft");
    }

    #[test]
    fn tab_completes_one_match_and_cycles_several() {
        let names = |w: &str| {
            ["@alice", "@albert", "@bob"]
                .iter()
                .filter(|n| n.starts_with(w))
                .map(|n| n.to_string())
                .collect()
        };
        let mut input = typed("@b");
        assert!(input.complete(names).is_empty());
        assert_eq!(input.text(), "@bob ");
        let mut input = typed("hi @al");
        assert_eq!(input.complete(names).len(), 2);
        assert_eq!(input.text(), "hi @alice");
        input.complete(names);
        assert_eq!(input.text(), "hi @albert");
        input.complete(names);
        assert_eq!(input.text(), "hi @alice");
    }
}
