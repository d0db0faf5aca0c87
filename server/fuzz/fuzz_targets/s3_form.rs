//! Any bytes as a browser-based upload (POST Object) sends them: a `multipart/form-data` body,
//! cut into pieces anywhere, read as the gateway reads it (the fields, then the file streamed
//! up to its boundary, under a size range the input picks), and the same bytes as a POST
//! policy (base64 JSON) checked against the form's fields. Each gives a result or an error,
//! with the fields' memory bounded: never a panic or a hang. Bodies the input describes (its
//! fields and file in a well-formed form) must read back as they were written.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stratos_s3g::form::{self, Policy};
use stratos_s3g::payload::Source;

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else { return };
    let (cuts, body) = rest.split_at(rest.len().min(4));
    let cuts = cuts.iter().map(|c| *c as usize * 13);
    if selector & 1 == 0 {
        // The input as the form.
        let _ = futures_lite::future::block_on(async {
            let mut f = form::read(Source::cut(body, cuts), "b0und").await?;
            f.file.limit(u64::from(selector >> 4), u64::from(selector) * 997);
            let mut n = 0usize;
            while let Some(b) = f.file.next().await? {
                n += b.len();
            }
            assert!(n <= body.len());
            assert!(f.fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() <= form::FIELDS_BYTES_MAX);
            Ok::<_, stratos_s3g::error::S3Error>(())
        });
    } else {
        // The input as a form's fields and file, written well-formed: it reads back whole.
        let text = String::from_utf8_lossy(body);
        let mut parts = text.split('\u{0}');
        let file = parts.next().unwrap_or("").as_bytes().to_vec();
        let fields: Vec<(String, String)> = parts.filter_map(|p| p.split_once('=')).map(|(n, v)| (n.to_string(), v.to_string())).filter(|(n, _)| !n.is_empty() && !n.contains(['"', '\r', '\n', ';']) && !n.eq_ignore_ascii_case("file")).collect();
        let mut written = Vec::new();
        for (n, v) in &fields {
            written.extend_from_slice(format!("--b0und\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n").as_bytes());
        }
        written.extend_from_slice(b"--b0und\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n");
        written.extend_from_slice(&file);
        written.extend_from_slice(b"\r\n--b0und--\r\n");
        let fits = fields.iter().map(|(n, v)| n.len() + v.len() + 60).sum::<usize>() < form::FIELDS_BYTES_MAX;
        let bounded = !file.windows(8).any(|w| w == b"\r\n--b0un") && !fields.iter().any(|(_, v)| v.contains("\r\n--b0und"));
        let read = futures_lite::future::block_on(async {
            let mut f = form::read(Source::cut(&written, cuts), "b0und").await?;
            let mut got = Vec::new();
            while let Some(b) = f.file.next().await? {
                got.extend_from_slice(&b);
            }
            Ok::<_, stratos_s3g::error::S3Error>((f.fields, got))
        });
        if fits && bounded {
            let (got_fields, got_file) = read.expect("a well-formed form reads");
            assert_eq!(got_fields, fields);
            assert_eq!(got_file, file);
        }
        // The same text as a policy (base64 of it), checked against those fields.
        let policy = {
            use std::fmt::Write;
            const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut out = String::new();
            for chunk in body.chunks(3) {
                let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
                for i in 0..4 {
                    let _ = write!(out, "{}", if i <= chunk.len() { B64[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
                }
            }
            out
        };
        if let Ok(p) = Policy::parse(&policy) {
            let _ = p.check(&fields, 1_780_000_000_000, &["policy"]);
        }
    }
});
