//! S3's additional checksums (`x-amz-checksum-crc32`, `-crc32c`, `-crc64nvme`, `-sha1`,
//! `-sha256`): the checksum a client sends with a body, in a header or (SDKs that stream, such as
//! boto3 since 1.36, by default) in an `aws-chunked` trailer named by `x-amz-trailer`. The
//! gateway computes it over the decoded bytes as they stream ([`crate::payload::Payload`]) and
//! fails the request with `BadDigest` before anything is committed when it differs; a PUT stores
//! it with the object, and a GET or HEAD of the whole object with `x-amz-checksum-mode: ENABLED`
//! returns it, so an SDK checks what it reads against what was written.
//!
//! Values are base64 of the digest; a CRC is its big-endian bytes (as S3 and the SDKs encode it).

use base64::Engine;
use sha1::Digest as _;

use crate::error::S3Error;

/// What the keys of an object's metadata that store its checksums start with.
pub const METADATA_PREFIX: &str = "checksum:";

/// A checksum algorithm S3 names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl Algorithm {
    pub const ALL: [Algorithm; 5] = [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64Nvme, Algorithm::Sha1, Algorithm::Sha256];

    /// S3's name (`x-amz-sdk-checksum-algorithm`, error messages).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "CRC32",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Crc64Nvme => "CRC64NVME",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
        }
    }

    /// The header (or trailer) that carries it.
    pub fn header(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "x-amz-checksum-crc32",
            Algorithm::Crc32c => "x-amz-checksum-crc32c",
            Algorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Algorithm::Sha1 => "x-amz-checksum-sha1",
            Algorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The key of the object's metadata that stores it.
    pub fn metadata_key(self) -> String {
        format!("{METADATA_PREFIX}{}", self.name().to_ascii_lowercase())
    }

    fn digest_bytes(self) -> usize {
        match self {
            Algorithm::Crc32 | Algorithm::Crc32c => 4,
            Algorithm::Crc64Nvme => 8,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
        }
    }

    pub fn by_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    fn by_header(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.header().eq_ignore_ascii_case(name.trim()))
    }

    /// A value as sent (base64 of exactly the digest's bytes), decoded. One that is not cannot
    /// match any body: `BadDigest`, as ceph's s3-tests expect of a checksum such as `bad`.
    pub fn decode(self, value: &str) -> Result<Vec<u8>, S3Error> {
        base64::engine::general_purpose::STANDARD.decode(value.trim()).ok().filter(|d| d.len() == self.digest_bytes()).ok_or_else(|| {
            S3Error::new("BadDigest", 400, format!("{} {value:?} is not the base64 of a {} ({} bytes), so it cannot match the body's", self.header(), self.name(), self.digest_bytes()))
        })
    }
}

/// The checksums stored in an object's metadata (under [`Algorithm::metadata_key`]), in one
/// pass over it.
pub fn stored(metadata: &[(String, String)]) -> impl Iterator<Item = (Algorithm, &str)> {
    metadata.iter().filter_map(|(k, v)| Some((Algorithm::by_name(k.strip_prefix(METADATA_PREFIX)?)?, v.as_str())))
}

/// A checksum being computed.
#[derive(Clone)]
pub struct Hasher {
    algorithm: Algorithm,
    state: State,
}

