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

/// The metadata pair of a multipart upload (and of the object it completes into) that names
/// the upload's checksum algorithm (CreateMultipartUpload's `x-amz-checksum-algorithm`).
pub const UPLOAD_ALGORITHM: &str = "checksum:algorithm";
/// The pair that says how an object's checksum covers it (`x-amz-checksum-type`): an upload's
/// and a multipart object's; an object without it has a `FULL_OBJECT` checksum.
pub const TYPE: &str = "checksum:type";
/// The pair in which a multipart object keeps its parts' checksums (base64, in part order,
/// joined by commas) for a GET of one part; left out when longer than a metadata value.
pub const PARTS: &str = "checksum:parts";

/// How an object's checksum covers it (S3's `ChecksumType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The algorithm over the parts' checksums (decoded, concatenated), shown with `-N`.
    Composite,
    /// The checksum of the whole object's bytes, made from the parts' CRCs (CRCs only).
    FullObject,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Composite => "COMPOSITE",
            Kind::FullObject => "FULL_OBJECT",
        }
    }

    fn by_name(name: &str) -> Option<Kind> {
        [Kind::Composite, Kind::FullObject].into_iter().find(|k| k.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// The checksum a CreateMultipartUpload asks its object to get (`x-amz-checksum-algorithm`,
/// `x-amz-checksum-type`), as S3 answers it: a type defaults to `COMPOSITE`, but CRC64NVME's
/// to `FULL_OBJECT` (its only one); SHA-1 and SHA-256 cannot be combined into a whole
/// object's, so `FULL_OBJECT` with them is `InvalidRequest`, as a type without an algorithm.
pub fn for_upload(header: &dyn Fn(&str) -> Option<String>) -> Result<Option<(Algorithm, Kind)>, S3Error> {
    let kind = header("x-amz-checksum-type")
        .map(|t| Kind::by_name(&t).ok_or_else(|| S3Error::invalid_request(format!("x-amz-checksum-type {t:?}: COMPOSITE or FULL_OBJECT"))))
        .transpose()?;
    let Some(name) = header("x-amz-checksum-algorithm") else {
        return match kind {
            None => Ok(None),
            Some(_) => Err(S3Error::invalid_request("The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.")),
        };
    };
    let algorithm = Algorithm::by_name(&name).ok_or_else(|| S3Error::invalid_request(format!("Checksum algorithm provided is unsupported: {name:?}")))?;
    let kind = kind.unwrap_or(if algorithm == Algorithm::Crc64Nvme { Kind::FullObject } else { Kind::Composite });
    let combinable = matches!(algorithm, Algorithm::Crc32 | Algorithm::Crc32c | Algorithm::Crc64Nvme);
    match (kind, algorithm) {
        (Kind::FullObject, _) if !combinable => {
            Err(S3Error::invalid_request(format!("The FULL_OBJECT checksum type cannot be used with the {} checksum algorithm.", algorithm.name().to_ascii_lowercase())))
        }
        (Kind::Composite, Algorithm::Crc64Nvme) => Err(S3Error::invalid_request("The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm.")),
        _ => Ok(Some((algorithm, kind))),
    }
}

/// The checksum an upload's metadata (its [`UPLOAD_ALGORITHM`] and [`TYPE`] pairs) asks for.
pub fn of_upload(metadata: &[(String, String)]) -> Option<(Algorithm, Kind)> {
    let find = |name: &str| metadata.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    Some((Algorithm::by_name(find(UPLOAD_ALGORITHM)?)?, find(TYPE).and_then(Kind::by_name).unwrap_or(Kind::Composite)))
}

/// How an object's checksum covers it: [`TYPE`]'s value, else `FULL_OBJECT`.
pub fn object_type(metadata: &[(String, String)]) -> &str {
    metadata.iter().find(|(k, _)| k == TYPE).map_or(Kind::FullObject.name(), |(_, v)| v.as_str())
}

/// The checksum pairs a copy of an object keeps: those of its whole bytes (a `FULL_OBJECT`
/// checksum), not a composite one (of parts the copy does not have), nor the upload's pairs.
pub fn kept_by_copy(metadata: &[(String, String)]) -> Vec<(String, String)> {
    if object_type(metadata) != Kind::FullObject.name() {
        return Vec::new();
    }
    stored(metadata).map(|(a, v)| (a.metadata_key(), v.to_string())).collect()
}

/// The checksum a multipart object keeps of its `index`-th part (0-based, in part order), if
/// it kept them ([`PARTS`]).
pub fn of_part(metadata: &[(String, String)], index: usize) -> Option<&str> {
    metadata.iter().find(|(k, _)| k == PARTS)?.1.split(',').nth(index).filter(|v| !v.is_empty())
}

/// A part's checksum as the OM keeps it with the part: `ALGORITHM:base64`.
pub fn part_value(algorithm: Algorithm, digest: &[u8]) -> String {
    format!("{}:{}", algorithm.name(), encode(digest))
}

/// A part's checksum as [`part_value`] made it: the algorithm and the base64 value.
pub fn parse_part_value(value: &str) -> Option<(Algorithm, &str)> {
    let (name, v) = value.split_once(':')?;
    Some((Algorithm::by_name(name)?, v))
}

/// The checksum of an object completed from parts whose checksums (digests) and sizes are
/// `parts`, in part order, as S3 shows it: `COMPOSITE`, the algorithm's digest of the parts'
/// digests concatenated, then `-` and the part count; `FULL_OBJECT`, the CRC of the whole
/// object's bytes, combined from the parts' CRCs and sizes without reading a byte.
pub fn of_object(algorithm: Algorithm, kind: Kind, parts: &[(Vec<u8>, u64)]) -> Option<String> {
    match kind {
        Kind::Composite => {
            let mut h = Hasher::new(algorithm);
            for (d, _) in parts {
                h.update(d);
            }
            Some(format!("{}-{}", encode(&h.finalize()), parts.len()))
        }
        Kind::FullObject => {
            let crc = Crc::of(algorithm)?;
            let mut whole: Option<u64> = None;
            for (d, size) in parts {
                let part = d.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b));
                whole = Some(match whole {
                    None => part,
                    Some(w) => crc.combine(w, part, *size),
                });
            }
            let bytes = (crc.width / 8) as usize;
            Some(encode(&whole.unwrap_or(0).to_be_bytes()[8 - bytes..]))
        }
    }
}

