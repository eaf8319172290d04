//! The line command language of the text front ends.
//!
//! A line whose first visible character is not `@` is lobby text; `@@text`
//! sends `@text` to the lobby; `@USER message` is a private message; every other `@word`
//! is a command (see [`HELP`]). Parsing is pure: it turns a line into a
//! [`Command`] whose names are already validated, or a [`CommandError`] whose
//! `Display` is a one-line explanation for the user.

use std::path::PathBuf;

use sotto_crypto::Passphrase;
use sotto_proto::limits::MAX_HISTORY;
use sotto_proto::{DeviceId, GroupName, NameError, Status, Username};

/// What `@auto` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoKind {
    /// Joining groups verified contacts invite you to.
    Groups,
    /// Saving files verified contacts send.
    Files,
}

/// Lines shown by `@help`: every command with a one-line description.
pub const HELP: &str = "\
text                       send text to the lobby (everyone)
@@text                     send text starting with '@' to the lobby
@USER message              send a private message to USER
@names                     list users online and their status
@status                    show your status
@status normal|dnd|away    set your status (dnd holds private messages)
@secret USER KEY message   send a message sealed with passphrase KEY
@open ID KEY               open sealed message number ID with passphrase KEY
@file USER PATH            send a file (up to 10 MiB) to USER
@files                     list received files waiting for your answer
@accept ID                 save received file ID in your downloads folder
@reject ID                 discard received file ID
@group set NAME u1,u2      create group NAME with these members
@group send NAME message   send a message to group NAME
@group file NAME PATH      send a file to group NAME
@group add NAME u1,u2      invite users to join (owner only)
@group accept NAME         join a group you were invited to
@group decline NAME        decline an invitation
@group kick NAME u1,u2     remove members or withdraw invitations (owner only)
@group leave NAME          leave group NAME
@group delete NAME         delete group NAME (owner only)
@group list                list your groups and invitations
@auto                      show what verified contacts may do without asking
@auto groups on|off        join groups verified contacts invite you to
@auto files on|off         save files from verified contacts without asking
@history [N]               show the last N messages (1 to 1000, default 20)
@devices [USER]            list USER's devices (default: yours) with fingerprints
@devices remove ID         remove your device ID (a lost phone): it is signed out
@devices trust ID          accept your device ID (after comparing its fingerprint)
@devices USER trust ID     accept a new device of USER, whom you verified
@verify USER               show the safety number to compare with USER
@verify USER confirm NUM   mark USER verified: NUM is the number you both see
@verify USER reset         forget USER's pinned keys (only after checking with them)
@password                  change your password (asked for on the next lines)
@help                      show this help
@quit                      disconnect and exit
Emoji shortcodes like :smile: are replaced before sending.";

/// Default count for `@history` without a number.
pub const DEFAULT_HISTORY: u32 = 20;

const USAGE_NAMES: &str = "@names";
const USAGE_STATUS: &str = "@status [normal|dnd|away]";
const USAGE_SECRET: &str = "@secret USER KEY message";
const USAGE_OPEN: &str = "@open ID KEY";
const USAGE_FILE: &str = "@file USER PATH";
const USAGE_HISTORY: &str = "@history [N]";
const USAGE_DEVICES: &str =
    "@devices [USER] | @devices remove DEVICE_ID | @devices [USER] trust DEVICE_ID";
const USAGE_VERIFY: &str = "@verify USER [confirm NUMBER | reset]";
const USAGE_CONFIRM: &str = "@verify USER confirm NUMBER (type the safety number you compared)";
const USAGE_HELP: &str = "@help";
const USAGE_QUIT: &str = "@quit";
const USAGE_PASSWORD: &str = "@password";
const USAGE_GROUP: &str = "@group set|send|file|add|accept|decline|kick|leave|delete|list ...";
const USAGE_GROUP_ACCEPT: &str = "@group accept NAME";
const USAGE_GROUP_DECLINE: &str = "@group decline NAME";
const USAGE_FILES: &str = "@files";
const USAGE_ACCEPT: &str = "@accept ID";
const USAGE_REJECT: &str = "@reject ID";
const USAGE_AUTO: &str = "@auto [groups|files on|off]";
const USAGE_GROUP_SET: &str = "@group set NAME user1,user2";
const USAGE_GROUP_SEND: &str = "@group send NAME message";
const USAGE_GROUP_FILE: &str = "@group file NAME PATH";
const USAGE_GROUP_ADD: &str = "@group add NAME user1,user2";
const USAGE_GROUP_KICK: &str = "@group kick NAME user1,user2";
const USAGE_GROUP_LEAVE: &str = "@group leave NAME";
const USAGE_GROUP_DELETE: &str = "@group delete NAME";
const USAGE_GROUP_LIST: &str = "@group list";

