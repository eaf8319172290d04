//! Argon2id password hashes of accounts made before logins used OPAQUE:
//! checked once, at the login that moves the account over.
//!
//! Passwords are hashed with Argon2id at OWASP's recommended cost (19 MiB,
//! 2 iterations, 1 lane) on [`MAX_CONCURRENT_HASHES`] dedicated threads,
//! each reusing one 19 MiB work area, so a login storm neither stalls the
//! async runtime nor grows memory: allocating a fresh work area per hash on
//! tokio's blocking pool left hundreds of megabytes in the allocator's
//! per-thread arenas.

use std::sync::{Arc, Mutex, mpsc};

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use zeroize::Zeroizing;

/// Password hashes computed at once: one per hashing thread.
pub const MAX_CONCURRENT_HASHES: usize = 4;

/// Highest memory cost accepted in a stored hash (KiB), so a corrupted or
/// hostile hash cannot make a thread allocate gigabytes.
const MAX_STORED_M_COST: u32 = 256 * 1024;

/// The cost new hashes are made with.
fn params() -> Params {
    // Invariant: these are valid parameters (OWASP's); `Params::DEFAULT` is
    // the same values, used only if the constructor ever rejected them.
    Params::new(19 * 1024, 2, 1, Some(32)).unwrap_or(Params::DEFAULT)
}

/// Work for a hashing thread.
enum Job {
    Hash {
        password: Zeroizing<String>,
        reply: oneshot::Sender<anyhow::Result<String>>,
    },
    Verify {
        password: Zeroizing<String>,
        hash: String,
        reply: oneshot::Sender<anyhow::Result<bool>>,
    },
}

/// Hashes passwords on dedicated threads.
#[derive(Debug, Clone)]
pub struct Hasher {
    /// Queue of the hashing threads; they stop when every `Hasher` is gone.
    jobs: mpsc::SyncSender<Job>,
}

impl Default for Hasher {
    fn default() -> Self {
        let (jobs, rx) = mpsc::sync_channel::<Job>(1024);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..MAX_CONCURRENT_HASHES {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("sotto-hash-{i}"))
                .spawn(move || hash_worker(&rx));
            if let Err(e) = spawned {
                tracing::error!("cannot start a hashing thread: {e}");
            }
        }
        Self { jobs }
    }
}

/// Takes jobs until the queue closes, reusing one work area.
fn hash_worker(rx: &Mutex<mpsc::Receiver<Job>>) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        // The lock is held only while waiting for the next job.
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(Job::Hash { password, reply }) => {
                let _ = reply.send(hash_with(&mut memory, &password));
            }
            Ok(Job::Verify {
                password,
                hash,
                reply,
            }) => {
                let _ = reply.send(verify_with(&mut memory, &password, &hash));
            }
            Err(_) => return,
        }
    }
}

/// Computes Argon2id into `out`, growing `memory` only when needed.
fn compute(
    memory: &mut Vec<Block>,
    params: Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> anyhow::Result<()> {
    if params.m_cost() > MAX_STORED_M_COST {
        anyhow::bail!(
            "hash memory cost {} KiB is above the limit",
            params.m_cost()
        );
    }
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into_with_memory(
            password,
            salt,
            out,
            memory.get_mut(..blocks).unwrap_or_default(),
        )
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}

fn hash_with(memory: &mut Vec<Block>, password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt
        .as_salt()
        .decode_b64(&mut salt_bytes)
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let params = params();
    let mut out = Zeroizing::new([0u8; 32]);
    compute(
        memory,
        params.clone(),
        password.as_bytes(),
        salt_raw,
        out.as_mut(),
    )?;
    let hash = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: (&params)
            .try_into()
            .map_err(|e| anyhow::anyhow!("params: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(out.as_ref()).map_err(|e| anyhow::anyhow!("output: {e}"))?),
    };
    Ok(hash.to_string())
}

fn verify_with(memory: &mut Vec<Block>, password: &str, stored: &str) -> anyhow::Result<bool> {
    let parsed =
        PasswordHash::new(stored).map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?;
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        anyhow::bail!("stored hash is not Argon2id");
    }
    let params =
        Params::try_from(&parsed).map_err(|e| anyhow::anyhow!("stored hash parameters: {e}"))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        anyhow::bail!("stored hash has no salt or output");
    };
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    compute(memory, params, password.as_bytes(), salt_raw, &mut out)?;
    Ok(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
}

impl Hasher {
    async fn run<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<anyhow::Result<T>>) -> Job,
    ) -> anyhow::Result<T> {
        let (reply, rx) = oneshot::channel();
        let jobs = self.jobs.clone();
        let job = job(reply);
        // `send` blocks only while 1024 jobs are queued; do that off the runtime.
        tokio::task::spawn_blocking(move || jobs.send(job))
            .await?
            .map_err(|_| anyhow::anyhow!("the hashing threads have stopped"))?;
        rx.await?
    }

    /// Hashes `password` into a PHC string.
    pub async fn hash(&self, password: Zeroizing<String>) -> anyhow::Result<String> {
        self.run(|reply| Job::Hash { password, reply }).await
    }

    /// Checks `password` against a stored PHC string.
    pub async fn verify(&self, password: Zeroizing<String>, hash: String) -> anyhow::Result<bool> {
        self.run(|reply| Job::Verify {
            password,
            hash,
            reply,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify() {
        let hasher = Hasher::default();
        let hash = hasher.hash(Zeroizing::new("pw".into())).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            hasher
                .verify(Zeroizing::new("pw".into()), hash.clone())
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(Zeroizing::new("px".into()), hash)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn hashes_match_the_reference_implementation() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let ours = Hasher::default()
            .hash(Zeroizing::new("pw".into()))
            .await
            .unwrap();
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        assert!(
            reference
                .verify_password(b"pw", &PasswordHash::new(&ours).unwrap())
                .is_ok()
        );
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let theirs = reference.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(
            Hasher::default()
                .verify(Zeroizing::new("pw".into()), theirs)
                .await
                .unwrap()
        );
    }
}
