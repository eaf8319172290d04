//! `@password`: changing the account password. The server checks the old
//! one with an OPAQUE login and stores a new registration record; neither
//! password leaves this machine. The local store is then re-sealed under
//! the new password (crash-safe: see `local_store::account`).

use sotto_proto::{Password, Response};
use zeroize::Zeroizing;

use super::{Client, unexpected};
use crate::ClientError;
use crate::login::{password_change_finish, password_change_start};

impl Client {
    /// Changes the account password from `old` to `new`.
    pub async fn change_password(&self, old: Password, new: Password) -> Result<(), ClientError> {
        let old = Zeroizing::new(old.expose().to_owned());
        let new = Zeroizing::new(new.expose().to_owned());
        if old == new {
            return Err(ClientError::Server(sotto_proto::ErrorReply::new(
                sotto_proto::ErrorCode::Invalid,
                "the new password is the same as the old one",
            )));
        }
        let (change, start) = password_change_start(&old, &new)?;
        let challenge = self.request(start).await?;
        let finish = password_change_finish(
            change,
            challenge,
            self.user(),
            self.session.server_id,
            old,
            new.clone(),
        )
        .await?;
        // The new key goes beside the current one before the server hears
        // of it: whatever happens next, one of the two passwords opens the
        // store and the next login sorts out which.
        crate::crypto::with_store(&self.crypto, move |store| store.begin_change(&new)).await?;
        match self.request(finish).await {
            Ok(Response::Done) => {
                crate::crypto::with_store(&self.crypto, |store| store.finish_change()).await?;
                // The remembered key wrapped the old store key: a
                // remembered device is remembered anew. The change itself
                // is done whatever happens here (the next start would ask
                // for the new password).
                if self.is_remembered()
                    && let Err(e) = self.remember_device().await
                {
                    tracing::warn!("remembering this device under the new password: {e}");
                }
                Ok(())
            }
            Ok(other) => Err(unexpected("password_finish", &other)),
            // The server said no: the old password stays.
            Err(ClientError::Server(e)) => {
                crate::crypto::with_store(&self.crypto, |store| store.abandon_change()).await?;
                Err(ClientError::Server(e))
            }
            // Unknown whether it took: settled at the next login.
            Err(e) => Err(e),
        }
    }
}
