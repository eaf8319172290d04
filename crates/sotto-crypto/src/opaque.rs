//! Password login without the server learning the password: OPAQUE
//! (RFC 9807) with ristretto255, triple Diffie-Hellman and SHA-512, through
//! the `opaque-ke` crate.
//!
//! Registration leaves the server a *record* (the client's public key and
//! an envelope only the password opens). A login proves knowledge of the
//! password against that record and agrees on a key; the server learns
//! neither the password nor anything it could test guesses against
//! without running the protocol with its secret OPRF key. The client
//! stretches the password with Argon2id before it leaves the OPRF, so even
//! an operator who has the database and that key pays an Argon2id per
//! guess.
//!
//! Both halves are here, sans-IO: the messages are bytes for the wire. The
//! user's name and the server's id are bound into every login, so a record
//! cannot be replayed under another name or on another server.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use opaque_ke::ciphersuite::CipherSuite;
use opaque_ke::errors::{InternalError, ProtocolError};
use opaque_ke::generic_array::{ArrayLength, GenericArray};
use opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialFinalization, CredentialRequest,
    CredentialResponse, Identifiers, RegistrationRequest, RegistrationResponse, RegistrationUpload,
    ServerLogin, ServerLoginParameters, ServerRegistration, ServerSetup,
};
use rand::rngs::OsRng;
use zeroize::Zeroizing;

/// Longest OPAQUE message either side accepts (the largest, a server's
/// setup, is 128 bytes; a registration upload 192).
pub const MAX_MESSAGE_LEN: usize = 1024;

/// Bound into every login: another protocol's OPAQUE run cannot be passed
/// off as a Sotto login.
const CONTEXT: &[u8] = b"sotto login v1";

/// Salt of the client's Argon2id stretch. The input is already unique per
/// user and server (it is the output of the server's OPRF on the password,
/// keyed per user), so a constant salt loses nothing.
const STRETCH_SALT: &[u8] = b"sotto opaque ksf";

/// The suite: ristretto255 for the OPRF and the key exchange, SHA-512,
/// and [`Stretch`] as the key stretching function.
#[derive(Debug, Clone, Copy)]
pub struct Suite;

impl CipherSuite for Suite {
    type OprfCs = opaque_ke::Ristretto255;
    type KeyExchange = opaque_ke::TripleDh<opaque_ke::Ristretto255, sha2::Sha512>;
    type Ksf = Stretch;
}

/// How the client stretches the password inside OPAQUE. The server never
/// sees it (it cannot check it either): registration and every login of an
/// account must use the same one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stretch {
    /// Argon2id at OWASP's cost (19 MiB, 2 passes, 1 lane).
    #[default]
    Argon2id,
    /// No stretching. For load generators only, whose accounts are
    /// throwaway: it makes offline guessing cheap for whoever holds the
    /// server's database and OPRF key. Never used by the client library.
    NoneForBenchmarks,
}

impl opaque_ke::ksf::Ksf for Stretch {
    fn hash<L: ArrayLength<u8>>(
        &self,
        input: GenericArray<u8, L>,
    ) -> Result<GenericArray<u8, L>, InternalError> {
        match self {
            Stretch::NoneForBenchmarks => Ok(input),
            Stretch::Argon2id => {
                let params = Params::new(19 * 1024, 2, 1, Some(L::USIZE))
                    .map_err(|_| InternalError::KsfError)?;
                let mut output = GenericArray::default();
                Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                    .hash_password_into(&input, STRETCH_SALT, &mut output)
                    .map_err(|_| InternalError::KsfError)?;
                Ok(output)
            }
        }
    }
}

/// Why an OPAQUE step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpaqueError {
    /// A message from the peer does not parse (wrong length, not a group
    /// element, over [`MAX_MESSAGE_LEN`]).
    #[error("malformed OPAQUE message")]
    Malformed,
    /// The password is wrong, or the account does not exist, or the
    /// peer's messages do not belong to this run (they cannot be told
    /// apart, by design).
    #[error("wrong name or password")]
    WrongPassword,
    /// A stored record or setup is damaged.
    #[error("damaged OPAQUE record")]
    Damaged,
}

