//! Just enough IRC (RFC 1459/2812) to load an IRC server the way the Sotto
//! scenarios load Sotto: register (`NICK`/`USER`, wait for `001`), join a
//! channel (wait for `366`, end of NAMES), `PRIVMSG`, and answer `PING`.
//! Everything else the server says is skipped.

use std::time::Duration;

use anyhow::bail;
use bytes::{Buf as _, BytesMut};
use tokio::time::Instant;

use crate::payload::Payload;
use crate::session::{Incoming, STEP_TIMEOUT, Session};

/// Longest line accepted from the server (IRC allows 512 bytes; IRCv3 tags
/// add up to 8 KiB); anything longer is a protocol error.
const MAX_LINE: usize = 16 * 1024;

/// Longest bench message sent over IRC: the relayed line (prefix, command,
/// target, text) must stay within the classic 512-byte limit.
pub const MAX_IRC_TEXT: usize = 400;

/// The channel every IRC scenario uses.
pub const CHANNEL: &str = "#bench";

/// Per-connection IRC state.
#[derive(Debug)]
pub struct IrcState {
    /// Our nick (for error messages).
    nick: String,
}

impl IrcState {
    /// State for a connection that will register as `nick`.
    pub fn new(nick: String) -> Self {
        Self { nick }
    }

    /// Parses complete lines; answers `PING` by queueing `PONG` into `wbuf`.
    pub fn parse(
        &mut self,
        rbuf: &mut BytesMut,
        wbuf: &mut BytesMut,
        out: &mut Vec<Incoming>,
    ) -> anyhow::Result<()> {
        while let Some(end) = rbuf.iter().position(|&b| b == b'\n') {
            let line = rbuf.split_to(end + 1);
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.line(line, wbuf, out)?;
        }
        if rbuf.len() > MAX_LINE {
            bail!("IRC line longer than {MAX_LINE} bytes");
        }
        Ok(())
    }

    fn line(
        &mut self,
        line: &[u8],
        wbuf: &mut BytesMut,
        out: &mut Vec<Incoming>,
    ) -> anyhow::Result<()> {
        let mut rest = line;
        // IRCv3 message tags.
        if rest.first() == Some(&b'@') {
            rest = split_word(rest).1;
        }
        if rest.first() == Some(&b':') {
            rest = split_word(rest).1;
        }
        let (command, params) = split_word(rest);
        let trailing = || match params.windows(2).position(|w| w == b" :") {
            Some(i) => &params[i + 2..],
            None if params.first() == Some(&b':') => &params[1..],
            None => params.rsplit(|&b| b == b' ').next().unwrap_or(params),
        };
        match command {
            b"PRIVMSG" => {
                if let Some(p) = Payload::decode(trailing()) {
                    out.push(Incoming::Message(p));
                }
            }
            b"PING" => {
                wbuf.extend_from_slice(b"PONG :");
                wbuf.extend_from_slice(trailing());
                wbuf.extend_from_slice(b"\r\n");
            }
            b"001" => out.push(Incoming::Registered),
            b"366" => out.push(Incoming::Joined),
            b"433" => out.push(Incoming::NickInUse),
            b"ERROR" | b"432" | b"436" | b"464" | b"465" | b"471" | b"473" | b"474" | b"475"
            | b"404" => bail!(
                "IRC server refused {}: {}",
                self.nick,
                String::from_utf8_lossy(line)
            ),
            _ => {}
        }
        Ok(())
    }
}

/// Splits off the first space-separated word.
fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == b' ') {
        Some(i) => {
            let mut rest = &s[i + 1..];
            while rest.first() == Some(&b' ') {
                rest.advance(1);
            }
            (&s[..i], rest)
        }
        None => (s, &[]),
    }
}

/// How often a nick still held by a previous run's connection is retried
/// (half a second apart) while the server notices that connection closed.
const NICK_RETRIES: u32 = 40;

/// Registers `nick` and waits for the welcome (`001`).
pub async fn register(session: &mut Session, nick: &str) -> anyhow::Result<()> {
    session.queue_raw(format!("NICK {nick}\r\nUSER {nick} 0 * :sotto-bench\r\n").as_bytes());
    let deadline = Instant::now() + STEP_TIMEOUT;
    for _ in 0..NICK_RETRIES {
        let got = session
            .read_until(
                deadline,
                |i| matches!(i, Incoming::Registered | Incoming::NickInUse),
                |_| {},
            )
            .await?;
        if got == Incoming::Registered {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        session.queue_raw(format!("NICK {nick}\r\n").as_bytes());
    }
    bail!("IRC nick {nick} stayed in use")
}

/// Says goodbye (`QUIT`) so the server frees the nick at once.
pub async fn quit(session: &mut Session) {
    session.queue_raw(b"QUIT :sotto-bench done\r\n");
    let _ = tokio::time::timeout(Duration::from_secs(2), session.flush()).await;
}

/// Joins [`CHANNEL`] and waits for the end of its NAMES list.
pub async fn join(session: &mut Session) -> anyhow::Result<()> {
    session.queue_raw(format!("JOIN {CHANNEL}\r\n").as_bytes());
    let deadline = Instant::now() + STEP_TIMEOUT;
    session
        .read_until(deadline, |i| *i == Incoming::Joined, |_| {})
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str) -> (Vec<Incoming>, String, anyhow::Result<()>) {
        let mut state = IrcState::new("b00001".into());
        let mut rbuf = BytesMut::from(input.as_bytes());
        let mut wbuf = BytesMut::new();
        let mut out = Vec::new();
        let result = state.parse(&mut rbuf, &mut wbuf, &mut out);
        (out, String::from_utf8_lossy(&wbuf).into_owned(), result)
    }

    #[test]
    fn parses_what_the_bench_needs() {
        let (out, written, result) = run(":irc.local 001 b00001 :Welcome\r\n\
             PING :abc123\r\n\
             :irc.local 353 b00001 = #bench :b00001 b00002\r\n\
             :irc.local 366 b00001 #bench :End of /NAMES list.\r\n\
             :b00002!u@127.0.0.1 PRIVMSG #bench :2 5 999 ......\r\n\
             @time=x :b00003!u@h PRIVMSG b00001 :3 1 1000 \r\n\
             :b00003!u@h PRIVMSG #bench :not a bench message\r\n\
             partial line");
        result.unwrap();
        assert_eq!(written, "PONG :abc123\r\n");
        assert_eq!(
            out,
            vec![
                Incoming::Registered,
                Incoming::Joined,
                Incoming::Message(Payload {
                    sender: 2,
                    seq: 5,
                    sent_ns: 999
                }),
                Incoming::Message(Payload {
                    sender: 3,
                    seq: 1,
                    sent_ns: 1000
                }),
            ]
        );
    }

    #[test]
    fn refusals_are_errors() {
        let (out, _, result) = run(":irc.local 433 * b00001 :Nickname is already in use\r\n");
        result.unwrap();
        assert_eq!(out, vec![Incoming::NickInUse]);
        let (_, _, result) = run(":irc.local 465 b00001 :You are banned\r\n");
        assert!(result.is_err());
        let (_, _, result) = run("ERROR :Closing link\r\n");
        assert!(result.is_err());
    }
}
