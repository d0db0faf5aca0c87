//! Server-side encryption: the gateway encrypts object bytes before they reach a datanode and
//! decrypts them as they are read, so datanode disks and the links to them never hold an
//! encrypted object's bytes in clear.
//!
//! - **SSE-C** (`x-amz-server-side-encryption-customer-*`): the client sends its AES-256 key
//!   with every request; the gateway keeps only the key's MD5 (to tell a wrong key, as S3
//!   does), never the key. HTTPS only.
//! - **SSE-S3** (`x-amz-server-side-encryption: AES256`) and **SSE-KMS** (`aws:kms` with a
//!   key id): envelope encryption. Each object gets a fresh random 256-bit data key, stored
//!   wrapped (AES-256-GCM) by a master key from the gateway's keyring (`--sse-keyring`): the
//!   key named by `--sse-s3-key` for SSE-S3, the key the request names for SSE-KMS. The
//!   keyring plays the part of a KMS (as ceph's RGW does with its static keys); every gateway
//!   of a cluster is given the same file.
//!
//! **How bytes are encrypted.** AES-256 in counter mode, one key stream per block: the
//! counter block starts at SHA-256(salt ‖ container id ‖ local id)[..12] ‖ 0u32, where the
//! salt is random per object (or upload). Counter mode keeps lengths (ranges, sizes and
//! Content-Length are those of the plain bytes) and decrypts from any offset (a ranged GET
//! reads only what it sends). A block id is never reused, so no two writes share a key
//! stream; a block holds at most 2^32 AES blocks (64 GiB), checked. Counter mode does not
//! authenticate: integrity is the datanodes' checksums' job, as for plain objects.
//!
//! The ETag stays the MD5 of the plain bytes whatever the encryption (AWS's SSE-C and SSE-KMS
//! ETags are not, but clients compare a part's ETag across retries of its upload, which a
//! digest of fresh ciphertext would break): who can list a bucket learns its objects' MD5s.
//!
//! The object's metadata says how it is sealed, under names no client can set or read (they
//! are not `x-amz-meta-*` headers): [`ALGORITHM`], [`SALT`], [`KEY_ID`], [`WRAPPED`],
//! [`CUSTOMER_KEY_MD5`].

use std::collections::BTreeMap;
use std::path::Path;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;
use ctr::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use sha2::{Digest, Sha256};

use crate::error::S3Error;
use crate::md5sum;

type Ctr = ctr::Ctr32BE<aes::Aes256>;

/// Metadata names of an object's sealing.
pub const ALGORITHM: &str = "sse:algorithm";
pub const SALT: &str = "sse:salt";
pub const KEY_ID: &str = "sse:key-id";
pub const WRAPPED: &str = "sse:wrapped-key";
pub const CUSTOMER_KEY_MD5: &str = "sse:customer-key-md5";
/// The prefix of them all (a copy never carries its source's).
pub const PREFIX: &str = "sse:";

/// The [`ALGORITHM`] of each kind.
const S3: &str = "AES256";
const KMS: &str = "aws:kms";
const CUSTOMER: &str = "customer";

/// The bytes a block may hold under one key stream: 2^32 AES blocks.
const STREAM_BYTES_MAX: u64 = 16 << 32;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()
}

/// The master keys of SSE-S3 and SSE-KMS.
#[derive(Clone)]
pub struct Keyring {
    keys: BTreeMap<String, [u8; 32]>,
    /// The key SSE-S3 uses.
    s3_key: String,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: key bytes never reach a log.
        f.debug_struct("Keyring").field("keys", &self.keys.keys().collect::<Vec<_>>()).field("s3_key", &self.s3_key).finish()
    }
}