/// A parsed line.
#[derive(Debug, Clone)]
pub enum Command {
    /// Text for the lobby.
    Lobby(String),
    /// `@names`
    Names,
    /// `@USER message`
    Private { to: Username, text: String },
    /// `@status`
    ShowStatus,
    /// `@status normal|dnd|away`
    SetStatus(Status),
    /// `@secret USER KEY message`
    Secret {
        to: Username,
        key: Passphrase,
        text: String,
    },
    /// `@open ID KEY`
    Open { id: u64, key: Passphrase },
    /// `@file USER PATH`
    File { to: Username, path: PathBuf },
    /// `@group set NAME u1,u2`: create a group.
    GroupSet {
        group: GroupName,
        members: Vec<Username>,
    },
    /// `@group send NAME message`
    GroupSend { group: GroupName, text: String },
    /// `@group file NAME PATH`
    GroupFile { group: GroupName, path: PathBuf },
    /// `@group add NAME u1,u2`
    GroupAdd {
        group: GroupName,
        members: Vec<Username>,
    },
    /// `@group kick NAME u1,u2`
    GroupKick {
        group: GroupName,
        members: Vec<Username>,
    },
    /// `@group leave NAME`
    GroupLeave { group: GroupName },
    /// `@group delete NAME`
    GroupDelete { group: GroupName },
    /// `@group list`
    GroupList,
    /// `@files`: the received files waiting for an answer.
    Files,
    /// `@accept ID`: save a waiting file.
    Accept(u64),
    /// `@reject ID`: discard a waiting file.
    Reject(u64),
    /// `@group accept NAME`
    GroupAccept { group: GroupName },
    /// `@group decline NAME`
    GroupDecline { group: GroupName },
    /// `@auto`: show, or `@auto groups|files on|off`: change, what
    /// verified contacts may do without asking.
    Auto(Option<(AutoKind, bool)>),
    /// `@history [N]`
    History(u32),
    /// `@devices [USER]`: `None` is the user's own devices.
    Devices(Option<Username>),
    /// `@devices remove ID`: remove one of the user's own devices.
    RemoveDevice(DeviceId),
    /// `@devices [USER] trust ID`: accept a device (the user's own when
    /// `user` is `None`) so it gets room keys.
    TrustDevice {
        user: Option<Username>,
        device: DeviceId,
    },
    /// `@verify USER [confirm NUMBER | reset]`
    Verify { user: Username, action: Verify },
    /// `@password`: change the account password (the front end asks for
    /// the current and the new one, never on the command line).
    Password,
    /// `@help`
    Help,
    /// `@quit`
    Quit,
}

/// What `@verify USER` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Show the safety number.
    Show,
    /// Mark the user verified if this is the number computed now.
    Confirm(String),
    /// Forget the user's pinned keys.
    Reset,
}

/// Why a line is not a valid command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("unknown command @{0}{hint}; type @help", hint = did_you_mean(.0))]
    UnknownCommand(String),
    #[error("empty message")]
    EmptyMessage,
    /// `@word` alone, where `word` could be a user: a command typo or a
    /// private message without text.
    #[error(
        "nothing to send: '@{0}' is not a command{hint}; to message {0} write @{0} message, or type @help",
        hint = did_you_mean(.0)
    )]
    NoMessageFor(String),
    #[error("invalid {what} '{input}': {error}")]
    InvalidName {
        what: &'static str,
        input: String,
        error: NameError,
    },
    #[error("unknown status '{0}'; use normal, dnd or away")]
    BadStatus(String),
    #[error("usage: {0}")]
    Usage(&'static str),
    #[error("'{0}' is not a device id (see @devices for yours)")]
    BadDevice(String),
    #[error(
        "'{0}' is not a valid count; usage: @history N (N from 1 to {MAX_HISTORY}, default 20)"
    )]
    BadCount(String),
    #[error("'{0}' is not a sealed message number; usage: @open ID KEY")]
    BadId(String),
}

