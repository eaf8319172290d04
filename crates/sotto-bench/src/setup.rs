//! The setup phase: bench accounts, their cached session tokens, and groups.
//!
//! A password login costs an Argon2id hash on the server (tens per second on
//! this machine), so each bench user logs in with its password once and the
//! session token it gets is cached in `<state dir>/accounts`, one
//! `user device token` line per account. Measured phases log in with tokens.
//! A cache from another server (its data dir was reset) is detected by
//! trying one cached token; then every account logs in with its password
//! again. Setup time is reported separately from the measured phases.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sotto_proto::{
    Credential, DeviceId, ErrorCode, GroupName, Request, Response, SessionToken, Username,
};
use tokio::task::JoinSet;

use crate::session::Session;
use crate::tls::Connector;

/// Password logins in flight during setup (the server hashes 4 at a time).
const SETUP_CONCURRENCY: usize = 8;

/// How many times a `rate_limited` login is retried (one second apart).
const RATE_LIMIT_RETRIES: u32 = 60;

/// One bench user with its device and session token.
#[derive(Debug, Clone)]
pub struct Account {
    /// `<prefix><index>`, e.g. `b00042`.
    pub user: Username,
    /// `bench-device-<index>`.
    pub device: DeviceId,
    /// The device's session token.
    pub token: SessionToken,
}

/// Where accounts and tokens are cached, and how to name users.
#[derive(Debug, Clone)]
pub struct AccountSpec {
    /// The state dir for this server.
    pub state_dir: PathBuf,
    /// Username prefix.
    pub prefix: String,
    /// The bench users' password.
    pub password: String,
}

/// The username of bench user `index`.
pub fn username(prefix: &str, index: usize) -> anyhow::Result<Username> {
    Username::parse(&format!("{prefix}{index:05}"))
        .with_context(|| format!("bad --user-prefix {prefix:?}"))
}

/// The device id of bench user `index`.
pub fn device_id(index: usize) -> anyhow::Result<DeviceId> {
    Ok(DeviceId::parse(&format!("bench-device-{index:05}"))?)
}

/// The default state dir for a server address.
pub fn default_state_dir(server: &str) -> PathBuf {
    let safe: String = server
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    Path::new("target").join("bench-state").join(safe)
}

fn accounts_file(spec: &AccountSpec) -> PathBuf {
    spec.state_dir.join("accounts")
}

/// Reads cached tokens: `tokens[i]` for user `i` if cached.
fn load_cache(spec: &AccountSpec, count: usize) -> Vec<Option<SessionToken>> {
    let mut tokens = vec![None; count];
    let Ok(text) = std::fs::read_to_string(accounts_file(spec)) else {
        return tokens;
    };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(user), Some(_device), Some(token)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let Some(index) = user
            .strip_prefix(spec.prefix.as_str())
            .and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        if let Some(slot) = tokens.get_mut(index) {
            *slot = SessionToken::parse(token);
        }
    }
    tokens
}

/// Accounts `first..first + count` from the cache (written by a setup).
pub fn cached_accounts(
    spec: &AccountSpec,
    first: usize,
    count: usize,
) -> anyhow::Result<Vec<Account>> {
    let tokens = load_cache(spec, first + count);
    (first..first + count)
        .map(|i| {
            Ok(Account {
                user: username(&spec.prefix, i)?,
                device: device_id(i)?,
                token: tokens[i]
                    .clone()
                    .with_context(|| format!("no cached token for user {i}; run setup"))?,
            })
        })
        .collect()
}