/// A reflected CRC whose initial value and final xor are all ones (CRC-32, CRC-32C and
/// CRC-64/NVME all are), as polynomial arithmetic modulo its generator: what combining the
/// CRCs of two byte strings into the CRC of both needs. In the reflected form the top bit is
/// the coefficient of x⁰.
struct Crc {
    width: u32,
    /// The generator, reflected, without its x^width term.
    poly: u64,
}

impl Crc {
    fn of(algorithm: Algorithm) -> Option<Crc> {
        match algorithm {
            Algorithm::Crc32 => Some(Crc { width: 32, poly: 0xedb8_8320 }),
            Algorithm::Crc32c => Some(Crc { width: 32, poly: 0x82f6_3b78 }),
            Algorithm::Crc64Nvme => Some(Crc { width: 64, poly: 0x9a6c_9329_ac4b_c9b5 }),
            Algorithm::Sha1 | Algorithm::Sha256 => None,
        }
    }

    /// x⁰.
    fn one(&self) -> u64 {
        1 << (self.width - 1)
    }

    /// a·b modulo the generator.
    fn mul(&self, a: u64, mut b: u64) -> u64 {
        let mut product = 0;
        let mut bit = self.one();
        while bit != 0 {
            if a & bit != 0 {
                product ^= b;
            }
            // b·x: one step down in the reflected form, reduced when x^width comes out.
            b = if b & 1 != 0 { (b >> 1) ^ self.poly } else { b >> 1 };
            bit >>= 1;
        }
        product
    }

    /// x^(8n) modulo the generator, by squaring: the shift that `n` more bytes give a CRC.
    fn x_pow_8n(&self, mut n: u64) -> u64 {
        let mut power = self.one();
        let mut square = self.one() >> 8;
        while n != 0 {
            if n & 1 != 0 {
                power = self.mul(square, power);
            }
            square = self.mul(square, square);
            n >>= 1;
        }
        power
    }

    /// The CRC of A followed by B from A's CRC, B's CRC and B's length. The all-ones initial
    /// value and final xor cancel out, so this is zlib's `crc32_combine` rule for any of these
    /// CRCs: A's register moved past B's bytes as zeros, xor B's CRC.
    fn combine(&self, crc_a: u64, crc_b: u64, len_b: u64) -> u64 {
        self.mul(self.x_pow_8n(len_b), crc_a) ^ crc_b
    }
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

    // Combining two CRCs gives the CRC of both byte strings, for each CRC S3 combines, split
    // anywhere (an empty side included).
    proptest::proptest! {
        #[test]
        fn combined_crcs_are_the_crc_of_the_whole(data in proptest::collection::vec(proptest::num::u8::ANY, 0..3000), cut in 0usize..3000) {
            let cut = cut.min(data.len());
            let (a, b) = data.split_at(cut);
            for algorithm in [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64Nvme] {
                let crc = Crc::of(algorithm).expect("a CRC");
                let value = |d: &[u8]| digest(algorithm, d).iter().fold(0u64, |v, b| (v << 8) | u64::from(*b));
                proptest::prop_assert_eq!(crc.combine(value(a), value(b), b.len() as u64), value(&data), "{}", algorithm.name());
            }
        }
    }