/// Parses one input line. Blanks and control characters before the first
/// visible character are ignored (a habit such as Ctrl-L to clear the
/// screen must not turn `@bob ...` into lobby text): a line whose first
/// visible character is `@` is always a command, and one that is not valid
/// is refused, never sent to the lobby.
pub fn parse(line: &str) -> Result<Command, CommandError> {
    let line = line
        .trim_start_matches(|c: char| c.is_whitespace() || c.is_control())
        .trim_end_matches(['\r', '\n']);
    let Some(rest) = line.strip_prefix('@') else {
        return lobby(line.to_owned());
    };
    if rest.starts_with('@') {
        // `@@text`: the first '@' escapes the second.
        return lobby(rest.to_owned());
    }
    let (word, args) = split_word(rest);
    match word.to_ascii_lowercase().as_str() {
        "names" => no_args(args, USAGE_NAMES, Command::Names),
        "status" => status(args),
        "secret" => secret(args),
        "open" => open(args),
        "file" => {
            let (to, path) = split_word(args);
            let to = username(to, USAGE_FILE)?;
            Ok(Command::File {
                to,
                path: path_arg(path, USAGE_FILE)?,
            })
        }
        "group" => group(args),
        "history" => history(args),
        "devices" => devices(args),
        "verify" => {
            let (user, rest) = split_word(args);
            let user = username(user, USAGE_VERIFY)?;
            let (word, number) = split_word(rest);
            let action = match word.to_ascii_lowercase().as_str() {
                "" => Verify::Show,
                "confirm" if number.chars().any(|c| c.is_ascii_digit()) => {
                    Verify::Confirm(number.trim().to_owned())
                }
                "confirm" => return Err(CommandError::Usage(USAGE_CONFIRM)),
                "reset" if number.trim().is_empty() => Verify::Reset,
                _ => return Err(CommandError::Usage(USAGE_VERIFY)),
            };
            Ok(Command::Verify { user, action })
        }
        "password" => no_args(args, USAGE_PASSWORD, Command::Password),
        "auto" => auto(args),
        "files" => no_args(args, USAGE_FILES, Command::Files),
        "accept" => Ok(Command::Accept(file_id(args, USAGE_ACCEPT)?)),
        "reject" => Ok(Command::Reject(file_id(args, USAGE_REJECT)?)),
        "help" => no_args(args, USAGE_HELP, Command::Help),
        "quit" => no_args(args, USAGE_QUIT, Command::Quit),
        _ => match Username::parse(word) {
            Ok(to) if args.trim().is_empty() => Err(CommandError::NoMessageFor(to.to_string())),
            Ok(to) => Ok(Command::Private {
                to,
                text: message(args)?,
            }),
            Err(_) => Err(CommandError::UnknownCommand(word.to_owned())),
        },
    }
}

/// `@devices [USER] | @devices remove ID | @devices [USER] trust ID`.
fn devices(args: &str) -> Result<Command, CommandError> {
    let words: Vec<&str> = args.split_whitespace().collect();
    let device = |id: &str| DeviceId::parse(id).map_err(|_| CommandError::BadDevice(id.to_owned()));
    match words.as_slice() {
        [] => Ok(Command::Devices(None)),
        // `@devices remove` without an id is a mistake, not a user's name.
        [word] if word.eq_ignore_ascii_case("remove") || word.eq_ignore_ascii_case("trust") => {
            Err(CommandError::Usage(USAGE_DEVICES))
        }
        ["remove", id] => device(id).map(Command::RemoveDevice),
        ["trust", id] => Ok(Command::TrustDevice {
            user: None,
            device: device(id)?,
        }),
        [user] => Ok(Command::Devices(Some(username(user, USAGE_DEVICES)?))),
        [user, trust, id] if trust.eq_ignore_ascii_case("trust") => Ok(Command::TrustDevice {
            user: Some(username(user, USAGE_DEVICES)?),
            device: device(id)?,
        }),
        _ => Err(CommandError::Usage(USAGE_DEVICES)),
    }
}

/// Every command word, for suggestions and completion.
pub const COMMANDS: [&str; 17] = [
    "names", "status", "secret", "open", "file", "files", "group", "history", "devices", "verify",
    "password", "auto", "accept", "reject", "help", "quit", "all",
];

/// The command `word` was probably meant to be (a typo of one or two
/// letters), if any.
pub fn suggest(word: &str) -> Option<&'static str> {
    let word = word.to_ascii_lowercase();
    if word.len() < 3 {
        return None;
    }
    COMMANDS
        .iter()
        .filter(|c| **c != "all")
        .map(|c| (edit_distance(&word, c), *c))
        .filter(|(d, c)| *d > 0 && *d <= if c.len() > 4 { 2 } else { 1 })
        .min()
        .map(|(_, c)| c)
}

