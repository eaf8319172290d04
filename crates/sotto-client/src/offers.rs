//! Received files waiting for the user's answer (`@accept ID`, `@reject
//! ID`), within [`MAX_OFFERS`], [`MAX_OFFERED_BYTES`] and
//! [`MAX_OFFERED_BYTES_PER_SENDER`]: what the rest of the client knows of
//! them (their contents stay in the local store).

use std::collections::BTreeMap;

use sotto_proto::{GroupName, Username};
use zeroize::Zeroizing;

use crate::local_store::{
    MAX_OFFERED_BYTES, MAX_OFFERED_BYTES_PER_SENDER, MAX_OFFERS, MAX_OFFERS_PER_SENDER, Offer,
    OfferRow,
};

/// The files waiting for an answer, by id.
#[derive(Debug, Default)]
pub(crate) struct Offers {
    waiting: BTreeMap<u64, Offer>,
    next: u64,
}

/// A received file, before it is kept.
pub(crate) struct Received<'a> {
    pub room_id: u64,
    pub seq: u64,
    pub ts: i64,
    pub from: &'a Username,
    pub group: &'a Option<GroupName>,
    pub name: String,
}

impl Offers {
    pub fn from_loaded(offers: Vec<Offer>, next: u64) -> Self {
        Self {
            waiting: offers.into_iter().map(|o| (o.id, o)).collect(),
            next: next.max(1),
        }
    }

    /// The file waiting from this room position, if any (a redelivery).
    pub fn at(&self, room_id: u64, seq: u64) -> Option<&Offer> {
        self.waiting
            .values()
            .find(|o| o.room_id == room_id && o.seq == seq)
    }

    /// Keeps a received file until it is answered: the row to store, or
    /// why it is not kept.
    pub fn add(
        &mut self,
        file: Received<'_>,
        data: Zeroizing<Vec<u8>>,
    ) -> Result<OfferRow, String> {
        let size = data.len() as u64;
        let total: u64 = self.waiting.values().map(|o| o.size).sum();
        let (theirs, their_count) = self
            .waiting
            .values()
            .filter(|o| o.from == *file.from)
            .fold((0u64, 0usize), |(bytes, n), o| (bytes + o.size, n + 1));
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
        if self.waiting.len() >= MAX_OFFERS {
            return Err(format!(
                "{MAX_OFFERS} files are already waiting for @accept or @reject (see @files)"
            ));
        }
        if total + size > MAX_OFFERED_BYTES {
            return Err(format!(
                "files waiting for @accept or @reject take {} of the {} allowed (see @files)",
                mib(total),
                mib(MAX_OFFERED_BYTES)
            ));
        }
        if their_count >= MAX_OFFERS_PER_SENDER {
            return Err(format!(
                "{MAX_OFFERS_PER_SENDER} files from {} are already waiting for @accept or \
                 @reject (see @files)",
                file.from
            ));
        }
        if theirs + size > MAX_OFFERED_BYTES_PER_SENDER {
            return Err(format!(
                "files from {} waiting for @accept or @reject take {} of the {} one sender \
                 may have waiting (see @files)",
                file.from,
                mib(theirs),
                mib(MAX_OFFERED_BYTES_PER_SENDER)
            ));
        }
        let offer = Offer {
            id: self.next,
            room_id: file.room_id,
            seq: file.seq,
            ts: file.ts,
            from: file.from.clone(),
            group: file.group.clone(),
            name: file.name,
            size,
        };
        self.next += 1;
        self.waiting.insert(offer.id, offer.clone());
        Ok(OfferRow { offer, data })
    }

    pub fn get(&self, id: u64) -> Option<&Offer> {
        self.waiting.get(&id)
    }

    /// Forgets an answered file.
    pub fn remove(&mut self, id: u64) -> Option<Offer> {
        self.waiting.remove(&id)
    }

    /// Every waiting file, oldest first.
    pub fn list(&self) -> Vec<Offer> {
        self.waiting.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received<'a>(from: &'a Username, group: &'a Option<GroupName>, seq: u64) -> Received<'a> {
        Received {
            room_id: 5,
            seq,
            ts: 0,
            from,
            group,
            name: format!("f{seq}"),
        }
    }

    #[test]
    fn waiting_files_are_bounded_in_number_in_bytes_and_per_sender() {
        let (alice, bob) = (
            Username::parse("alice").unwrap(),
            Username::parse("bob").unwrap(),
        );
        let mut offers = Offers::from_loaded(Vec::new(), 1);
        let mb = |n: u64| Zeroizing::new(vec![0u8; (n * 1024 * 1024) as usize]);
        // One sender: 25 MiB.
        assert!(offers.add(received(&alice, &None, 1), mb(20)).is_ok());
        let refused = offers.add(received(&alice, &None, 2), mb(6)).unwrap_err();
        assert!(refused.contains("from alice"), "{refused}");
        // Everyone: 100 MiB.
        let names: Vec<Username> = (0..5)
            .map(|n| Username::parse(&format!("user{n}")).unwrap())
            .collect();
        for (n, name) in names.iter().enumerate() {
            let result = offers.add(received(name, &None, 10 + n as u64), mb(20));
            assert_eq!(result.is_ok(), n < 4, "{n}: {:?}", result.err());
        }
        // Answering makes room; ids are never reused.
        let first = offers.list()[0].id;
        offers.remove(first);
        let row = offers.add(received(&bob, &None, 30), mb(1)).unwrap();
        assert_eq!(row.offer.id, 6);
        // And in number: per sender, and in all.
        let mut many = Offers::from_loaded(Vec::new(), 1);
        for seq in 0..MAX_OFFERS_PER_SENDER as u64 {
            many.add(received(&bob, &None, seq), Zeroizing::new(vec![1]))
                .unwrap();
        }
        let refused = many
            .add(received(&bob, &None, 99), Zeroizing::new(vec![1]))
            .unwrap_err();
        assert!(refused.contains("from bob"), "{refused}");
        let senders: Vec<Username> = (0..MAX_OFFERS)
            .map(|n| Username::parse(&format!("sender{n}")).unwrap())
            .collect();
        for (n, sender) in senders.iter().enumerate() {
            let result = many.add(
                received(sender, &None, 1000 + n as u64),
                Zeroizing::new(vec![1]),
            );
            assert_eq!(
                result.is_ok(),
                n + MAX_OFFERS_PER_SENDER < MAX_OFFERS,
                "{n}"
            );
        }
    }
}
