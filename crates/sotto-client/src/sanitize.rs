//! What a front end may show of a string a peer chose: message text,
//! reasons, server messages, file names. Every such string reaches the
//! user through these functions, so that nothing a peer sends can move the
//! cursor, redraw the screen, reverse the reading order of what follows or
//! hide characters between others.
//!
//! - [`text`] keeps newlines and tabs (a message may have several lines;
//!   front ends show each line after the first as a continuation of the
//!   message, never as a line of its own) and removes every other control
//!   character, the bidirectional controls (the "Trojan Source"
//!   characters: a right-to-left override turns `txt.exe` into `exe.txt`
//!   on screen) and invisible format characters.
//! - [`line`] is for strings shown on one line (reasons, notices, names):
//!   newlines and tabs become spaces too.

/// Whether `c` is never shown: control characters (other than the ones
/// [`text`] keeps), bidirectional controls and invisible format characters.
/// The zero-width joiner and non-joiner stay: emoji sequences and some
/// scripts need them, and they cannot reorder or hide text.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            // Bidirectional controls: marks, embeddings, overrides, isolates.
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
            // Zero width space, word joiner and invisible operators.
            | '\u{200B}' | '\u{2060}'..='\u{2064}' | '\u{206A}'..='\u{206F}'
            // Byte order mark, interlinear annotation, the language tag.
            | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{E0001}'
            // Soft hyphen and other format characters that display nothing.
            | '\u{00AD}' | '\u{180E}' | '\u{034F}'
        )
}

/// Message text as it may be shown: newlines and tabs kept (line and
/// paragraph separators become newlines), every other control, bidi and
/// invisible format character removed.
pub fn text(input: &str) -> String {
    input
        .chars()
        .map(|c| match c {
            '\u{2028}' | '\u{2029}' => '\n',
            c => c,
        })
        .filter(|c| matches!(c, '\n' | '\t') || !hidden(*c))
        .collect()
}

/// A string shown on one line (a reason, a notice, a name): as [`text`],
/// with newlines and tabs as spaces.
pub fn line(input: &str) -> String {
    text(input)
        .chars()
        .map(|c| if matches!(c, '\n' | '\t') { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_cannot_drive_the_screen_or_reorder_text() {
        assert_eq!(text("hi\u{1b}[2Jthere"), "hi[2Jthere");
        assert_eq!(text("a\r\nb\u{7}"), "a\nb");
        assert_eq!(text("invoice\u{202E}fdp.exe"), "invoicefdp.exe");
        assert_eq!(text("x\u{2066}y\u{2069}z\u{200F}"), "xyz");
        assert_eq!(text("zero\u{200B}width\u{FEFF}"), "zerowidth");
        assert_eq!(text("one\u{2028}two"), "one\ntwo");
        assert_eq!(text("tab\tkept"), "tab\tkept");
        // Emoji sequences survive.
        assert_eq!(text("👩\u{200D}💻 ok"), "👩\u{200D}💻 ok");
        assert_eq!(text("ünïcødé ✓"), "ünïcødé ✓");
        assert_eq!(line("two\nlines\tand\u{202E}more"), "two lines andmore");
    }
}