impl Keyring {
    /// Reads a keyring file: one `NAME BASE64` per line (32 bytes of key), `#` comments. The
    /// file must not be readable by group or others (as ssh's keys).
    pub fn load(path: &Path, s3_key: &str) -> anyhow::Result<Keyring> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("the SSE keyring {}: {e}", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            anyhow::bail!("the SSE keyring {} is readable by others (mode {:o}): chmod 600 it", path.display(), meta.permissions().mode() & 0o777);
        }
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("the SSE keyring {}: {e}", path.display()))?;
        Keyring::parse(&text, s3_key).map_err(|e| anyhow::anyhow!("the SSE keyring {}: {e}", path.display()))
    }

    pub fn parse(text: &str, s3_key: &str) -> Result<Keyring, String> {
        let mut keys = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, key) = line.split_once(char::is_whitespace).ok_or_else(|| format!("line {}: not NAME BASE64-KEY", i + 1))?;
            if name.is_empty() || name.len() > 256 || !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("line {}: a key name is 1 to 256 visible ASCII characters", i + 1));
            }
            let key: [u8; 32] = unb64(key).and_then(|k| k.try_into().ok()).ok_or_else(|| format!("line {}: the key of {name} is not the base64 of 32 bytes", i + 1))?;
            if keys.insert(name.to_string(), key).is_some() {
                return Err(format!("line {}: the key {name} is given twice", i + 1));
            }
        }
        if !keys.contains_key(s3_key) {
            return Err(format!("no key named {s3_key} (the SSE-S3 key, --sse-s3-key)"));
        }
        Ok(Keyring { keys, s3_key: s3_key.to_string() })
    }

    /// A new keyring file's text: the SSE-S3 key, made at random.
    pub fn generate(s3_key: &str) -> String {
        format!("# Stratos S3 gateway master keys: NAME BASE64(32 bytes). Keep this file secret.\n{s3_key} {}\n", b64(&rand::random::<[u8; 32]>()))
    }
}

/// A customer's key (SSE-C), as a request gives it.
#[derive(Clone)]
pub struct CustomerKey {
    key: [u8; 32],
    /// The base64 MD5 of the key.
    md5: String,
}

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerKey").field("md5", &self.md5).finish_non_exhaustive()
    }
}

/// The encryption a write asks for.
#[derive(Debug, Clone)]
pub enum Ask {
    None,
    S3,
    Kms(String),
    Customer(CustomerKey),
}

/// The customer key in the headers `{prefix}server-side-encryption-customer-*` (prefix
/// `x-amz-` or `x-amz-copy-source-`), checked: AES256, 32 bytes, its MD5.
fn customer_key(header: &dyn Fn(&str) -> Option<String>, prefix: &str) -> Result<Option<CustomerKey>, S3Error> {
    let algorithm = header(&format!("{prefix}server-side-encryption-customer-algorithm"));
    let key = header(&format!("{prefix}server-side-encryption-customer-key"));
    let md5 = header(&format!("{prefix}server-side-encryption-customer-key-md5"));
    match (algorithm, key, md5) {
        (None, None, None) => Ok(None),
        (Some(a), Some(k), Some(m)) => {
            if a.trim() != "AES256" {
                return Err(S3Error::invalid_argument(format!("{prefix}server-side-encryption-customer-algorithm {a:?}: only AES256")));
            }
            let key: [u8; 32] = unb64(&k).and_then(|k| k.try_into().ok()).ok_or_else(|| S3Error::invalid_argument("the customer key is not the base64 of 32 bytes (AES-256)"))?;
            let actual = b64(&md5sum::digest(&key));
            if actual != m.trim() {
                return Err(S3Error::invalid_argument("the customer key's MD5 differs from x-amz-server-side-encryption-customer-key-MD5"));
            }
            Ok(Some(CustomerKey { key, md5: actual }))
        }
        _ => Err(S3Error::invalid_argument(format!(
            "SSE-C needs all three of {prefix}server-side-encryption-customer-algorithm, -key and -key-MD5"
        ))),
    }
}

