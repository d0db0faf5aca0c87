//! Block tokens: the signed, expiring permission the OM gives a client for one block, and that
//! datanodes check on every read and write.
//!
//! A token is `payload ‖ mac`, where `mac` = HMAC-SHA256(secret, payload) and the secret is the
//! SCM-generated key named in the payload. Payload (little-endian):
//!
//! | size | field |
//! |---|---|
//! | 1 | version (1) |
//! | 1 | access modes: bit 0 read, bit 1 write |
//! | 4 | secret key id |
//! | 8 | key object id (the OM's open or committed key this block belongs to; audit only) |
//! | 8 | container id |
//! | 8 | local id |
//! | 8 | max length: a write may not reach past it, a read asks for no more |
//! | 8 | expiry, ms since the Unix epoch |
//! | 2 | owner length n (≤ 256) |
//! | n | owner (UTF-8) |
//!
//! The datanode refuses a token whose key it does not know, whose expiry has passed, whose block
//! is not the one the call names, whose modes lack the call's, or whose max length the call
//! exceeds. The MAC is compared in constant time (`hmac`'s `verify_slice`), and before any
//! other field is trusted.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const TOKEN_VERSION: u8 = 1;
pub const MODE_READ: u8 = 1;
pub const MODE_WRITE: u8 = 2;
pub const MAC_BYTES: usize = 32;
pub const OWNER_BYTES_MAX: usize = 256;
const FIXED_BYTES: usize = 1 + 1 + 4 + 8 + 8 + 8 + 8 + 8 + 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFields {
    pub modes: u8,
    pub key_id: u32,
    pub object_id: u64,
    pub container_id: u64,
    pub local_id: u64,
    pub max_length: u64,
    pub expires_ms: u64,
    pub owner: String,
}

/// A block-token secret (from the SCM).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey {
    pub id: u32,
    pub secret: Vec<u8>,
    pub created_ms: u64,
    pub expires_ms: u64,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("SecretKey").field("id", &self.id).field("created_ms", &self.created_ms).field("expires_ms", &self.expires_ms).finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed block token: {0}")]
    Malformed(&'static str),
    #[error("block token signed with unknown secret key {0}")]
    UnknownKey(u32),
    #[error("block token signature does not verify")]
    BadSignature,
    #[error("block token expired at {expired_ms} (now {now_ms})")]
    Expired { expired_ms: u64, now_ms: u64 },
    #[error("block token is for block {token_block:?}, not {asked:?}")]
    WrongBlock { token_block: (u64, u64), asked: (u64, u64) },
    #[error("block token does not allow {0}")]
    WrongMode(&'static str),
    #[error("block token allows {max} bytes, the call reaches {asked}")]
    TooLong { max: u64, asked: u64 },
}

fn mac_of(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length")
}

/// The secret keys of an SCM `heartbeat` or `clusterMap` reply (the datanode and the OM learn
/// them this way; the SCM makes and rotates them).
pub fn secret_keys(list: capnp::struct_list::Reader<'_, stratos_schema::scm_capnp::secret_key::Owned>) -> capnp::Result<Vec<SecretKey>> {
    list.iter().map(|k| Ok(SecretKey { id: k.get_id(), secret: k.get_secret()?.to_vec(), created_ms: k.get_created_ms(), expires_ms: k.get_expires_ms() })).collect()
}

/// Signs `fields` with `key` (whose id must be `fields.key_id`).
pub fn sign(fields: &TokenFields, key: &SecretKey) -> Vec<u8> {
    debug_assert_eq!(fields.key_id, key.id);
    let owner = fields.owner.as_bytes();
    let owner = &owner[..owner.len().min(OWNER_BYTES_MAX)];
    let mut out = Vec::with_capacity(FIXED_BYTES + owner.len() + MAC_BYTES);
    out.push(TOKEN_VERSION);
    out.push(fields.modes);
    out.extend_from_slice(&fields.key_id.to_le_bytes());
    for v in [fields.object_id, fields.container_id, fields.local_id, fields.max_length, fields.expires_ms] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(owner.len() as u16).to_le_bytes());
    out.extend_from_slice(owner);
    let mut mac = mac_of(&key.secret);
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    out
}

