//! The bench's message payload: who sent it, its number and when.
//!
//! The same ASCII text is used as Sotto lobby text, as the bytes of a Sotto
//! envelope and as an IRC `PRIVMSG` body, so every protocol carries exactly
//! the same bytes: `"<sender> <seq> <sent_ns> "` in decimal, padded with `.`
//! to the requested size. `sent_ns` counts nanoseconds since the process's
//! [`epoch`]; all clients of one run live in one process, so receive time
//! minus send time is the delivery latency.

use std::sync::OnceLock;
use std::time::Instant;

/// The process-wide time origin of `sent_ns`.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
pub fn now_ns() -> u64 {
    // u64 nanoseconds last 584 years; the cast cannot truncate in a run.
    epoch().elapsed().as_nanos() as u64
}

/// The decoded header of a bench message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    /// Index of the sending client.
    pub sender: u32,
    /// The sender's message number, from 1.
    pub seq: u64,
    /// Send time, nanoseconds since [`epoch`].
    pub sent_ns: u64,
}

impl Payload {
    /// Encodes the payload padded with `.` to at least `size` bytes.
    pub fn encode(&self, size: usize) -> String {
        let mut text = format!("{} {} {} ", self.sender, self.seq, self.sent_ns);
        if text.len() < size {
            text.extend(std::iter::repeat_n('.', size - text.len()));
        }
        text
    }

    /// Decodes a payload; `None` for anything the bench did not send.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut fields = bytes.split(|&b| b == b' ');
        let mut next = || parse_u64(fields.next()?);
        let sender = u32::try_from(next()?).ok()?;
        let seq = next()?;
        let sent_ns = next()?;
        Some(Self {
            sender,
            seq,
            sent_ns,
        })
    }
}

/// Parses 1 to 20 ASCII digits (this runs once per field of every delivery,
/// so it avoids `str` validation).
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let p = Payload {
            sender: 42,
            seq: 7,
            sent_ns: 123_456_789,
        };
        let text = p.encode(100);
        assert_eq!(text.len(), 100);
        assert!(text.starts_with("42 7 123456789 ."));
        assert_eq!(Payload::decode(text.as_bytes()), Some(p));
        // A size smaller than the header is not truncated.
        let short = p.encode(1);
        assert_eq!(Payload::decode(short.as_bytes()), Some(p));
    }

    #[test]
    fn foreign_text_is_ignored() {
        assert_eq!(Payload::decode(b"hello world"), None);
        assert_eq!(Payload::decode(b""), None);
        assert_eq!(Payload::decode(b"1 2"), None);
        assert_eq!(Payload::decode(b"99999999999 1 1 "), None);
        assert_eq!(Payload::decode(b"1 2 99999999999999999999999 "), None);
        assert_eq!(Payload::decode(b"1 -2 3 "), None);
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
    }
}