fn did_you_mean(word: &str) -> String {
    suggest(word).map_or_else(String::new, |c| format!(" (did you mean @{c}?)"))
}

/// Levenshtein distance, with a swap of two neighbours counting as one.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        if let Some(first) = row.first_mut() {
            *first = i;
        }
    }
    if let Some(first) = rows.first_mut() {
        for (j, cell) in first.iter_mut().enumerate() {
            *cell = j;
        }
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a.get(i - 1) != b.get(j - 1));
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a.get(i - 1) == b.get(j - 2) && a.get(i - 2) == b.get(j - 1) {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// Splits off the first whitespace-separated word; the rest has its leading
/// whitespace removed.
fn split_word(input: &str) -> (&str, &str) {
    let input = input.trim_start();
    match input.find(char::is_whitespace) {
        Some(end) => (&input[..end], input[end..].trim_start()),
        None => (input, ""),
    }
}

fn lobby(text: String) -> Result<Command, CommandError> {
    if text.trim().is_empty() {
        return Err(CommandError::EmptyMessage);
    }
    Ok(Command::Lobby(text))
}

fn message(text: &str) -> Result<String, CommandError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(CommandError::EmptyMessage);
    }
    Ok(text.to_owned())
}

fn no_args(args: &str, usage: &'static str, command: Command) -> Result<Command, CommandError> {
    if args.trim().is_empty() {
        Ok(command)
    } else {
        Err(CommandError::Usage(usage))
    }
}

fn username(word: &str, usage: &'static str) -> Result<Username, CommandError> {
    if word.is_empty() {
        return Err(CommandError::Usage(usage));
    }
    Username::parse(word).map_err(|error| CommandError::InvalidName {
        what: "username",
        input: word.to_owned(),
        error,
    })
}

fn group_name(word: &str, usage: &'static str) -> Result<GroupName, CommandError> {
    if word.is_empty() {
        return Err(CommandError::Usage(usage));
    }
    GroupName::parse(word).map_err(|error| CommandError::InvalidName {
        what: "group name",
        input: word.to_owned(),
        error,
    })
}

/// A path as a person types it: the rest of the line, in quotes if it
/// has them (`"my report.txt"`), with `~` for the home directory.
fn path_arg(path: &str, usage: &'static str) -> Result<PathBuf, CommandError> {
    let mut path = path.trim();
    for quote in ['"', '\''] {
        if path.len() >= 2 && path.starts_with(quote) && path.ends_with(quote) {
            path = &path[1..path.len() - 1];
            break;
        }
    }
    if path.is_empty() {
        return Err(CommandError::Usage(usage));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
    match (path.strip_prefix('~'), home) {
        (Some(""), Some(home)) => Ok(PathBuf::from(home)),
        (Some(rest), Some(home)) if rest.starts_with('/') => {
            Ok(PathBuf::from(home).join(rest.trim_start_matches('/')))
        }
        _ => Ok(PathBuf::from(path)),
    }
}

/// A member list: names separated by commas and/or spaces.
fn members(list: &str, usage: &'static str) -> Result<Vec<Username>, CommandError> {
    let members = list
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|name| !name.is_empty())
        .map(|name| username(name, usage))
        .collect::<Result<Vec<_>, _>>()?;
    if members.is_empty() {
        return Err(CommandError::Usage(usage));
    }
    Ok(members)
}

fn status(args: &str) -> Result<Command, CommandError> {
    let (value, extra) = split_word(args);
    if !extra.is_empty() {
        return Err(CommandError::Usage(USAGE_STATUS));
    }
    if value.is_empty() {
        return Ok(Command::ShowStatus);
    }
    Status::parse(value)
        .map(Command::SetStatus)
        .ok_or_else(|| CommandError::BadStatus(value.to_owned()))
}

fn passphrase(word: &str, usage: &'static str) -> Result<Passphrase, CommandError> {
    // `split_word` never yields an empty word here, but an empty passphrase
    // would be refused by `Passphrase::new` anyway; both mean "missing".
    Passphrase::new(word).map_err(|_| CommandError::Usage(usage))
}

fn secret(args: &str) -> Result<Command, CommandError> {
    let (to, rest) = split_word(args);
    let to = username(to, USAGE_SECRET)?;
    let (key, text) = split_word(rest);
    let key = passphrase(key, USAGE_SECRET)?;
    Ok(Command::Secret {
        to,
        key,
        text: message(text)?,
    })
}

