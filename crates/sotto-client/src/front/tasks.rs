//! Carrying out what a front end asked for on tasks of their own, so that
//! the front end keeps reading events while a request waits for its
//! reply; each hands its result to a callback as a [`Done`].

use super::{Action, Done, OLDER_PAGE, START_HISTORY};
use crate::Client;
use crate::dispatch::{self, Outcome};
use crate::model::ConversationId;

/// Carries out `action` on a task of its own (the caller keeps reading
/// events meanwhile) and hands its result to `done`. `AskPassword` and
/// `Quit` are the front end's to handle: nothing is done for them.
pub fn perform(client: &Client, action: Action, done: impl FnOnce(Done) + Send + 'static) {
    if let Action::Run { command, pending } = action {
        let client = client.clone();
        tokio::spawn(async move {
            let result = dispatch::execute(&client, command).await;
            done(Done::Command(result, pending));
        });
    }
}

/// Changes the password on a task of its own (`@password`, once the
/// front end has asked for both).
pub fn change_password(
    client: &Client,
    old: sotto_proto::Password,
    new: sotto_proto::Password,
    done: impl FnOnce(Done) + Send + 'static,
) {
    let client = client.clone();
    tokio::spawn(async move {
        let result = client
            .change_password(old, new)
            .await
            .map(|()| Outcome::Done("password change"));
        done(Done::Command(result, None));
    });
}

/// Reads the page of history before `before` (milliseconds) for `id`.
pub fn read_older(
    client: &Client,
    id: ConversationId,
    before: i64,
    done: impl FnOnce(Done) + Send + 'static,
) {
    let client = client.clone();
    tokio::spawn(async move {
        let cursor = sotto_proto::HistoryCursor {
            ts: before,
            room_id: 0,
            seq: 0,
        };
        let page = client.history_before(Some(cursor), OLDER_PAGE).await;
        done(Done::Older(id, page));
    });
}

/// Reads the history shown at start ([`START_HISTORY`] messages).
pub fn read_start_history(client: &Client, done: impl FnOnce(Done) + Send + 'static) {
    let client = client.clone();
    tokio::spawn(async move {
        let history = client.history(START_HISTORY).await.map(Outcome::History);
        done(Done::Command(history, None));
    });
}