/// What a write (PUT, copy destination, upload initiation) asks for. `https`: SSE-C keys are
/// taken over HTTPS only (S3's rule: the key would otherwise cross the network in clear).
pub fn asked(header: &dyn Fn(&str) -> Option<String>, https: bool) -> Result<Ask, S3Error> {
    let sse = header("x-amz-server-side-encryption");
    let kms_key = header("x-amz-server-side-encryption-aws-kms-key-id");
    let customer = customer_key(header, "x-amz-")?;
    if customer.is_some() && !https {
        return Err(S3Error::invalid_request("requests with a customer key (SSE-C) must be made over HTTPS"));
    }
    match (sse.as_deref().map(str::trim), kms_key, customer) {
        (None, None, None) => Ok(Ask::None),
        (None, None, Some(c)) => Ok(Ask::Customer(c)),
        (Some(_), _, Some(_)) => Err(S3Error::invalid_argument("x-amz-server-side-encryption and a customer key (SSE-C) together")),
        (None, Some(_), _) => Err(S3Error::invalid_argument("x-amz-server-side-encryption-aws-kms-key-id without x-amz-server-side-encryption: aws:kms")),
        (Some(S3), None, None) => Ok(Ask::S3),
        (Some(S3), Some(_), None) => Err(S3Error::invalid_argument("a KMS key id with x-amz-server-side-encryption: AES256 (SSE-S3 uses the gateway's key)")),
        (Some(KMS), Some(k), None) => Ok(Ask::Kms(k.trim().to_string())),
        (Some(KMS), None, None) => Err(S3Error::invalid_argument("x-amz-server-side-encryption: aws:kms needs x-amz-server-side-encryption-aws-kms-key-id (this gateway has no default KMS key)")),
        (Some(other), _, _) => Err(S3Error::invalid_argument(format!("x-amz-server-side-encryption {other:?}: AES256 or aws:kms"))),
    }
}

/// What a request that uses an existing object's (or upload's) encryption is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// GET, HEAD: SSE-S3 and SSE-KMS headers are refused on them, as S3 does.
    Read,
    /// A part upload or a completion: the upload's encryption applies; SSE-S3 and SSE-KMS
    /// headers repeating it are ignored.
    Upload,
    /// The source of a copy (`x-amz-copy-source-server-side-encryption-customer-*`).
    CopySource,
}

/// The customer key a request that uses an existing object's (or upload's) encryption gives.
pub fn read_key(header: &dyn Fn(&str) -> Option<String>, using: Use) -> Result<Option<CustomerKey>, S3Error> {
    match using {
        Use::CopySource => customer_key(header, "x-amz-copy-source-"),
        Use::Read if header("x-amz-server-side-encryption").is_some() || header("x-amz-server-side-encryption-aws-kms-key-id").is_some() => {
            Err(S3Error::invalid_argument("x-amz-server-side-encryption is for writes: a read of an encrypted object needs no header (but SSE-C's key)"))
        }
        Use::Read | Use::Upload => customer_key(header, "x-amz-"),
    }
}

/// A data key and salt: encrypts and decrypts an object's blocks.
#[derive(Clone)]
pub struct Cipher {
    key: [u8; 32],
    salt: [u8; 16],
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher")
    }
}

impl Cipher {
    /// Encrypts or decrypts (the same in counter mode) `data`, found at `offset` of block
    /// (`container`, `local`).
    pub fn apply(&self, container: u64, local: u64, offset: u64, data: &mut [u8]) -> Result<(), String> {
        if offset.saturating_add(data.len() as u64) > STREAM_BYTES_MAX {
            return Err(format!("block {container}/{local}: {} bytes at {offset} pass the {STREAM_BYTES_MAX} an encrypted block may hold", data.len()));
        }
        let mut h = Sha256::new();
        h.update(b"stratos-sse-block\0");
        h.update(self.salt);
        h.update(container.to_be_bytes());
        h.update(local.to_be_bytes());
        let mut iv = [0u8; 16];
        iv[..12].copy_from_slice(&h.finalize()[..12]);
        let mut c = Ctr::new(&self.key.into(), &iv.into());
        c.seek(offset);
        c.apply_keystream(data);
        Ok(())
    }
}

/// AES-256-GCM of a data key under master key `id`; the key id is bound in (a wrapped key
/// moved under another id does not open).
fn wrap(master: &[u8; 32], id: &str, data_key: &[u8; 32]) -> String {
    let nonce: [u8; 12] = rand::random();
    let sealed = Aes256Gcm::new(master.into()).encrypt(&nonce.into(), Payload { msg: data_key, aad: id.as_bytes() }).expect("AES-GCM encrypts 32 bytes");
    let mut out = nonce.to_vec();
    out.extend(sealed);
    b64(&out)
}

