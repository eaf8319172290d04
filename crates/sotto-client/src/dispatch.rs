//! From a typed command to the server: one path for every front end (line
//! mode, JSON lines, the terminal UI, the desktop app). A front end parses
//! a line ([`crate::command::parse`]), hands the command to [`execute`],
//! and shows the [`Outcome`]; it never maps commands to client calls
//! itself.

use std::path::PathBuf;

use sotto_proto::{DeliveryNote, DeviceId, GroupInfo, Invitation, Status, UserPresence, Username};

use crate::command::{AutoKind, Command, HELP, Verify};
use crate::local_store::Offer;
use crate::trust::{AutoAccept, DeviceInfo};
use crate::{Client, ClientError, ClientEvent, Target, Verification};

/// What a command did, for the front end to show.
#[derive(Debug)]
pub enum Outcome {
    /// `@help`: the text to show.
    Help(&'static str),
    /// A message was stored by the server, for `to` (a user, `#group` or
    /// `lobby`), with what the sender should know about its delivery, and
    /// (for text) the message as the sender's own event, to show it as
    /// they would see it from another device.
    Sent {
        to: String,
        note: Option<(Username, DeliveryNote)>,
        echo: Option<ClientEvent>,
    },
    /// `@open`: a sealed message, opened.
    Opened {
        id: u64,
        from: Username,
        text: String,
    },
    /// `@names`: who is online (the first of them), and how many in all.
    Names {
        users: Vec<UserPresence>,
        total: u32,
    },
    /// `@status`.
    Status(Status),
    /// The command (named) succeeded and has nothing to show.
    Done(&'static str),
    /// `@group set` / `@group add`: the group, and the users asked to join.
    Invited {
        command: &'static str,
        group: GroupInfo,
        asked: Vec<Username>,
    },
    /// `@group accept`: the group joined.
    Joined(GroupInfo),
    /// `@group list`: groups, and invitations waiting for an answer.
    Groups {
        groups: Vec<GroupInfo>,
        invitations: Vec<Invitation>,
    },
    /// `@files`: received files waiting for an answer.
    WaitingFiles(Vec<Offer>),
    /// `@accept`: where file `id` was saved.
    FileSaved {
        id: u64,
        name: String,
        path: PathBuf,
        size: u64,
    },
    /// `@reject`: the file discarded.
    FileRejected(Offer),
    /// `@auto`: what verified contacts may do without asking.
    AutoAccept(AutoAccept),
    /// `@history`.
    History(Vec<ClientEvent>),
    /// `@devices`.
    Devices(Vec<DeviceInfo>),
    /// `@devices remove`.
    DeviceRemoved(DeviceId),
    /// `@devices trust`.
    DeviceTrusted(DeviceInfo),
    /// `@verify`: the safety number, and whether it was just confirmed.
    Verification {
        verification: Verification,
        confirmed: bool,
    },
    /// `@verify USER reset`.
    VerificationReset(Username),
    /// `@password`: the front end asks for the current and the new
    /// password (never on the command line) and calls
    /// [`Client::change_password`].
    PasswordWanted,
    /// `@quit`: the front end disconnects.
    Quit,
}

/// A command carried out, or a message on its way.
pub enum Started {
    /// Carried out.
    Done(Outcome),
    /// Queued for the server, in order: the future waits for its reply.
    /// The next command may be started before it resolves.
    Sending(Pending),
}

/// What a queued message resolves to.
pub type Pending = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Outcome, ClientError>> + Send + 'static>,
>;

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Done(outcome) => f.debug_tuple("Done").field(outcome).finish(),
            Self::Sending(_) => f.write_str("Sending"),
        }
    }
}

/// Starts `command`: a private message is encrypted and queued, and its
/// reply is left to the caller to wait for (so piped input pipelines:
/// one round trip per message, not per line); anything else is carried
/// out as by [`execute`].
pub async fn start(client: &Client, command: Command) -> Result<Started, ClientError> {
    match command {
        Command::Private { to, text } => {
            Ok(Started::Sending(start_private(client, to, text).await?))
        }
        other => execute(client, other).await.map(Started::Done),
    }
}

async fn start_private(
    client: &Client,
    to: Username,
    text: String,
) -> Result<Pending, ClientError> {
    let pending = client
        .start_private(to.clone(), &text)
        .await
        .map_err(|e| hint_command(e, &to))?;
    let from = client.user().clone();
    Ok(Box::pin(async move {
        let info = pending.await.map_err(|e| hint_command(e, &to))?;
        Ok(Outcome::Sent {
            to: to.to_string(),
            note: info.note.map(|n| (to.clone(), n)),
            echo: Some(ClientEvent::Private {
                from,
                peer: to,
                text: shown(&text),
                ts: info.ts,
            }),
        })
    }))
}