fn protocol(e: ProtocolError) -> OpaqueError {
    match e {
        ProtocolError::SerializationError => OpaqueError::Malformed,
        ProtocolError::InvalidLoginError | ProtocolError::ReflectedValueError => {
            OpaqueError::WrongPassword
        }
        // An identity element and the like: a hostile peer's message.
        _ => OpaqueError::Malformed,
    }
}

fn bounded(message: &[u8]) -> Result<&[u8], OpaqueError> {
    if message.len() > MAX_MESSAGE_LEN {
        Err(OpaqueError::Malformed)
    } else {
        Ok(message)
    }
}

fn identifiers<'a>(user: &'a str, server: &'a [u8]) -> Identifiers<'a> {
    Identifiers {
        client: Some(user.as_bytes()),
        server: Some(server),
    }
}

// --- Server ---

/// The server's OPAQUE secrets: the OPRF seed and its key-exchange key
/// pair. Made once, kept in the server's database; losing them makes
/// every account's record useless.
pub struct ServerKeys(ServerSetup<Suite>);

impl fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerKeys(<redacted>)")
    }
}

impl ServerKeys {
    /// New random keys.
    pub fn generate() -> Self {
        Self(ServerSetup::new(&mut OsRng))
    }

    /// The bytes to store.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.serialize().to_vec())
    }

    /// Keys stored with [`ServerKeys::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OpaqueError> {
        ServerSetup::deserialize(bytes)
            .map(Self)
            .map_err(|_| OpaqueError::Damaged)
    }
}

/// A registration record, as the server stores it for an account.
#[derive(Clone, PartialEq, Eq)]
pub struct Record(Vec<u8>);

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Record({} bytes)", self.0.len())
    }
}

impl Record {
    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A stored record, checked.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OpaqueError> {
        ServerRegistration::<Suite>::deserialize(bytes).map_err(|_| OpaqueError::Damaged)?;
        Ok(Self(bytes.to_vec()))
    }
}

/// Answers a client's registration request for `user`.
pub fn server_register_start(
    keys: &ServerKeys,
    request: &[u8],
    user: &str,
) -> Result<Vec<u8>, OpaqueError> {
    let request = RegistrationRequest::<Suite>::deserialize(bounded(request)?).map_err(protocol)?;
    let started = ServerRegistration::start(&keys.0, request, user.as_bytes()).map_err(protocol)?;
    Ok(started.message.serialize().to_vec())
}

/// The record from a client's registration upload.
pub fn server_register_finish(upload: &[u8]) -> Result<Record, OpaqueError> {
    let upload = RegistrationUpload::<Suite>::deserialize(bounded(upload)?).map_err(protocol)?;
    Ok(Record(
        ServerRegistration::finish(upload).serialize().to_vec(),
    ))
}

/// A login the server has answered and waits to see finished.
pub struct ServerLoginState {
    state: ServerLogin<Suite>,
    user: String,
    server: Vec<u8>,
}

impl fmt::Debug for ServerLoginState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerLoginState({})", self.user)
    }
}

/// Answers a client's first login message for `user`, whose record is
/// `record` (`None` for a name without one: the answer looks the same and
/// costs the same, and the login fails at the end).
pub fn server_login_start(
    keys: &ServerKeys,
    record: Option<&Record>,
    request: &[u8],
    user: &str,
    server_id: &[u8],
) -> Result<(ServerLoginState, Vec<u8>), OpaqueError> {
    let request = CredentialRequest::<Suite>::deserialize(bounded(request)?).map_err(protocol)?;
    let record = record
        .map(|r| ServerRegistration::<Suite>::deserialize(&r.0))
        .transpose()
        .map_err(|_| OpaqueError::Damaged)?;
    let started = ServerLogin::start(
        &mut OsRng,
        &keys.0,
        record,
        request,
        user.as_bytes(),
        ServerLoginParameters {
            context: Some(CONTEXT),
            identifiers: identifiers(user, server_id),
        },
    )
    .map_err(protocol)?;
    Ok((
        ServerLoginState {
            state: started.state,
            user: user.to_owned(),
            server: server_id.to_vec(),
        },
        started.message.serialize().to_vec(),
    ))
}

