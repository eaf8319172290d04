//! Received files: saved at once when they come from an accepted device of
//! this account or (with `@auto files on`) of a verified contact, otherwise
//! kept waiting
//! in the local store for `@accept ID` or `@reject ID` (see
//! [`crate::offers`]).

use std::path::PathBuf;

use sotto_proto::{DeviceId, FileBody, GroupName, Username};
use tokio::io::AsyncWrite;
use zeroize::Zeroizing;

use super::Actor;
use crate::ClientError;
use crate::crypto::lock;
use crate::event::{ClientEvent, Position};
use crate::history::Entry;
use crate::local_store::Offer;
use crate::offers::Received;

impl<W: AsyncWrite + Unpin + Send> Actor<W> {
    /// What a received file becomes: saved, waiting, or refused.
    pub(super) async fn receive_file(
        &mut self,
        from: Username,
        device: &DeviceId,
        group: Option<GroupName>,
        ts: i64,
        file: FileBody,
        position: Option<Position>,
    ) -> ClientEvent {
        let key = position.map(|p| (p.room_id, p.seq));
        if let Some((name, path, size)) = key.and_then(|k| self.saved.get(&k)).cloned() {
            return ClientEvent::File {
                from,
                group,
                name,
                path,
                size,
                ts,
            };
        }
        let waiting = key.and_then(|(room, seq)| lock(&self.crypto).offers.at(room, seq).cloned());
        if let Some(offer) = waiting {
            return offered(offer);
        }
        // Saved at once only from a device the user accepted (one of their
        // own, or a verified contact's with `@auto files on`): a device a
        // hostile server added to an account is asked about like a stranger.
        let at_once = {
            let crypto = lock(&self.crypto);
            let trust = &crypto.trust;
            let accepted = trust
                .pinned(&from, device)
                .is_some_and(|keys| trust.gets_keys(keys));
            accepted && (from == self.me || (trust.auto_accept().files && trust.is_verified(&from)))
        };
        let Some((room_id, seq)) = key.filter(|_| !at_once) else {
            return match self.save_file(key, file).await {
                Ok((name, path, size)) => ClientEvent::File {
                    from,
                    group,
                    name,
                    path,
                    size,
                    ts,
                },
                Err(reason) => ClientEvent::Undecodable { from, reason, ts },
            };
        };
        let name = crate::files::sanitize_file_name(&file.name);
        let size = file.data.len() as u64;
        let received = Received {
            room_id,
            seq,
            ts,
            from: &from,
            group: &group,
            name: name.clone(),
        };
        let kept = lock(&self.crypto).offer_file(received, Zeroizing::new(file.data));
        match kept {
            Ok(offer) => offered(offer),
            Err(reason) => ClientEvent::FileRefused {
                from,
                group,
                name,
                size,
                reason,
                ts,
            },
        }
    }

    /// `@accept ID`: saves a waiting file under `downloads/`.
    pub(super) async fn accept_file(
        &mut self,
        id: u64,
    ) -> Result<(String, PathBuf, u64), ClientError> {
        let offer = lock(&self.crypto)
            .offers
            .get(id)
            .cloned()
            .ok_or(ClientError::NoSuchFile(id))?;
        // A file that just came may not be written to the store yet.
        crate::crypto::save(&self.crypto).await?;
        let data = crate::crypto::read(&self.crypto, move |store| store.offer_data(id))
            .await?
            .ok_or(ClientError::NoSuchFile(id))?;
        let dir = self.paths.downloads.clone();
        let name = offer.name.clone();
        let path =
            tokio::task::spawn_blocking(move || crate::files::save_download(&dir, &name, &data))
                .await
                .map_err(|e| ClientError::Internal(format!("saving a file: {e}")))?
                .map_err(|e| {
                    ClientError::Internal(format!("could not save file '{}': {e}", offer.name))
                })?;
        {
            let mut crypto = lock(&self.crypto);
            crypto.answer_file(id);
            let entry = Entry::File {
                from: offer.from.clone(),
                group: offer.group.clone(),
                name: offer.name.clone(),
                path: path.clone(),
                size: offer.size,
            };
            crypto.record_history(offer.room_id, offer.seq, offer.ts, &entry);
        }
        self.saved.insert(
            (offer.room_id, offer.seq),
            (offer.name.clone(), path.clone(), offer.size),
        );
        crate::crypto::save(&self.crypto).await?;
        Ok((offer.name, path, offer.size))
    }

    /// `@reject ID`: discards a waiting file.
    pub(super) async fn reject_file(&mut self, id: u64) -> Result<Offer, ClientError> {
        let offer = {
            let mut crypto = lock(&self.crypto);
            let offer = crypto.answer_file(id).ok_or(ClientError::NoSuchFile(id))?;
            let entry = Entry::Refused {
                from: offer.from.clone(),
                group: offer.group.clone(),
                name: offer.name.clone(),
                size: offer.size,
                reason: "you rejected it".to_owned(),
            };
            crypto.record_history(offer.room_id, offer.seq, offer.ts, &entry);
            offer
        };
        crate::crypto::save(&self.crypto).await?;
        Ok(offer)
    }

    /// Saves a received file under `downloads/` (once per room position):
    /// its name, path and size, or why it could not be saved.
    async fn save_file(
        &mut self,
        key: Option<(u64, u64)>,
        file: sotto_proto::FileBody,
    ) -> Result<(String, PathBuf, u64), String> {
        let name = crate::files::sanitize_file_name(&file.name);
        let size = file.data.len() as u64;
        let dir = self.paths.downloads.clone();
        let save_name = name.clone();
        let path = tokio::task::spawn_blocking(move || {
            crate::files::save_download(&dir, &save_name, &file.data)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|saved| saved.map_err(|e| e.to_string()))
        .map_err(|e| format!("could not save file '{name}': {e}"))?;
        if let Some(key) = key {
            self.saved.insert(key, (name.clone(), path.clone(), size));
        }
        Ok((name, path, size))
    }
}

fn offered(offer: Offer) -> ClientEvent {
    ClientEvent::FileOffered {
        id: offer.id,
        from: offer.from,
        group: offer.group,
        name: offer.name,
        size: offer.size,
        ts: offer.ts,
    }
}
