//! Any bytes as what an S3 client sends the gateway: a request body in one of S3's payload
//! encodings (plain with a checksum header, `aws-chunked` unsigned with or without a checksum
//! trailer, with a decoded length), cut into pieces anywhere, decoded and checked as the gateway
//! does; and the same bytes as an `Authorization` header, a presigned URL's query (verified as
//! the gateway does), a path and a query to canonicalize, an `x-amz-date`, a checksum header's
//! value and an XML document. Each gives a result or an error: never a panic or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stratos_s3g::payload::{self, Payload, Source};
use stratos_s3g::{checksum, sigv4, xml};

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else { return };
    let (cuts, body) = rest.split_at(rest.len().min(4));
    let headers: &[(&str, &str)] = match selector % 5 {
        0 => &[("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"), ("x-amz-trailer", "x-amz-checksum-crc32")],
        1 => &[("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"), ("x-amz-trailer", "x-amz-checksum-sha256"), ("x-amz-decoded-content-length", "7")],
        2 => &[("content-encoding", "aws-chunked")],
        3 => &[("x-amz-checksum-crc64nvme", "AAAAAAAAAAA=")],
        _ => &[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")],
    };
    let header = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.to_string());
    if let Ok(mode) = payload::mode_of(&header, None) {
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
});
