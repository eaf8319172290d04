//! Safety numbers: 60 digits two users compare out of band (read aloud, or
//! side by side) to be sure the keys their clients use are each other's.
//!
//! Each user's half is derived from their name and the Ed25519 keys of all
//! their devices; the two halves are ordered by name, so both users see the
//! same number. A new, removed or changed device key changes it.

use sha2::{Digest, Sha512};
use sotto_proto::Username;
use sotto_proto::e2e::PublicKey;

/// Hash iterations per half (as in Signal's numeric fingerprints): slows
/// down searching for a colliding key.
const ITERATIONS: usize = 5200;

/// The safety number of two users, as 12 groups of 5 digits.
pub fn safety_number(a: (&Username, &[PublicKey]), b: (&Username, &[PublicKey])) -> String {
    let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    let digits: String = [half(first.0, first.1), half(second.0, second.1)].concat();
    let groups: Vec<&str> = (0..digits.len())
        .step_by(5)
        .map(|i| &digits[i..i + 5])
        .collect();
    groups.join(" ")
}

/// 30 digits for one user.
fn half(user: &Username, keys: &[PublicKey]) -> String {
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    keys.dedup();
    let mut material = Vec::with_capacity(keys.len() * 32);
    for key in &keys {
        material.extend_from_slice(key);
    }
    let mut hash = Sha512::new()
        .chain_update(b"sotto safety number v1\0")
        .chain_update((user.as_str().len() as u32).to_be_bytes())
        .chain_update(user.as_str())
        .chain_update(&material)
        .finalize();
    for _ in 0..ITERATIONS {
        hash = Sha512::new()
            .chain_update(hash)
            .chain_update(&material)
            .finalize();
    }
    hash[..30]
        .chunks(5)
        .map(|chunk| {
            let n = chunk.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Username {
        Username::parse(name).unwrap()
    }

    #[test]
    fn both_sides_see_the_same_number() {
        let (alice, bob) = (user("alice"), user("bob"));
        let a = [[1; 32], [2; 32]];
        let b = [[3; 32]];
        let from_alice = safety_number((&alice, &a), (&bob, &b));
        let from_bob = safety_number((&bob, &b), (&alice, &a));
        assert_eq!(from_alice, from_bob);
        assert_eq!(from_alice.len(), 60 + 11);
        assert!(from_alice.chars().all(|c| c.is_ascii_digit() || c == ' '));
        // Device order does not matter.
        let a_reordered = [[2; 32], [1; 32]];
        assert_eq!(
            from_alice,
            safety_number((&alice, &a_reordered), (&bob, &b))
        );
    }

    #[test]
    fn any_key_change_changes_it() {
        let (alice, bob) = (user("alice"), user("bob"));
        let base = safety_number((&alice, &[[1; 32]]), (&bob, &[[3; 32]]));
        assert_ne!(
            base,
            safety_number((&alice, &[[9; 32]]), (&bob, &[[3; 32]]))
        );
        assert_ne!(
            base,
            safety_number((&alice, &[[1; 32]]), (&bob, &[[3; 32], [4; 32]]))
        );
        assert_ne!(
            base,
            safety_number((&user("carol"), &[[1; 32]]), (&bob, &[[3; 32]]))
        );
    }
}