#[derive(Clone)]
enum State {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
    Crc64Nvme(crc64fast_nvme::Digest),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        let state = match algorithm {
            Algorithm::Crc32 => State::Crc32(crc32fast::Hasher::new()),
            Algorithm::Crc32c => State::Crc32c(0),
            Algorithm::Crc64Nvme => State::Crc64Nvme(crc64fast_nvme::Digest::new()),
            Algorithm::Sha1 => State::Sha1(sha1::Sha1::new()),
            Algorithm::Sha256 => State::Sha256(sha2::Sha256::new()),
        };
        Hasher { algorithm, state }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Crc32(h) => h.update(data),
            State::Crc32c(c) => *c = crc32c::crc32c_append(*c, data),
            State::Crc64Nvme(d) => d.write(data),
            State::Sha1(h) => h.update(data),
            State::Sha256(h) => h.update(data),
        }
    }

    pub fn finalize(self) -> Vec<u8> {
        match self.state {
            State::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
            State::Crc32c(c) => c.to_be_bytes().to_vec(),
            State::Crc64Nvme(d) => d.sum64().to_be_bytes().to_vec(),
            State::Sha1(h) => h.finalize().to_vec(),
            State::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// The base64 of a digest, as S3 sends checksums.
pub fn encode(digest: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// The checksum a request's body must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub algorithm: Algorithm,
    /// The value of its header; `None` when it comes in the body's trailer.
    pub value: Option<Vec<u8>>,
}

/// The checksum a request announces (`header` looks a header up, any case): one
/// `x-amz-checksum-*` header, or an `x-amz-trailer` naming one (`chunked`: the body is
/// `aws-chunked`, the only encoding with trailers). `x-amz-sdk-checksum-algorithm`, when sent,
/// must name the same algorithm. As S3 answers: two checksums, an unknown trailer or an
/// algorithm named without its checksum are `InvalidRequest`; a value that is not the digest's
/// base64 is `BadDigest` ([`Algorithm::decode`]).
pub fn requested(header: &dyn Fn(&str) -> Option<String>, chunked: bool) -> Result<Option<Wanted>, S3Error> {
    let mut in_headers = Algorithm::ALL.into_iter().filter_map(|a| header(a.header()).map(|v| (a, v)));
    let first = in_headers.next();
    if in_headers.next().is_some() {
        return Err(S3Error::invalid_request("Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."));
    }
    let trailer = match header("x-amz-trailer") {
        None => None,
        Some(t) => {
            let a = Algorithm::by_header(&t).ok_or_else(|| S3Error::invalid_request(format!("The value specified in the x-amz-trailer header is not supported: {t:?}")))?;
            if !chunked {
                return Err(S3Error::invalid_request("x-amz-trailer needs an aws-chunked body (the trailer comes after its last chunk)"));
            }
            Some(a)
        }
    };
    let wanted = match (first, trailer) {
        (Some(_), Some(_)) => return Err(S3Error::invalid_request("Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.")),
        (Some((a, v)), None) => Some(Wanted { algorithm: a, value: Some(a.decode(&v)?) }),
        (None, Some(a)) => Some(Wanted { algorithm: a, value: None }),
        (None, None) => None,
    };
    if let Some(named) = header("x-amz-sdk-checksum-algorithm") {
        let a = Algorithm::by_name(&named).ok_or_else(|| S3Error::invalid_request(format!("Value for x-amz-sdk-checksum-algorithm header is invalid: {named:?}")))?;
        match &wanted {
            None => {
                return Err(S3Error::invalid_request("x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* or x-amz-trailer headers were found."));
            }
            Some(w) if w.algorithm != a => {
                return Err(S3Error::invalid_request(format!("x-amz-sdk-checksum-algorithm is {}, the checksum sent is {}", a.name(), w.algorithm.name())));
            }
            Some(_) => {}
        }
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(a: Algorithm, data: &[u8]) -> Vec<u8> {
        let mut h = Hasher::new(a);
        h.update(data);
        h.finalize()
    }

    /// Each algorithm's check value (its catalogue's digest of "123456789"), and the same fed in
    /// pieces.
    #[test]
    fn check_values() {
        let check: [(Algorithm, &str); 5] = [
            (Algorithm::Crc32, "cbf43926"),
            (Algorithm::Crc32c, "e3069283"),
            (Algorithm::Crc64Nvme, "ae8b14860a799888"),
            (Algorithm::Sha1, "f7c3bc1d808e04732adf679965ccc34ca7ae3441"),
            (Algorithm::Sha256, "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225"),
        ];
        for (a, want) in check {
            assert_eq!(crate::sigv4::hex(&digest(a, b"123456789")), want, "{}", a.name());
            let mut h = Hasher::new(a);
            for piece in [&b"1234"[..], b"", b"56789"] {
                h.update(piece);
            }
            assert_eq!(crate::sigv4::hex(&h.finalize()), want, "{} in pieces", a.name());
        }
        // As boto3 sends it: the CRC32 of "hello world" is 0x0d4a1185.
        assert_eq!(encode(&digest(Algorithm::Crc32, b"hello world")), "DUoRhQ==");
    }

    /// What a commit stores is what a read finds; other keys, and unknown algorithms, are not.
    #[test]
    fn stored_checksums_read_back() {
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        let metadata = [pair("etag", "x"), pair(&Algorithm::Sha256.metadata_key(), "s"), pair("checksum:xxh3", "?"), pair("x-amz-meta-checksum:crc32", "m"), pair(&Algorithm::Crc64Nvme.metadata_key(), "c")];
        assert_eq!(stored(&metadata).collect::<Vec<_>>(), [(Algorithm::Sha256, "s"), (Algorithm::Crc64Nvme, "c")]);
    }

    fn ask(headers: &[(&str, &str)], chunked: bool) -> Result<Option<Wanted>, S3Error> {
        requested(&|n| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.to_string()), chunked)
    }

    #[test]
    fn what_a_request_announces() {
        assert_eq!(ask(&[], false).expect("none"), None);
        assert_eq!(ask(&[("x-amz-checksum-crc32", "DUoRhQ==")], false).expect("header"), Some(Wanted { algorithm: Algorithm::Crc32, value: Some(vec![0x0d, 0x4a, 0x11, 0x85]) }));
        let trailer = [("x-amz-trailer", "x-amz-checksum-crc64nvme"), ("x-amz-sdk-checksum-algorithm", "crc64nvme")];
        assert_eq!(ask(&trailer, true).expect("trailer"), Some(Wanted { algorithm: Algorithm::Crc64Nvme, value: None }));
        let refused: [(&[(&str, &str)], bool); 5] = [
            (&[("x-amz-checksum-crc32", "DUoRhQ=="), ("x-amz-checksum-sha1", "AAAA")], false),
            (&[("x-amz-checksum-crc32", "DUoRhQ=="), ("x-amz-trailer", "x-amz-checksum-crc32")], true),
            (&[("x-amz-trailer", "x-amz-checksum-md5")], true),
            (&[("x-amz-trailer", "x-amz-checksum-crc32")], false),
            (&[("x-amz-sdk-checksum-algorithm", "CRC32")], false),
        ];
        for (headers, chunked) in refused {
            assert_eq!(ask(headers, chunked).expect_err(&format!("{headers:?}")).code, "InvalidRequest", "{headers:?}");
        }
        for bad in [&[("x-amz-checksum-crc32", "DUoRhQ")][..], &[("x-amz-checksum-sha256", "DUoRhQ==")], &[("x-amz-checksum-sha256", "bad")]] {
            assert_eq!(ask(bad, false).expect_err(&format!("{bad:?}")).code, "BadDigest", "{bad:?}");
        }
        assert!(ask(&[("x-amz-checksum-crc32", "DUoRhQ=="), ("x-amz-sdk-checksum-algorithm", "SHA256")], false).is_err());
        assert!(ask(&[("x-amz-checksum-crc32", "DUoRhQ=="), ("x-amz-sdk-checksum-algorithm", "XXH3")], false).is_err());
    }
}
