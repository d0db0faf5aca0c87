//! Any bytes as what an S3 client sends the gateway: a request body in one of S3's payload
//! encodings (plain with a checksum header, `aws-chunked` unsigned with or without a checksum
//! trailer, with a decoded length, or signed chunks with a signed trailer), cut into pieces
//! anywhere, decoded and checked as the gateway
//! does; and the same bytes as an `Authorization` header, a presigned URL's query (verified as
//! the gateway does), a path and a query to canonicalize, an `x-amz-date`, a checksum header's
//! value, an XML document and an ACL (a grant header, an `AccessControlPolicy` document that,
//! once taken, must read back the same from the document the gateway shows). Each gives a
//! result or an error: never a panic or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stratos_s3g::payload::{self, Payload, Source};
use stratos_s3g::{acl, checksum, sigv4, xml};

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else { return };
    let (cuts, body) = rest.split_at(rest.len().min(4));
    let headers: &[(&str, &str)] = match selector % 6 {
        0 => &[("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"), ("x-amz-trailer", "x-amz-checksum-crc32")],
        5 => &EXAMPLE_HEADERS,
        1 => &[("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"), ("x-amz-trailer", "x-amz-checksum-sha256"), ("x-amz-decoded-content-length", "7")],
        2 => &[("content-encoding", "aws-chunked")],
        3 => &[("x-amz-checksum-crc64nvme", "AAAAAAAAAAA=")],
        _ => &[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")],
    };
    let header = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.to_string());
    // Signed chunks need the request's signature: AWS's published example's. Random bytes
    // would fail the first chunk's signature, so the body is made here from the input: its
    // data signed in chunks (of a size the input picks), then the input's own trailer lines,
    // with their right signature or none, as the input picks.
    let signer = (selector % 6 == 5).then(example_signer).flatten();
    let signed_body;
    let body = match (&signer, cuts) {
        (Some(_), [size, split, how, ..]) => {
            signed_body = signed(body, 1 + usize::from(*size) * 97, usize::from(*split) * 7, *how);
            &signed_body[..]
        }
        _ => body,
    };
    if let Ok(mode) = payload::mode_of(&header, signer) {
        let mut p = Payload::new(Source::cut(body, cuts.iter().map(|c| *c as usize)), mode);
        let _ = futures_lite::future::block_on(p.read_all(1 << 20));
    }
    let text = String::from_utf8_lossy(body);
    let _ = sigv4::Authorization::parse(&text);
    // The same text as a presigned URL's query (its decoding, credential, dates, expiry and
    // canonical request), a path and a query to canonicalize, and an x-amz-date.
    let headers = [("host".to_string(), "127.0.0.1:9878".to_string())];
    let presigned = sigv4::Request { method: "GET", raw_path: "/bucket/key", raw_query: &text, headers: &headers };
    let _ = sigv4::verify_presigned(&presigned, 1_780_000_000, |_| Some("secret".to_string()));
    let _ = sigv4::canonical_uri(&text);
    let _ = sigv4::canonical_query(&text, selector & 1 == 0);
    let _ = sigv4::parse_amz_date(&text);
    let _ = xml::parse(&text);
    let value = |n: &str| (n == "x-amz-checksum-sha1").then(|| text.to_string());
    let _ = checksum::requested(&value, false);
    // An ACL: the bytes as a grant header and as an AccessControlPolicy document. One that is
    // taken reads back, from the document the gateway shows, as the same entries.
    let grant = |n: &str| (n == "x-amz-grant-read").then(|| text.to_string());
    let _ = acl::requested(&grant, None, "owner");
    if let Ok(Some(grants)) = acl::requested(&|_| None, Some(rest), "owner")
        && let Ok(entries) = acl::entries(&grants, "owner", acl::On::Bucket)
    {
        let shown = acl::document("owner", &entries, acl::On::Bucket);
        let again = acl::requested(&|_| None, Some(shown.as_bytes()), "owner").expect("a shown ACL parses").expect("grants");
        assert_eq!(acl::sorted(acl::entries(&again, "owner", acl::On::Bucket).expect("entries")), acl::sorted(entries), "{shown}");
    }
});

/// The headers of AWS's published example of signed chunks with a signed trailer.
const EXAMPLE_HEADERS: [(&str, &str); 8] = [
    ("host", "s3.amazonaws.com"),
    ("x-amz-date", "20130524T000000Z"),
    ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
    ("authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer,Signature=106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"),
    ("x-amz-content-sha256", sigv4::STREAMING_PAYLOAD_TRAILER),
    ("content-encoding", "aws-chunked"),
    ("x-amz-trailer", "x-amz-checksum-crc32c"),
    ("x-amz-decoded-content-length", "66560"),
];

fn example_signer() -> Option<sigv4::ChunkSigner> {
    let headers: Vec<(String, String)> = EXAMPLE_HEADERS.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    let req = sigv4::Request { method: "PUT", raw_path: "/examplebucket/chunkObject.txt", raw_query: "", headers: &headers };
    sigv4::verify_header(&req, 1_369_353_600, |_| Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_string())).ok()?.ok()?.chunks
}

/// `input` as a signed aws-chunked body under AWS's example credentials: its first `split`
/// bytes as data in chunks of `size`, each signed in the chain, the empty chunk signed, then the
/// rest as trailer lines, followed (`how` even) by their signature as the gateway computes it.
fn signed(input: &[u8], size: usize, split: usize, how: u8) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let (data, trailer) = input.split_at(split.min(input.len()));
    let credential = sigv4::Credential::parse("AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request").expect("the example's credential");
    let key = sigv4::signing_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &credential);
    let scope = credential.scope();
    let mut previous = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e".to_string();
    let mut out = Vec::new();
    let pieces = data.chunks(size).chain([&[][..]]);
    for piece in pieces {
        let text = format!("AWS4-HMAC-SHA256-PAYLOAD\n20130524T000000Z\n{scope}\n{previous}\n{}\n{}", sigv4::EMPTY_SHA256, sigv4::hex(&Sha256::digest(piece)));
        previous = sigv4::hex(&sigv4::sign(&key, &text));
        out.extend_from_slice(format!("{:x};chunk-signature={previous}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        if !piece.is_empty() {
            out.extend_from_slice(b"\r\n");
        }
    }
    let lines = String::from_utf8_lossy(trailer);
    let mut canonical = String::new();
    for line in lines.split("\r\n").filter(|l| !l.is_empty()) {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some((n, v)) = line.split_once(':') {
            canonical.push_str(&format!("{}:{}\n", n.trim().to_ascii_lowercase(), v.trim()));
        }
    }
    if how % 2 == 0 {
        let text = format!("AWS4-HMAC-SHA256-TRAILER\n20130524T000000Z\n{scope}\n{previous}\n{}", sigv4::hex(&Sha256::digest(canonical.as_bytes())));
        out.extend_from_slice(format!("x-amz-trailer-signature:{}\r\n", sigv4::hex(&sigv4::sign(&key, &text))).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}