    /// ceph's s3-tests' values (computed there by RGW's unit tests) for three 5 MiB parts of
    /// 'A', 'B' and 'C': each part's checksum, and the object's, combined or composite.
    #[test]
    fn objects_of_three_parts_have_s3s_checksums() {
        let parts: Vec<Vec<u8>> = [b'A', b'B', b'C'].iter().map(|c| vec![*c; 5 << 20]).collect();
        let cases = [
            (Algorithm::Crc32, Kind::FullObject, ["JRTCyQ==", "QoZTGg==", "YAgjqw=="], "WgDhBQ=="),
            (Algorithm::Crc32c, Kind::FullObject, ["MDaLrw==", "TH4EZg==", "Z7mBIQ=="], "xU+Krw=="),
            (Algorithm::Crc64Nvme, Kind::FullObject, ["L/E4WYn8v98=", "xW1l19VobYM=", "cK5MnNaWrW4="], "i+6LR0y3eFo="),
            (Algorithm::Sha1, Kind::Composite, ["iIaTCGbm+vdVjNqIMF2S0T7ibMk=", "LS/TJ32bAVKEwRu+sE3X7awh/lk=", "6DDwovUaHwrKNXDMzOGbuvj9kxI="], "sizjvY4eud3MrcHdZM3cQ/ol39o=-3"),
            (
                Algorithm::Sha256,
                Kind::Composite,
                ["275VF5loJr1YYawit0XSHREhkFXYkkPKGuoK0x9VKxI=", "mrHwOfjTL5Zwfj74F05HOQGLdUb7E5szdCbxgUSq6NM=", "Vw7oB/nKQ5xWb3hNgbyfkvDiivl+U+/Dft48nfJfDow="],
                "uWBwpe1dxI4Vw8Gf0X9ynOdw/SS6VBzfWm9giiv1sf4=-3",
            ),
        ];
        for (algorithm, kind, part_values, object) in cases {
            let digests: Vec<(Vec<u8>, u64)> = parts.iter().map(|p| (digest(algorithm, p), p.len() as u64)).collect();
            let got: Vec<String> = digests.iter().map(|(d, _)| encode(d)).collect();
            assert_eq!(got, part_values, "{}", algorithm.name());
            assert_eq!(of_object(algorithm, kind, &digests).as_deref(), Some(object), "{} {}", algorithm.name(), kind.name());
        }
        // SHA-256 cannot be combined into a whole object's.
        assert_eq!(of_object(Algorithm::Sha256, Kind::FullObject, &[(vec![0; 32], 1)]), None);
    }

    #[test]
    fn what_an_upload_asks() {
        let ask = |headers: &[(&str, &str)]| for_upload(&|n| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.to_string()));
        assert_eq!(ask(&[]).expect("none"), None);
        assert_eq!(ask(&[("x-amz-checksum-algorithm", "crc32")]).expect("crc32"), Some((Algorithm::Crc32, Kind::Composite)));
        assert_eq!(ask(&[("x-amz-checksum-algorithm", "CRC64NVME")]).expect("crc64nvme"), Some((Algorithm::Crc64Nvme, Kind::FullObject)));
        assert_eq!(ask(&[("x-amz-checksum-algorithm", "CRC32C"), ("x-amz-checksum-type", "FULL_OBJECT")]).expect("full"), Some((Algorithm::Crc32c, Kind::FullObject)));
        for refused in [
            &[("x-amz-checksum-type", "COMPOSITE")][..],
            &[("x-amz-checksum-algorithm", "MD5")],
            &[("x-amz-checksum-algorithm", "SHA256"), ("x-amz-checksum-type", "FULL_OBJECT")],
            &[("x-amz-checksum-algorithm", "CRC64NVME"), ("x-amz-checksum-type", "COMPOSITE")],
            &[("x-amz-checksum-algorithm", "CRC32"), ("x-amz-checksum-type", "PARTIAL")],
        ] {
            assert_eq!(ask(refused).expect_err(&format!("{refused:?}")).code, "InvalidRequest", "{refused:?}");
        }
        // What the upload keeps reads back; a part's value too.
        let metadata = [(UPLOAD_ALGORITHM.to_string(), "SHA1".to_string()), (TYPE.to_string(), "COMPOSITE".to_string())];
        assert_eq!(of_upload(&metadata), Some((Algorithm::Sha1, Kind::Composite)));
        assert_eq!(of_upload(&metadata[1..]), None);
        assert_eq!(object_type(&metadata), "COMPOSITE");
        assert_eq!(object_type(&[]), "FULL_OBJECT");
        let v = part_value(Algorithm::Crc32, &[0x0d, 0x4a, 0x11, 0x85]);
        assert_eq!((v.as_str(), parse_part_value(&v)), ("CRC32:DUoRhQ==", Some((Algorithm::Crc32, "DUoRhQ=="))));
        let object = [(PARTS.to_string(), "a,b,c".to_string())];
        assert_eq!((of_part(&object, 0), of_part(&object, 2), of_part(&object, 3), of_part(&[], 0)), (Some("a"), Some("c"), None, None));
    }
}