fn unwrap(master: &[u8; 32], id: &str, wrapped: &str) -> Option<[u8; 32]> {
    let w = unb64(wrapped)?;
    if w.len() < 12 {
        return None;
    }
    let (nonce, sealed) = w.split_at(12);
    let key = Aes256Gcm::new(master.into()).decrypt(nonce.into(), Payload { msg: sealed, aad: id.as_bytes() }).ok()?;
    key.try_into().ok()
}

fn meta<'a>(m: &'a [(String, String)], name: &str) -> Option<&'a str> {
    m.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// What sealing an object gives: the metadata to store with it and the cipher of its bytes.
pub type Sealed = (Vec<(String, String)>, Cipher);

/// Seals a new object (or upload) as `ask` says (None: stored in clear).
pub fn seal(ask: &Ask, ring: Option<&Keyring>) -> Result<Option<Sealed>, S3Error> {
    let salt: [u8; 16] = rand::random();
    let mut m = vec![(SALT.to_string(), b64(&salt))];
    let cipher = match ask {
        Ask::None => return Ok(None),
        Ask::Customer(c) => {
            m.push((ALGORITHM.into(), CUSTOMER.into()));
            m.push((CUSTOMER_KEY_MD5.into(), c.md5.clone()));
            Cipher { key: c.key, salt }
        }
        Ask::S3 | Ask::Kms(_) => {
            let ring = ring.ok_or_else(|| S3Error::not_implemented("server-side encryption with the gateway's keys (SSE-S3, SSE-KMS) without a keyring (start s3g with --sse-keyring)"))?;
            let (algorithm, id) = match ask {
                Ask::Kms(id) => (KMS, id.as_str()),
                _ => (S3, ring.s3_key.as_str()),
            };
            let master = ring.keys.get(id).ok_or_else(|| S3Error::new("KMS.NotFoundException", 400, format!("the KMS key {id} does not exist in the gateway's keyring")))?;
            let data_key: [u8; 32] = rand::random();
            m.push((ALGORITHM.into(), algorithm.into()));
            m.push((KEY_ID.into(), id.to_string()));
            m.push((WRAPPED.into(), wrap(master, id, &data_key)));
            Cipher { key: data_key, salt }
        }
    };
    Ok(Some((m, cipher)))
}

/// The cipher of an object (or upload) with `metadata`, with the customer key a read gave:
/// None for one stored in clear. An SSE-C object needs its key, and only it; any other
/// object refuses a customer key (S3's rules).
pub fn open(metadata: &[(String, String)], customer: Option<&CustomerKey>, ring: Option<&Keyring>) -> Result<Option<Cipher>, S3Error> {
    let Some(algorithm) = meta(metadata, ALGORITHM) else {
        return match customer {
            Some(_) => Err(S3Error::invalid_request("the object is not encrypted with a customer key (SSE-C): send no customer key")),
            None => Ok(None),
        };
    };
    let salt: [u8; 16] = meta(metadata, SALT).and_then(unb64).and_then(|s| s.try_into().ok()).ok_or_else(|| S3Error::internal("an encrypted object without its salt"))?;
    match algorithm {
        CUSTOMER => {
            let c = customer.ok_or_else(|| S3Error::invalid_request("the object is encrypted with a customer key (SSE-C): send it (x-amz-server-side-encryption-customer-*)"))?;
            if meta(metadata, CUSTOMER_KEY_MD5) != Some(c.md5.as_str()) {
                return Err(S3Error::invalid_request("the customer key differs from the one the object was encrypted with"));
            }
            Ok(Some(Cipher { key: c.key, salt }))
        }
        S3 | KMS => {
            if customer.is_some() {
                return Err(S3Error::invalid_request("the object is not encrypted with a customer key (SSE-C): send no customer key"));
            }
            let ring = ring.ok_or_else(|| S3Error::internal("the object is encrypted with the gateway's keys, and this gateway has no keyring (--sse-keyring)"))?;
            let id = meta(metadata, KEY_ID).ok_or_else(|| S3Error::internal("an encrypted object without its key id"))?;
            let master = ring.keys.get(id).ok_or_else(|| S3Error::internal(format!("the object's master key {id} is not in this gateway's keyring")))?;
            let key = meta(metadata, WRAPPED).and_then(|w| unwrap(master, id, w)).ok_or_else(|| S3Error::internal(format!("the object's data key does not open with master key {id}")))?;
            Ok(Some(Cipher { key, salt }))
        }
        other => Err(S3Error::internal(format!("an object encrypted by an unknown method {other:?}"))),
    }
}