/// Carries out `command` for `client`.
pub async fn execute(client: &Client, command: Command) -> Result<Outcome, ClientError> {
    Ok(match command {
        Command::Quit => Outcome::Quit,
        Command::Password => Outcome::PasswordWanted,
        Command::Help => Outcome::Help(HELP),
        Command::Lobby(text) => {
            let info = client.send_lobby(&text).await?;
            Outcome::Sent {
                to: "lobby".to_owned(),
                note: None,
                echo: Some(ClientEvent::Lobby {
                    from: client.user().clone(),
                    text: shown(&text),
                    ts: info.ts,
                }),
            }
        }
        Command::Private { to, text } => start_private(client, to, text).await?.await?,
        Command::Secret { to, key, text } => {
            client
                .send_secret(Target::User(to.clone()), key, &text)
                .await?;
            sent(to.as_str(), None)
        }
        Command::Open { id, key } => {
            let opened = client.open_sealed(id, key).await?;
            Outcome::Opened {
                id,
                from: opened.from,
                text: opened.text,
            }
        }
        Command::Names => {
            let (users, total) = client.names().await?;
            Outcome::Names { users, total }
        }
        Command::ShowStatus => Outcome::Status(client.status().await?),
        Command::SetStatus(status) => {
            client.set_status(status).await?;
            Outcome::Done("status")
        }
        Command::GroupSet { group, members } => Outcome::Invited {
            command: "group set",
            group: client.group_create(group, members.clone()).await?,
            asked: members,
        },
        Command::GroupSend { group, text } => {
            let info = client.send_group(group.clone(), &text).await?;
            Outcome::Sent {
                to: format!("#{group}"),
                note: None,
                echo: Some(ClientEvent::Group {
                    group,
                    from: client.user().clone(),
                    text: shown(&text),
                    ts: info.ts,
                }),
            }
        }
        Command::GroupFile { group, path } => {
            client
                .send_file(Target::Group(group.clone()), &path)
                .await?;
            sent(&format!("#{group}"), None)
        }
        Command::GroupAdd { group, members } => Outcome::Invited {
            command: "group add",
            group: client.group_add(group, members.clone()).await?,
            asked: members,
        },
        Command::GroupAccept { group } => Outcome::Joined(client.group_accept(group).await?),
        Command::GroupDecline { group } => {
            client.group_decline(group).await?;
            Outcome::Done("group decline")
        }
        Command::GroupKick { group, members } => {
            client.group_kick(group, members).await?;
            Outcome::Done("group kick")
        }
        Command::GroupLeave { group } => {
            client.group_leave(group).await?;
            Outcome::Done("group leave")
        }
        Command::GroupDelete { group } => {
            client.group_delete(group).await?;
            Outcome::Done("group delete")
        }
        Command::GroupList => {
            let (groups, invitations) = client.group_list().await?;
            Outcome::Groups {
                groups,
                invitations,
            }
        }
        Command::File { to, path } => {
            client.send_file(Target::User(to.clone()), &path).await?;
            sent(to.as_str(), None)
        }
        Command::Files => Outcome::WaitingFiles(client.waiting_files()),
        Command::Accept(id) => {
            let (name, path, size) = client.accept_file(id).await?;
            Outcome::FileSaved {
                id,
                name,
                path,
                size,
            }
        }
        Command::Reject(id) => Outcome::FileRejected(client.reject_file(id).await?),
        Command::Auto(None) => Outcome::AutoAccept(client.auto_accept()),
        Command::Auto(Some((kind, on))) => {
            let mut auto = client.auto_accept();
            match kind {
                AutoKind::Groups => auto.groups = on,
                AutoKind::Files => auto.files = on,
            }
            client.set_auto_accept(auto).await?;
            Outcome::AutoAccept(auto)
        }
        Command::History(n) => Outcome::History(client.history(n).await?),
        Command::Devices(user) => Outcome::Devices(client.devices(user).await?),
        Command::RemoveDevice(device) => {
            client.remove_device(&device).await?;
            Outcome::DeviceRemoved(device)
        }
        Command::TrustDevice { user, device } => {
            Outcome::DeviceTrusted(client.trust_device(user, &device).await?)
        }
        Command::Verify { user, action } => match action {
            Verify::Show => Outcome::Verification {
                verification: client.safety_number(&user).await?,
                confirmed: false,
            },
            Verify::Confirm(number) => Outcome::Verification {
                verification: client.confirm_verified(&user, &number).await?,
                confirmed: true,
            },
            Verify::Reset => {
                client.reset_verification(&user).await?;
                Outcome::VerificationReset(user)
            }
        },
    })
}

fn sent(to: &str, note: Option<(Username, DeliveryNote)>) -> Outcome {
    Outcome::Sent {
        to: to.to_owned(),
        note,
        echo: None,
    }
}

/// `@histroy 10` is a private message to a user named histroy: when there
/// is none, say which command it looks like.
fn hint_command(error: ClientError, to: &Username) -> ClientError {
    match (error, crate::command::suggest(to.as_str())) {
        (ClientError::Server(mut reply), Some(command))
            if reply.code == sotto_proto::ErrorCode::UnknownUser =>
        {
            reply.message = format!("{} (did you mean @{command}?)", reply.message);
            ClientError::Server(reply)
        }
        (error, _) => error,
    }
}

/// The text as it was sent (emoji shortcodes replaced), made safe to show.
fn shown(text: &str) -> String {
    crate::sanitize::text(&crate::client::prepare_text(text).unwrap_or_else(|_| text.to_owned()))
}
