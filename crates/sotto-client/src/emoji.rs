//! `:shortcode:` expansion for outgoing text, using the gemoji shortcodes of
//! the `emojis` crate (`:smile:` becomes 😄). Unknown shortcodes, and colons
//! that are not part of one (times, smileys like `:-)`), stay as typed.

/// Longest shortcode looked up; anything longer cannot be one.
const MAX_SHORTCODE_LEN: usize = 64;

/// Replaces every known `:shortcode:` in `text` with its emoji.
pub fn expand_shortcodes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(':') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let candidate = after
            .find(':')
            .map(|end| &after[..end])
            .filter(|code| is_shortcode_syntax(code));
        match candidate.and_then(emojis::get_by_shortcode) {
            Some(emoji) => {
                out.push_str(emoji.as_str());
                // Skip the shortcode and both colons.
                rest = &after[candidate.map_or(0, str::len) + 1..];
            }
            None => {
                // Keep this colon; it may open a later shortcode (`x:qq:smile:`).
                out.push(':');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Shortcodes starting with `prefix` (without colons), shortest first, at
/// most `limit`: for Tab completion.
pub fn shortcodes_starting_with(prefix: &str, limit: usize) -> Vec<&'static str> {
    let mut codes: Vec<&'static str> = emojis::iter()
        .flat_map(|emoji| emoji.shortcodes())
        .filter(|code| code.starts_with(prefix))
        .collect();
    codes.sort_by_key(|code| (code.len(), *code));
    codes.dedup();
    codes.truncate(limit);
    codes
}

/// Whether `code` could be a shortcode: gemoji codes are short, lower-case
/// ASCII with digits, `_`, `+` and `-` (`+1`, `t-rex`).
fn is_shortcode_syntax(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= MAX_SHORTCODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_shortcodes_expand() {
        let cases = [
            (":smile:", "😄"),
            (":heart:", "❤️"),
            (":thumbsup:", "👍"),
            (":+1:", "👍"),
            (":tada:", "🎉"),
            ("hi :smile: there", "hi 😄 there"),
            (":heart::heart:", "❤️❤️"),
            ("x:qq:smile:", "x:qq😄"),
            ("at 12:30 :smile:", "at 12:30 😄"),
        ];
        for (input, expected) in cases {
            assert_eq!(expand_shortcodes(input), expected, "{input:?}");
        }
    }

    #[test]
    fn everything_else_stays_as_typed() {
        let cases = [
            "",
            "no colons",
            ":notarealshortcode:",
            "meet at 12:30:45",
            ":-) and :)",
            "::",
            ":",
            "trailing :smile",
            ": smile :",
            ":Smile:",
            "ünïcødé: :ü:",
        ];
        for input in cases {
            assert_eq!(expand_shortcodes(input), input, "{input:?}");
        }
    }
}