/// The key id a token names, so the verifier can look the key up (or fetch it).
pub fn key_id_of(token: &[u8]) -> Result<u32, TokenError> {
    if token.len() < FIXED_BYTES + MAC_BYTES {
        return Err(TokenError::Malformed("too short"));
    }
    Ok(u32::from_le_bytes(token[2..6].try_into().expect("4 bytes")))
}

/// Checks a token for an access of `mode` to bytes `..end` of block `(container, local)` at
/// `now_ms`, with `key` (the secret the token names; the caller looks it up by [`key_id_of`]).
pub fn verify(token: &[u8], key: &SecretKey, block: (u64, u64), mode: u8, end: u64, now_ms: u64) -> Result<TokenFields, TokenError> {
    if token.len() < FIXED_BYTES + MAC_BYTES {
        return Err(TokenError::Malformed("too short"));
    }
    let (payload, tag) = token.split_at(token.len() - MAC_BYTES);
    if key_id_of(token)? != key.id {
        return Err(TokenError::UnknownKey(key_id_of(token)?));
    }
    let mut mac = mac_of(&key.secret);
    mac.update(payload);
    mac.verify_slice(tag).map_err(|_| TokenError::BadSignature)?;
    // Signed by the key's holder: the fields are what an OM wrote.
    if payload[0] != TOKEN_VERSION {
        return Err(TokenError::Malformed("unknown version"));
    }
    let u64_at = |at: usize| u64::from_le_bytes(payload[at..at + 8].try_into().expect("8 bytes"));
    let owner_len = u16::from_le_bytes(payload[FIXED_BYTES - 2..FIXED_BYTES].try_into().expect("2 bytes")) as usize;
    if payload.len() != FIXED_BYTES + owner_len {
        return Err(TokenError::Malformed("owner length"));
    }
    let fields = TokenFields {
        modes: payload[1],
        key_id: key.id,
        object_id: u64_at(6),
        container_id: u64_at(14),
        local_id: u64_at(22),
        max_length: u64_at(30),
        expires_ms: u64_at(38),
        owner: String::from_utf8_lossy(&payload[FIXED_BYTES..]).into_owned(),
    };
    if now_ms >= fields.expires_ms || now_ms >= key.expires_ms {
        return Err(TokenError::Expired { expired_ms: fields.expires_ms.min(key.expires_ms), now_ms });
    }
    if (fields.container_id, fields.local_id) != block {
        return Err(TokenError::WrongBlock { token_block: (fields.container_id, fields.local_id), asked: block });
    }
    if fields.modes & mode != mode {
        return Err(TokenError::WrongMode(if mode == MODE_WRITE { "writing" } else { "reading" }));
    }
    if end > fields.max_length {
        return Err(TokenError::TooLong { max: fields.max_length, asked: end });
    }
    Ok(fields)
}

/// For the fuzz target (`server/fuzz`, `block_token`) and its property test: any bytes as a
/// token must be refused or be exactly the token that signing its own fields gives (so no
/// other byte string passes for a signed token). Panics only if that fails.
pub fn fuzz_token(data: &[u8]) {
    let key = SecretKey { id: u32::from_le_bytes(data.get(2..6).and_then(|b| b.try_into().ok()).unwrap_or([0; 4])), secret: vec![7; 32], created_ms: 0, expires_ms: u64::MAX };
    let _ = key_id_of(data);
    for mode in [MODE_READ, MODE_WRITE] {
        if let Ok(fields) = verify(data, &key, (1, 2), mode, 0, 1) {
            assert_eq!(sign(&fields, &key), data, "a token that verifies is not what its fields sign to");
        }
    }
}