/// Writes the cache (all known tokens) atomically.
fn save_cache(spec: &AccountSpec, tokens: &[Option<SessionToken>]) -> anyhow::Result<()> {
    std::fs::create_dir_all(&spec.state_dir)
        .with_context(|| format!("creating {}", spec.state_dir.display()))?;
    let mut text = String::new();
    for (i, token) in tokens.iter().enumerate() {
        if let Some(token) = token {
            text.push_str(&format!(
                "{} {} {}\n",
                username(&spec.prefix, i)?,
                device_id(i)?,
                token.expose()
            ));
        }
    }
    let path = accounts_file(spec);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Connects, says hello and logs in; retries `rate_limited`.
pub async fn login(
    conn: &Connector,
    user: &Username,
    device: &DeviceId,
    credential: Credential,
) -> anyhow::Result<(Session, Result<SessionToken, ErrorCode>)> {
    let mut session = Session::sotto(conn.connect(None).await?);
    session.sotto_hello().await?;
    for _ in 0..RATE_LIMIT_RETRIES {
        match session
            .sotto_login(user, device, credential.clone())
            .await?
        {
            Err(e) if e.code == ErrorCode::RateLimited => {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            result => return Ok((session, result.map_err(|e| e.code))),
        }
    }
    bail!("login of {user} still rate limited after {RATE_LIMIT_RETRIES} s")
}

/// Connects, says hello and logs in with the password (registering the
/// account if it is new); retries `rate_limited`.
pub async fn password_login(
    conn: &Connector,
    user: &Username,
    device: &DeviceId,
    password: &str,
) -> anyhow::Result<(Session, Result<SessionToken, ErrorCode>)> {
    for _ in 0..RATE_LIMIT_RETRIES {
        let mut session = Session::sotto(conn.connect(None).await?);
        let server_id = session.sotto_hello().await?;
        match session
            .sotto_password_login(server_id, user, device, password)
            .await?
        {
            Err(e) if e.code == ErrorCode::RateLimited => {
                session.close().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            result => return Ok((session, result.map_err(|e| e.code))),
        }
    }
    bail!("login of {user} still rate limited after {RATE_LIMIT_RETRIES} s")
}

/// Makes sure users `0..count` exist and have cached tokens; returns them
/// and how long setup took.
pub async fn ensure_accounts(
    conn: &Connector,
    spec: &AccountSpec,
    count: usize,
) -> anyhow::Result<(Vec<Account>, Duration)> {
    let started = Instant::now();
    let mut tokens = load_cache(spec, count);
    // One stale token means the server was reset: drop the whole cache
    // (trying every token would trip the failed-login limit).
    if let Some(i) = tokens.iter().position(Option::is_some) {
        let token = tokens[i].clone().context("checked above")?;
        let (session, result) = login(
            conn,
            &username(&spec.prefix, i)?,
            &device_id(i)?,
            Credential::Token(token),
        )
        .await?;
        session.close().await;
        match result {
            Ok(_) => {}
            Err(ErrorCode::WrongPassword) => {
                eprintln!("setup: cached tokens are stale (server reset?); logging in again");
                tokens.iter_mut().for_each(|t| *t = None);
            }
            Err(code) => bail!("token login refused: {}", code.as_str()),
        }
    }
    let missing: Vec<usize> = (0..count).filter(|&i| tokens[i].is_none()).collect();
    if !missing.is_empty() {
        eprintln!(
            "setup: {} password logins (OPAQUE; cached in {})",
            missing.len(),
            spec.state_dir.display()
        );
        let password = Arc::new(spec.password.clone());
        let mut set = JoinSet::new();
        let mut queue = missing.iter().copied();
        let mut done = 0usize;
        let mut last_report = Instant::now();
        let conn = Arc::new(conn.clone());
        loop {
            while set.len() < SETUP_CONCURRENCY {
                let Some(i) = queue.next() else { break };
                let (user, device) = (username(&spec.prefix, i)?, device_id(i)?);
                let (conn, password) = (conn.clone(), password.clone());
                set.spawn(async move {
                    let (session, result) =
                        password_login(&conn, &user, &device, &password).await?;
                    session.close().await;
                    match result {
                        Ok(token) => Ok((i, token)),
                        Err(code) => bail!("password login of {user} refused: {}", code.as_str()),
                    }
                });
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            let (i, token) = joined.context("setup task panicked")??;
            tokens[i] = Some(token);
            done += 1;
            if done.is_multiple_of(500) {
                save_cache(spec, &tokens)?;
            }
            if last_report.elapsed() >= Duration::from_secs(5) {
                last_report = Instant::now();
                eprintln!(
                    "setup: {done}/{} accounts ({:.0}/s)",
                    missing.len(),
                    done as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
        save_cache(spec, &tokens)?;
    }
    let accounts = tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| {
            Ok(Account {
                user: username(&spec.prefix, i)?,
                device: device_id(i)?,
                token: token.context("every account has a token after setup")?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((accounts, started.elapsed()))
}

/// Invites `users` to group `name`, as many per request as the server takes.
async fn invite(
    session: &mut Session,
    name: &GroupName,
    users: Vec<Username>,
) -> anyhow::Result<()> {
    for chunk in users.chunks(sotto_proto::limits::MAX_USERS_PER_GROUP_REQUEST) {
        let added = session
            .sotto_request(Request::GroupAdd {
                group: name.clone(),
                members: chunk.to_vec(),
            })
            .await?;
        if let Err(e) = added {
            bail!("inviting members to {name}: {}", e.code.as_str());
        }
    }
    Ok(())
}

/// Makes sure group `name` exists with exactly these accounts as members
/// (the first is the owner); an existing group with the right members is
/// reused, missing members are invited and accept.
pub async fn ensure_group(
    conn: &Connector,
    name: &GroupName,
    members: &[Account],
) -> anyhow::Result<()> {
    let owner = members.first().context("a group needs an owner")?;
    let (mut session, result) = login(
        conn,
        &owner.user,
        &owner.device,
        Credential::Token(owner.token.clone()),
    )
    .await?;
    if let Err(code) = result {
        bail!("token login of {} refused: {}", owner.user, code.as_str());
    }
    let others: Vec<Username> = members[1..].iter().map(|a| a.user.clone()).collect();
    let created = session
        .sotto_request(Request::GroupCreate {
            group: name.clone(),
            members: Vec::new(),
        })
        .await?;
    // Who still has to accept an invitation.
    let mut joining = others.clone();
    match created {
        Ok(_) => invite(&mut session, name, others).await?,
        Err(e) if e.code == ErrorCode::GroupExists => {
            let listed = session.sotto_request(Request::GroupList).await?;
            let Ok(Response::Groups { groups, .. }) = listed else {
                bail!("group {name} exists but {} cannot see it", owner.user);
            };
            let Some(group) = groups.into_iter().find(|g| g.name == *name) else {
                bail!("group {name} exists and {} is not a member", owner.user);
            };
            let missing: Vec<Username> = others
                .into_iter()
                .filter(|u| !group.members.contains(u))
                .collect();
            joining.clone_from(&missing);
            let missing: Vec<Username> = missing
                .into_iter()
                .filter(|u| !group.invited.contains(u))
                .collect();
            if !missing.is_empty() {
                if group.owner != owner.user {
                    bail!("group {name} exists, owned by {}", group.owner);
                }
                invite(&mut session, name, missing).await?;
            }
            if group.members.len() > members.len() {
                eprintln!(
                    "setup: group {name} has {} members, {} expected; extra members stay",
                    group.members.len(),
                    members.len()
                );
            }
        }
        Err(e) => bail!("creating group {name}: {}", e.code.as_str()),
    }
    session.close().await;
    // Members join by accepting their invitations.
    for account in members.iter().filter(|a| joining.contains(&a.user)) {
        let (mut session, result) = login(
            conn,
            &account.user,
            &account.device,
            Credential::Token(account.token.clone()),
        )
        .await?;
        if let Err(code) = result {
            bail!("token login of {} refused: {}", account.user, code.as_str());
        }
        let accepted = session
            .sotto_request(Request::GroupAccept {
                group: name.clone(),
                room_id: None,
            })
            .await?;
        if let Err(e) = accepted {
            bail!("{} joining {name}: {}", account.user, e.code.as_str());
        }
        session.close().await;
    }
    Ok(())
}