fn open(args: &str) -> Result<Command, CommandError> {
    let (id, rest) = split_word(args);
    if id.is_empty() {
        return Err(CommandError::Usage(USAGE_OPEN));
    }
    let id: u64 = id
        .trim_start_matches('#')
        .parse()
        .map_err(|_| CommandError::BadId(id.to_owned()))?;
    let (key, extra) = split_word(rest);
    if !extra.is_empty() {
        return Err(CommandError::Usage(USAGE_OPEN));
    }
    Ok(Command::Open {
        id,
        key: passphrase(key, USAGE_OPEN)?,
    })
}

fn history(args: &str) -> Result<Command, CommandError> {
    let (count, extra) = split_word(args);
    if !extra.is_empty() {
        return Err(CommandError::Usage(USAGE_HISTORY));
    }
    if count.is_empty() {
        return Ok(Command::History(DEFAULT_HISTORY));
    }
    match count.parse::<u32>() {
        Ok(n) if (1..=MAX_HISTORY).contains(&n) => Ok(Command::History(n)),
        _ => Err(CommandError::BadCount(count.to_owned())),
    }
}

fn group(args: &str) -> Result<Command, CommandError> {
    let (sub, rest) = split_word(args);
    let (name, tail) = split_word(rest);
    match sub.to_ascii_lowercase().as_str() {
        "set" => Ok(Command::GroupSet {
            group: group_name(name, USAGE_GROUP_SET)?,
            members: members(tail, USAGE_GROUP_SET)?,
        }),
        "send" => Ok(Command::GroupSend {
            group: group_name(name, USAGE_GROUP_SEND)?,
            text: message(tail)?,
        }),
        "file" => Ok(Command::GroupFile {
            group: group_name(name, USAGE_GROUP_FILE)?,
            path: path_arg(tail, USAGE_GROUP_FILE)?,
        }),
        "add" => Ok(Command::GroupAdd {
            group: group_name(name, USAGE_GROUP_ADD)?,
            members: members(tail, USAGE_GROUP_ADD)?,
        }),
        "kick" => Ok(Command::GroupKick {
            group: group_name(name, USAGE_GROUP_KICK)?,
            members: members(tail, USAGE_GROUP_KICK)?,
        }),
        "leave" => {
            let group = group_name(name, USAGE_GROUP_LEAVE)?;
            no_args(tail, USAGE_GROUP_LEAVE, Command::GroupLeave { group })
        }
        "delete" => {
            let group = group_name(name, USAGE_GROUP_DELETE)?;
            no_args(tail, USAGE_GROUP_DELETE, Command::GroupDelete { group })
        }
        "list" => no_args(rest, USAGE_GROUP_LIST, Command::GroupList),
        "accept" => {
            let group = group_name(name, USAGE_GROUP_ACCEPT)?;
            no_args(tail, USAGE_GROUP_ACCEPT, Command::GroupAccept { group })
        }
        "decline" => {
            let group = group_name(name, USAGE_GROUP_DECLINE)?;
            no_args(tail, USAGE_GROUP_DECLINE, Command::GroupDecline { group })
        }
        _ => Err(CommandError::Usage(USAGE_GROUP)),
    }
}

/// The id of a waiting file (`3` or `#3`).
fn file_id(args: &str, usage: &'static str) -> Result<u64, CommandError> {
    let (id, rest) = split_word(args);
    if id.is_empty() || !rest.trim().is_empty() {
        return Err(CommandError::Usage(usage));
    }
    id.trim_start_matches('#')
        .parse()
        .map_err(|_| CommandError::BadId(id.to_owned()))
}

fn auto(args: &str) -> Result<Command, CommandError> {
    let (kind, rest) = split_word(args);
    if kind.is_empty() {
        return Ok(Command::Auto(None));
    }
    let kind = match kind.to_ascii_lowercase().as_str() {
        "groups" => AutoKind::Groups,
        "files" => AutoKind::Files,
        _ => return Err(CommandError::Usage(USAGE_AUTO)),
    };
    let (on, tail) = split_word(rest);
    let on = match on.to_ascii_lowercase().as_str() {
        "on" => true,
        "off" => false,
        _ => return Err(CommandError::Usage(USAGE_AUTO)),
    };
    no_args(tail, USAGE_AUTO, Command::Auto(Some((kind, on))))
}

#[cfg(test)]
mod tests;