/// The retry identity of an authenticated caller's client: the client's own id mixed with the
/// user a certificate names (SHA-256, first 8 bytes), so that one user cannot name another's
/// retry session and be answered that user's remembered outcomes (block tokens included). 0
/// (no retry identity) stays 0.
pub fn principal_client_id(user: &str, client_id: u64) -> u64 {
    use sha2::Digest;
    if client_id == 0 {
        return 0;
    }
    let mut h = Sha256::new();
    h.update(user.as_bytes());
    h.update([0u8]);
    h.update(client_id.to_le_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("32 bytes")).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_identities_are_per_user() {
        let (a, b) = (principal_client_id("alice", 42), principal_client_id("bob", 42));
        assert_ne!(a, b, "bob naming alice's client id gets another session");
        assert_eq!(a, principal_client_id("alice", 42), "the same on every node and every call");
        assert_ne!(principal_client_id("alice", 43), a);
        assert_eq!(principal_client_id("alice", 0), 0, "no retry identity stays none");
    }

    fn key(id: u32) -> SecretKey {
        SecretKey { id, secret: vec![id as u8; 32], created_ms: 0, expires_ms: 10_000 }
    }

    fn fields() -> TokenFields {
        TokenFields { modes: MODE_WRITE, key_id: 7, object_id: 1, container_id: 2, local_id: 3, max_length: 100, expires_ms: 5_000, owner: "alice".into() }
    }

    #[test]
    fn a_signed_token_verifies_and_every_attack_is_refused() {
        let k = key(7);
        let t = sign(&fields(), &k);
        assert_eq!(verify(&t, &k, (2, 3), MODE_WRITE, 100, 1_000), Ok(fields()));
        assert_eq!(verify(&t, &k, (2, 3), MODE_WRITE, 101, 1_000), Err(TokenError::TooLong { max: 100, asked: 101 }));
        assert!(matches!(verify(&t, &k, (2, 4), MODE_WRITE, 1, 1_000), Err(TokenError::WrongBlock { .. })));
        assert!(matches!(verify(&t, &k, (2, 3), MODE_READ, 1, 1_000), Err(TokenError::WrongMode(_))));
        assert!(matches!(verify(&t, &k, (2, 3), MODE_WRITE, 1, 5_000), Err(TokenError::Expired { .. })));
        assert!(matches!(verify(&t, &key(8), (2, 3), MODE_WRITE, 1, 1_000), Err(TokenError::UnknownKey(7))));
        let other = SecretKey { secret: vec![9; 32], ..key(7) };
        assert_eq!(verify(&t, &other, (2, 3), MODE_WRITE, 1, 1_000), Err(TokenError::BadSignature));
        assert!(matches!(verify(&t[..10], &k, (2, 3), MODE_WRITE, 1, 1_000), Err(TokenError::Malformed(_))));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_refused_or_exactly_a_signed_token(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), cut in 0usize..200) {
            fuzz_token(&data);
            // A genuine token (signed with the fuzz key), cut or extended, is refused.
            let k = SecretKey { id: 7, secret: vec![7; 32], created_ms: 0, expires_ms: u64::MAX };
            let f = TokenFields { container_id: 1, local_id: 2, expires_ms: 10, ..fields() };
            let t = sign(&f, &k);
            fuzz_token(&t);
            let mut longer = t.clone();
            longer.extend_from_slice(&data);
            fuzz_token(&t[..cut.min(t.len())]);
            fuzz_token(&longer);
        }
    }

    #[test]
    fn flipping_any_bit_breaks_the_token() {
        let k = key(7);
        let t = sign(&fields(), &k);
        for i in 0..t.len() * 8 {
            let mut bad = t.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(verify(&bad, &k, (2, 3), MODE_WRITE, 1, 1_000).is_err(), "bit {i} flipped still verifies");
        }
    }
}