/// The response headers that tell how an object with `metadata` is encrypted.
pub fn headers(metadata: &[(String, String)]) -> Vec<(String, String)> {
    match meta(metadata, ALGORITHM) {
        Some(CUSTOMER) => vec![
            ("x-amz-server-side-encryption-customer-algorithm".into(), "AES256".into()),
            ("x-amz-server-side-encryption-customer-key-md5".into(), meta(metadata, CUSTOMER_KEY_MD5).unwrap_or_default().into()),
        ],
        Some(KMS) => vec![
            ("x-amz-server-side-encryption".into(), KMS.into()),
            ("x-amz-server-side-encryption-aws-kms-key-id".into(), meta(metadata, KEY_ID).unwrap_or_default().into()),
        ],
        Some(S3) => vec![("x-amz-server-side-encryption".into(), S3.into())],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let v: Vec<(String, String)> = pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        move |n| v.iter().find(|(k, _)| k == n).map(|(_, x)| x.clone())
    }

    // s3-tests' two customer keys.
    const KEY_A: (&str, &str) = ("pO3upElrwuEXSoFwCfnZPdSsmt/xWeFa0N9KgDijwVs=", "DWygnHRtgiJ77HCm+1rvHw==");
    const KEY_B: (&str, &str) = ("6b+WOZ1T3cqZMxgThRcXAQBrS5mXKdDUphvpxptl9/4=", "arxBvwY2V4SiOne6yppVPQ==");

    fn customer(k: (&str, &str)) -> CustomerKey {
        let hs = h(&[("x-amz-server-side-encryption-customer-algorithm", "AES256"), ("x-amz-server-side-encryption-customer-key", k.0), ("x-amz-server-side-encryption-customer-key-md5", k.1)]);
        match asked(&hs, true).unwrap() {
            Ask::Customer(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn ring() -> Keyring {
        Keyring::parse(&format!("# test\nsse-s3 {}\ntestkey-1 {}\n", b64(&[1; 32]), b64(&[2; 32])), "sse-s3").unwrap()
    }

    #[test]
    fn requests_are_checked() {
        let bad_md5 = h(&[("x-amz-server-side-encryption-customer-algorithm", "AES256"), ("x-amz-server-side-encryption-customer-key", KEY_A.0), ("x-amz-server-side-encryption-customer-key-md5", KEY_B.1)]);
        assert_eq!(asked(&bad_md5, true).unwrap_err().status, 400);
        let no_algorithm = h(&[("x-amz-server-side-encryption-customer-key", KEY_A.0), ("x-amz-server-side-encryption-customer-key-md5", KEY_A.1)]);
        assert_eq!(asked(&no_algorithm, true).unwrap_err().status, 400);
        let both = h(&[
            ("x-amz-server-side-encryption", "AES256"),
            ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
            ("x-amz-server-side-encryption-customer-key", KEY_A.0),
            ("x-amz-server-side-encryption-customer-key-md5", KEY_A.1),
        ]);
        assert_eq!(asked(&both, true).unwrap_err().code, "InvalidArgument");
        assert_eq!(asked(&h(&[("x-amz-server-side-encryption", "aes:kms")]), true).unwrap_err().code, "InvalidArgument");
        assert_eq!(asked(&h(&[("x-amz-server-side-encryption-aws-kms-key-id", "k")]), true).unwrap_err().status, 400);
        assert!(matches!(asked(&h(&[("x-amz-server-side-encryption", "aws:kms"), ("x-amz-server-side-encryption-aws-kms-key-id", "k")]), true).unwrap(), Ask::Kms(k) if k == "k"));
        let plain = h(&[("x-amz-server-side-encryption-customer-algorithm", "AES256"), ("x-amz-server-side-encryption-customer-key", KEY_A.0), ("x-amz-server-side-encryption-customer-key-md5", KEY_A.1)]);
        assert_eq!(asked(&plain, false).unwrap_err().code, "InvalidRequest");
        assert_eq!(read_key(&h(&[("x-amz-server-side-encryption", "aws:kms")]), Use::Read).unwrap_err().status, 400);
        assert!(read_key(&h(&[("x-amz-server-side-encryption", "aws:kms")]), Use::Upload).unwrap().is_none());
    }

    #[test]
    fn every_kind_round_trips_and_only_its_key_opens_it() {
        let r = ring();
        for ask in [Ask::Customer(customer(KEY_A)), Ask::S3, Ask::Kms("testkey-1".into())] {
            let (m, c) = seal(&ask, Some(&r)).unwrap().unwrap();
            let plain: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
            let mut data = plain.clone();
            c.apply(7, 9, 0, &mut data).unwrap();
            assert_ne!(data, plain);
            let key = matches!(ask, Ask::Customer(_)).then(|| customer(KEY_A));
            let o = open(&m, key.as_ref(), Some(&r)).unwrap().unwrap();
            // Any offset decrypts alone (ranged reads).
            let mut part = data[12_345..54_321].to_vec();
            o.apply(7, 9, 12_345, &mut part).unwrap();
            assert_eq!(part, plain[12_345..54_321]);
            // Another block's stream differs.
            let mut other = data.clone();
            o.apply(7, 10, 0, &mut other).unwrap();
            assert_ne!(other, plain);
            assert!(!headers(&m).is_empty());
        }
        let (m, _) = seal(&Ask::Customer(customer(KEY_A)), Some(&r)).unwrap().unwrap();
        assert_eq!(open(&m, Some(&customer(KEY_B)), Some(&r)).unwrap_err().status, 400);
        assert_eq!(open(&m, None, Some(&r)).unwrap_err().status, 400);
        let (m, _) = seal(&Ask::S3, Some(&r)).unwrap().unwrap();
        assert_eq!(open(&m, Some(&customer(KEY_A)), Some(&r)).unwrap_err().status, 400);
        assert_eq!(open(&[], Some(&customer(KEY_A)), Some(&r)).unwrap_err().status, 400);
        assert!(open(&[], None, None).unwrap().is_none());
        // A wrapped key moved to another key id does not open.
        let (mut m, _) = seal(&Ask::Kms("testkey-1".into()), Some(&r)).unwrap().unwrap();
        m.iter_mut().filter(|(k, _)| k == KEY_ID).for_each(|(_, v)| *v = "sse-s3".into());
        assert_eq!(open(&m, None, Some(&r)).unwrap_err().status, 500);
        assert_eq!(seal(&Ask::Kms("nope".into()), Some(&r)).unwrap_err().status, 400);
        assert_eq!(seal(&Ask::S3, None).unwrap_err().status, 501);
    }

    #[test]
    fn keyrings_are_checked() {
        assert!(Keyring::parse("sse-s3 AAAA\n", "sse-s3").is_err());
        assert!(Keyring::parse(&format!("other {}\n", b64(&[0; 32])), "sse-s3").is_err());
        assert!(Keyring::parse(&format!("a {0}\na {0}\nsse-s3 {0}\n", b64(&[0; 32])), "sse-s3").is_err());
        assert!(Keyring::parse(&Keyring::generate("sse-s3"), "sse-s3").is_ok());
        assert!(!format!("{:?}", ring()).contains(&b64(&[1; 32])));
    }

    #[test]
    fn streams_past_their_bound_are_refused() {
        let (_, c) = seal(&Ask::Customer(customer(KEY_A)), None).unwrap().unwrap();
        assert!(c.apply(1, 1, STREAM_BYTES_MAX - 1, &mut [0u8; 2]).is_err());
        assert!(c.apply(1, 1, STREAM_BYTES_MAX - 2, &mut [0u8; 2]).is_ok());
    }
}
