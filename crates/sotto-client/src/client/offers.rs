//! `@files`, `@accept ID`, `@reject ID`: received files waiting for the
//! user's answer, and what verified contacts may send without asking.

use std::path::PathBuf;

use super::Client;
use crate::ClientError;
use crate::actor::Op;
use crate::crypto::lock;
use crate::local_store::Offer;

impl Client {
    /// The received files waiting for `@accept` or `@reject`, oldest first.
    pub fn waiting_files(&self) -> Vec<Offer> {
        lock(&self.crypto).offers.list()
    }

    /// Saves waiting file `id` under `downloads/`: its name, path and size.
    pub async fn accept_file(&self, id: u64) -> Result<(String, PathBuf, u64), ClientError> {
        self.call(|reply| Op::AcceptFile { id, reply }).await
    }

    /// Discards waiting file `id`.
    pub async fn reject_file(&self, id: u64) -> Result<Offer, ClientError> {
        self.call(|reply| Op::RejectFile { id, reply }).await
    }
}