impl ServerLoginState {
    /// Checks the client's last message: `Ok` only if it knew the password.
    pub fn finish(self, finalization: &[u8]) -> Result<(), OpaqueError> {
        let finalization = CredentialFinalization::<Suite>::deserialize(bounded(finalization)?)
            .map_err(protocol)?;
        self.state
            .finish(
                finalization,
                ServerLoginParameters {
                    context: Some(CONTEXT),
                    identifiers: identifiers(&self.user, &self.server),
                },
            )
            .map(|_| ())
            .map_err(|_| OpaqueError::WrongPassword)
    }
}

// --- Client ---

/// A registration the client has started.
pub struct ClientRegistrationState(ClientRegistration<Suite>);

impl fmt::Debug for ClientRegistrationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientRegistrationState(<redacted>)")
    }
}

/// Starts registering `password`: the state to keep and the request.
pub fn client_register_start(
    password: &str,
) -> Result<(ClientRegistrationState, Vec<u8>), OpaqueError> {
    let started =
        ClientRegistration::<Suite>::start(&mut OsRng, password.as_bytes()).map_err(protocol)?;
    Ok((
        ClientRegistrationState(started.state),
        started.message.serialize().to_vec(),
    ))
}

impl ClientRegistrationState {
    /// The upload that finishes registering `password` for `user` on the
    /// server `server_id`, from the server's response.
    pub fn finish(
        self,
        password: &str,
        response: &[u8],
        user: &str,
        server_id: &[u8],
        stretch: Stretch,
    ) -> Result<Vec<u8>, OpaqueError> {
        let response =
            RegistrationResponse::<Suite>::deserialize(bounded(response)?).map_err(protocol)?;
        let finished = self
            .0
            .finish(
                &mut OsRng,
                password.as_bytes(),
                response,
                ClientRegistrationFinishParameters::new(
                    identifiers(user, server_id),
                    Some(&stretch),
                ),
            )
            .map_err(protocol)?;
        Ok(finished.message.serialize().to_vec())
    }
}

/// A login the client has started.
pub struct ClientLoginState(ClientLogin<Suite>);

impl fmt::Debug for ClientLoginState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientLoginState(<redacted>)")
    }
}

/// Starts logging in with `password`: the state to keep and the request.
pub fn client_login_start(password: &str) -> Result<(ClientLoginState, Vec<u8>), OpaqueError> {
    let started = ClientLogin::<Suite>::start(&mut OsRng, password.as_bytes()).map_err(protocol)?;
    Ok((
        ClientLoginState(started.state),
        started.message.serialize().to_vec(),
    ))
}

impl ClientLoginState {
    /// The last login message, from the server's response; fails with
    /// [`OpaqueError::WrongPassword`] if the password (or the name) is
    /// wrong, or the response comes from another server.
    pub fn finish(
        self,
        password: &str,
        response: &[u8],
        user: &str,
        server_id: &[u8],
        stretch: Stretch,
    ) -> Result<Vec<u8>, OpaqueError> {
        let response =
            CredentialResponse::<Suite>::deserialize(bounded(response)?).map_err(protocol)?;
        let finished = self
            .0
            .finish(
                &mut OsRng,
                password.as_bytes(),
                response,
                ClientLoginFinishParameters::new(
                    Some(CONTEXT),
                    identifiers(user, server_id),
                    Some(&stretch),
                ),
            )
            .map_err(protocol)?;
        Ok(finished.message.serialize().to_vec())
    }
}

#[cfg(test)]
mod tests;
