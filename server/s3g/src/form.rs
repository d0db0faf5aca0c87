//! Browser-based uploads (S3's POST Object): an HTML form posted as `multipart/form-data` to
//! the bucket's URL, its fields before the `file` field that carries the object's bytes, the
//! request authorised by a *policy* (a base64 JSON document of an expiry and conditions on the
//! fields) that the form carries signed with the uploader's secret. The page that serves the
//! form was given the policy and its signature by the bucket owner's server; the browser then
//! uploads straight to the gateway, without the secret.
//!
//! - [`read`] parses the form as it streams: the fields (at most [`FIELDS_BYTES_MAX`] in all)
//!   are read into memory, the file is handed out as a [`FileStream`] that yields its bytes as
//!   they arrive (never whole in memory), up to the closing boundary. Fields after the file are
//!   ignored, as S3 ignores them.
//! - [`Policy::check`] decides the policy against the fields, as S3 does: not expired, every
//!   condition met (`{"field": "value"}`, `["eq" | "starts-with", "$field", "value"]`,
//!   `["content-length-range", min, max]`), and every field named by a condition (but the
//!   signature's own fields, `file`, `policy`, `x-ignore-*` and `x-amz-checksum-*`, the file's
//!   checksum, which is checked against the file). Field names compare without case, values
//!   exactly.

use bytes::{Bytes, BytesMut};

use crate::checksum::{Algorithm, Hasher};
use crate::error::S3Error;
use crate::payload::Source;

/// The bytes of every field before the file together (with their part headers): S3 limits a
/// form's fields to about 20 KB of policy and a few more fields.
pub const FIELDS_BYTES_MAX: usize = 64 << 10;
/// The bytes of one part's headers.
const PART_HEAD_BYTES_MAX: usize = 8 << 10;
/// A boundary is 1 to 70 characters (RFC 2046).
const BOUNDARY_BYTES_MAX: usize = 70;

fn malformed(why: impl Into<String>) -> S3Error {
    S3Error::new("MalformedPOSTRequest", 400, format!("The body of your POST request is not well-formed multipart/form-data: {}", why.into()))
}

/// The boundary of a `multipart/form-data` Content-Type, if that is what it is.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (n, v) = p.split_once('=')?;
        n.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The position of `pat` in `hay` (memchr's substring search: a file's bytes are scanned for
/// the boundary at memory speed, where a naive search compared at every byte).
fn find(hay: &[u8], pat: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, pat)
}

/// A form as read up to its file.
#[derive(Debug)]
pub struct Form {
    /// The fields before the file, in order: name as sent, value.
    pub fields: Vec<(String, String)>,
    /// The file part's `filename` (what `${filename}` in the key stands for).
    pub filename: String,
    pub file: FileStream,
}

impl Form {
    /// A field's value by name, any case.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The bytes of the form before its file part: the source, what was read of it, the boundary.
struct Reader {
    source: Source,
    buf: BytesMut,
    /// `CRLF--boundary`: what ends every part.
    delimiter: Vec<u8>,
}

impl Reader {
    /// Reads more of the body; false at its end.
    async fn fill(&mut self) -> Result<bool, S3Error> {
        match self.source.next().await? {
            Some(b) => {
                self.buf.extend_from_slice(&b);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The bytes up to `pat` (which is consumed), reading at most `max` bytes before it.
    async fn until(&mut self, pat: &[u8], max: usize, what: &str) -> Result<Bytes, S3Error> {
        let mut from = 0;
        loop {
            if let Some(at) = find(&self.buf[from..], pat) {
                if from + at > max {
                    return Err(malformed(format!("{what} longer than {max} bytes")));
                }
                let out = self.buf.split_to(from + at).freeze();
                let _ = self.buf.split_to(pat.len());
                return Ok(out);
            }
            from = self.buf.len().saturating_sub(pat.len() - 1);
            if self.buf.len() > max + pat.len() {
                return Err(malformed(format!("{what} longer than {max} bytes")));
            }
            if !self.fill().await? {
                return Err(malformed(format!("the body ends inside {what}")));
            }
        }
    }

    /// After a delimiter: true if another part follows (`CRLF`), false at the close (`--`).
    async fn next_part(&mut self) -> Result<bool, S3Error> {
        loop {
            // RFC 2046 lets transport padding (spaces, tabs) follow a boundary.
            let pad = self.buf.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
            let rest = &self.buf[pad..];
            if rest.len() >= 2 {
                let more = match &rest[..2] {
                    b"\r\n" => true,
                    b"--" => false,
                    _ => return Err(malformed("a boundary is followed by neither CRLF nor --")),
                };
                let _ = self.buf.split_to(pad + 2);
                return Ok(more);
            }
            if pad > 64 {
                return Err(malformed("padding after a boundary"));
            }
            if !self.fill().await? {
                return Err(malformed("the body ends after a boundary"));
            }
        }
    }
}

/// A part's `Content-Disposition: form-data; name="…"; filename="…"`: its name and filename.
fn disposition(head: &str) -> Result<(String, Option<String>), S3Error> {
    let line = head
        .split("\r\n")
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.trim().eq_ignore_ascii_case("content-disposition")).map(|(_, v)| v))
        .ok_or_else(|| malformed("a part without Content-Disposition"))?;
    let mut params = line.split(';');
    if !params.next().is_some_and(|t| t.trim().eq_ignore_ascii_case("form-data")) {
        return Err(malformed("a part that is not form-data"));
    }
    let (mut name, mut filename) = (None, None);
    for p in params {
        let Some((n, v)) = p.split_once('=') else { continue };
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v).to_string();
        match n.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(v),
            "filename" => filename = Some(v),
            _ => {}
        }
    }
    Ok((name.ok_or_else(|| malformed("a part without a name"))?, filename))
}

/// Reads a form from `source` (a `multipart/form-data` body with `boundary`) up to the start of
/// its file's bytes. A form without a file part is `InvalidArgument`, as S3 answers it.
pub async fn read(source: Source, boundary: &str) -> Result<Form, S3Error> {
    if boundary.is_empty() || boundary.len() > BOUNDARY_BYTES_MAX {
        return Err(malformed(format!("a boundary of {} bytes (1 to {BOUNDARY_BYTES_MAX})", boundary.len())));
    }
    let delimiter = format!("\r\n--{boundary}").into_bytes();
    // The first boundary has no CRLF before it: put one there, so every boundary looks alike.
    let mut r = Reader { source, buf: BytesMut::from(&b"\r\n"[..]), delimiter };
    let delimiter = r.delimiter.clone();
    // A preamble before the first boundary is allowed, and ignored.
    r.until(&delimiter, PART_HEAD_BYTES_MAX, "the preamble").await?;
    let mut fields = Vec::new();
    let mut budget = FIELDS_BYTES_MAX;
    loop {
        if !r.next_part().await? {
            return Err(S3Error::invalid_argument("POST requires exactly one file upload per request (the form has no field named file)"));
        }
        let head = r.until(b"\r\n\r\n", PART_HEAD_BYTES_MAX.min(budget), "a part's headers").await?;
        budget = budget.saturating_sub(head.len());
        let head = std::str::from_utf8(&head).map_err(|_| malformed("a part's headers are not UTF-8"))?;
        let (name, filename) = disposition(head)?;
        if name.eq_ignore_ascii_case("file") {
            let file = FileStream { source: r.source, buf: r.buf, delimiter, ended: false, size: 0, range: (0, u64::MAX), checksum: None, checked: None };
            return Ok(Form { fields, filename: filename.unwrap_or_default(), file });
        }
        let value = r.until(&delimiter, budget, "the form's fields").await?;
        budget = budget.saturating_sub(value.len());
        let value = String::from_utf8(value.to_vec()).map_err(|_| S3Error::invalid_argument(format!("the form field {name} is not UTF-8 text")))?;
        // One value per name: the policy is checked against one, and a second (joined to it as
        // a header's values are) would be written unchecked: a Content-Type the policy pinned
        // followed by another, a redirect with more after it.
        if fields.iter().any(|(n, _): &(String, String)| n.eq_ignore_ascii_case(&name)) {
            return Err(S3Error::invalid_argument(format!("the form gives the field {name} more than once")));
        }
        fields.push((name, value));
    }
}

/// The file's bytes, as they arrive, up to the boundary after them.
#[derive(Debug)]
pub struct FileStream {
    source: Source,
    buf: BytesMut,
    delimiter: Vec<u8>,
    ended: bool,
    size: u64,
    /// The sizes the policy allows (`content-length-range`), checked as the bytes come.
    range: (u64, u64),
    /// The checksum the form's `x-amz-checksum-*` field says the file has, being computed.
    checksum: Option<(Hasher, Vec<u8>)>,
    checked: Option<(Algorithm, Vec<u8>)>,
}

impl FileStream {
    /// The file must have between `min` and `max` bytes (a policy's `content-length-range`):
    /// more is `EntityTooLarge` as soon as it arrives, fewer `EntityTooSmall` at the end, both
    /// before the writer commits anything.
    pub fn limit(&mut self, min: u64, max: u64) {
        self.range = (min, max);
    }

    /// The file must have `algorithm`'s checksum `value` (a form's `x-amz-checksum-*` field):
    /// computed as the bytes come, `BadDigest` at the end if it differs (before the writer
    /// commits).
    pub fn expect_checksum(&mut self, algorithm: Algorithm, value: Vec<u8>) {
        self.checksum = Some((Hasher::new(algorithm), value));
    }

    /// The checksum [`FileStream::expect_checksum`] asked for, once the file ended with it.
    pub fn checksum(&self) -> Option<(Algorithm, Vec<u8>)> {
        self.checked.clone()
    }

    fn count(&mut self, piece: &[u8]) -> Result<(), S3Error> {
        if let Some((h, _)) = &mut self.checksum {
            h.update(piece);
        }
        let n = piece.len();
        self.size += n as u64;
        if self.size > self.range.1 {
            return Err(S3Error::new("EntityTooLarge", 400, format!("Your proposed upload exceeds the maximum allowed size: the policy allows at most {} bytes", self.range.1)));
        }
        Ok(())
    }

    /// Reads and drops what is left of the form, at most `max` bytes ([`Source::drain`]).
    pub async fn drain(&mut self, max: u64) {
        self.source.drain(max).await
    }

    /// The next bytes of the file; None at its end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, S3Error> {
        loop {
            if self.ended {
                return Ok(None);
            }
            if let Some(at) = find(&self.buf, &self.delimiter) {
                let out = self.buf.split_to(at).freeze();
                self.buf.clear();
                self.ended = true;
                self.count(&out)?;
                if let Some((h, want)) = self.checksum.take() {
                    let algorithm = h.algorithm();
                    let got = h.finalize();
                    if got != want {
                        return Err(S3Error::new("BadDigest", 400, format!("The {} you specified did not match the calculated checksum.", algorithm.name())));
                    }
                    self.checked = Some((algorithm, got));
                }
                if self.size < self.range.0 {
                    return Err(S3Error::new("EntityTooSmall", 400, format!("Your proposed upload is smaller than the minimum allowed size: the policy asks at least {} bytes", self.range.0)));
                }
                if !out.is_empty() {
                    return Ok(Some(out));
                }
                continue;
            }
            // All but what may be the start of the delimiter.
            let keep = self.delimiter.len() - 1;
            if self.buf.len() > keep {
                let out = self.buf.split_to(self.buf.len() - keep).freeze();
                self.count(&out)?;
                return Ok(Some(out));
            }
            match self.source.next().await? {
                Some(b) => self.buf.extend_from_slice(&b),
                None => return Err(malformed("the body ends inside the file (no boundary after it)")),
            }
        }
    }
}

/// A POST policy, decoded: when it expires and its conditions.
#[derive(Debug)]
pub struct Policy {
    /// Milliseconds since the epoch.
    pub expires_ms: u64,
    pub conditions: Vec<Condition>,
}

/// One condition of a policy. Field names are lowercase, without `$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Eq(String, String),
    StartsWith(String, String),
    LengthRange(u64, u64),
}

fn invalid_policy(why: impl Into<String>) -> S3Error {
    S3Error::new("InvalidPolicyDocument", 400, format!("Invalid Policy: {}", why.into()))
}

fn denied(why: impl Into<String>) -> S3Error {
    S3Error::access_denied(format!("Invalid according to Policy: {}", why.into()))
}

/// An ISO 8601 time in UTC as policies write it (`2026-12-06T10:00:00Z`, or with milliseconds):
/// milliseconds since the epoch.
fn expiration_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u64> { s.get(r).filter(|d| d.bytes().all(|c| c.is_ascii_digit())).and_then(|d| d.parse().ok()) };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let (year, month, day, hour, min, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let millis = match &s[19..s.len() - 1] {
        "" => 0,
        f => {
            let digits = f.strip_prefix('.').filter(|d| (1..=9).contains(&d.len()) && d.bytes().all(|c| c.is_ascii_digit()))?;
            format!("{digits:0<3}")[..3].parse().ok()?
        }
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let (y, m) = if month <= 2 { (year as i64 - 1, month + 9) } else { (year as i64, month - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m as i64 + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + (hour * 3600 + min * 60 + sec) as i64;
    u64::try_from(secs).ok().map(|s| s * 1000 + millis)
}

impl Policy {
    /// The policy field's value (base64 of the JSON document), decoded and checked for form.
    pub fn parse(policy_b64: &str) -> Result<Policy, S3Error> {
        use base64::Engine;
        let json = base64::engine::general_purpose::STANDARD
            .decode(policy_b64.trim())
            .map_err(|_| invalid_policy("the policy is not base64"))?;
        let doc: serde_json::Value = serde_json::from_slice(&json).map_err(|e| invalid_policy(format!("the policy is not JSON: {e}")))?;
        let doc = doc.as_object().ok_or_else(|| invalid_policy("the policy is not a JSON object"))?;
        // Keys are case-sensitive, as S3 reads them.
        let expiration = doc.get("expiration").ok_or_else(|| invalid_policy("Policy missing expiration"))?;
        let expires_ms = expiration.as_str().and_then(expiration_ms).ok_or_else(|| invalid_policy(format!("Invalid 'expiration' value: {expiration}")))?;
        let list = doc.get("conditions").ok_or_else(|| invalid_policy("Policy missing conditions"))?;
        let list = list.as_array().ok_or_else(|| invalid_policy("conditions is not a list"))?;
        let mut conditions = Vec::with_capacity(list.len());
        for c in list {
            conditions.push(Self::condition(c)?);
        }
        Ok(Policy { expires_ms, conditions })
    }

    fn condition(c: &serde_json::Value) -> Result<Condition, S3Error> {
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
        let field = |v: &serde_json::Value| text(v).and_then(|f| f.strip_prefix('$').map(str::to_ascii_lowercase));
        let number = |v: &serde_json::Value| v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
        if let Some(o) = c.as_object() {
            let mut pairs = o.iter();
            return match (pairs.next(), pairs.next()) {
                (Some((name, value)), None) => Ok(Condition::Eq(name.to_ascii_lowercase(), text(value).ok_or_else(|| invalid_policy(format!("condition {c}: a value that is not text")))?)),
                _ => Err(invalid_policy(format!("condition {c}: one field and its value"))),
            };
        }
        let items = c.as_array().ok_or_else(|| invalid_policy(format!("condition {c} is neither an object nor a list")))?;
        let op = items.first().and_then(|o| o.as_str()).map(str::to_ascii_lowercase).unwrap_or_default();
        match (op.as_str(), items.len()) {
            ("eq", 3) | ("starts-with", 3) => {
                let name = field(&items[1]).ok_or_else(|| invalid_policy(format!("condition {c}: the field must be written $name")))?;
                let value = text(&items[2]).ok_or_else(|| invalid_policy(format!("condition {c}: a value that is not text")))?;
                Ok(if op == "eq" { Condition::Eq(name, value) } else { Condition::StartsWith(name, value) })
            }
            ("content-length-range", 3) => match (number(&items[1]), number(&items[2])) {
                (Some(min), Some(max)) if min <= max => Ok(Condition::LengthRange(min, max)),
                _ => Err(invalid_policy(format!("condition {c}: content-length-range takes two sizes, the least first"))),
            },
            _ => Err(invalid_policy(format!("condition {c}: not an object, eq, starts-with or content-length-range"))),
        }
    }

    /// Checks the policy against the form's `fields` (names any case; `bucket` the bucket the
    /// form was posted to) at `now_ms`; returns the file's allowed sizes. `exempt`: the fields
    /// no condition needs to name (the signature's own, `file`, `policy`), beside `x-ignore-*`.
    pub fn check(&self, fields: &[(String, String)], now_ms: u64, exempt: &[&str]) -> Result<(u64, u64), S3Error> {
        if now_ms >= self.expires_ms {
            return Err(denied("Policy expired."));
        }
        let value = |name: &str| fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let mut range = (0, u64::MAX);
        let mut named: Vec<&str> = Vec::new();
        for c in &self.conditions {
            match c {
                Condition::Eq(name, want) => {
                    named.push(name);
                    if value(name) != Some(want.as_str()) {
                        return Err(denied(format!("Policy Condition failed: [\"eq\", \"${name}\", {want:?}]")));
                    }
                }
                Condition::StartsWith(name, prefix) => {
                    named.push(name);
                    // `Content-Type` may list several types, each checked. Any value starts
                    // with "", none at all included.
                    let ok = match value(name) {
                        Some(v) if name == "content-type" => v.split(',').all(|t| t.trim().starts_with(prefix.as_str())),
                        Some(v) => v.starts_with(prefix.as_str()),
                        None => prefix.is_empty(),
                    };
                    if !ok {
                        return Err(denied(format!("Policy Condition failed: [\"starts-with\", \"${name}\", {prefix:?}]")));
                    }
                }
                Condition::LengthRange(min, max) => range = (*min, *max),
            }
        }
        let extra: Vec<&str> = fields
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !n.to_ascii_lowercase().starts_with("x-ignore-") && !n.to_ascii_lowercase().starts_with("x-amz-checksum-") && !exempt.iter().any(|e| e.eq_ignore_ascii_case(n)) && !named.iter().any(|m| m.eq_ignore_ascii_case(n)))
            .collect();
        if !extra.is_empty() {
            return Err(denied(format!("Extra input fields: {}", extra.join(", "))));
        }
        Ok(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form_body(fields: &[(&str, &str)], filename: &str, file: &[u8], after: &[(&str, &str)]) -> Vec<u8> {
        let part = |out: &mut Vec<u8>, name: &str, value: &[u8], filename: Option<&str>| {
            out.extend_from_slice(b"--XyZ\r\n");
            match filename {
                Some(f) => out.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes()),
                None => out.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
            }
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        };
        let mut out = Vec::new();
        for (n, v) in fields {
            part(&mut out, n, v.as_bytes(), None);
        }
        part(&mut out, "file", file, Some(filename));
        for (n, v) in after {
            part(&mut out, n, v.as_bytes(), None);
        }
        out.extend_from_slice(b"--XyZ--\r\n");
        out
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        futures_lite::future::block_on(f)
    }

    async fn read_all(form: &mut Form) -> Result<Vec<u8>, S3Error> {
        let mut out = Vec::new();
        while let Some(b) = form.file.next().await? {
            out.extend_from_slice(&b);
        }
        Ok(out)
    }

    proptest::proptest! {
        /// However the body arrives in pieces, the fields and the file's bytes come out whole,
        /// the file's even where they hold CR, LF, dashes and most of the boundary.
        #[test]
        fn a_form_reads_the_same_cut_anywhere(file in proptest::collection::vec(proptest::sample::select(vec![b'\r', b'\n', b'-', b'X', b'y', b'Z', b'a']), 0..400),
                                               cuts in proptest::collection::vec(0usize..2000, 0..12)) {
            // A form's encoder picks a boundary its content does not hold (the whole delimiter
            // inside the file would end it there, as it must).
            proptest::prop_assume!(!file.windows(7).any(|w| w == b"\r\n--XyZ"));
            let body = form_body(&[("key", "k/${filename}"), ("Policy", "cG9saWN5")], "a.txt", &file, &[("late", "ignored")]);
            let mut form = run(read(Source::cut(&body, cuts), "XyZ")).expect("a form");
            proptest::prop_assert_eq!(&form.fields, &vec![("key".to_string(), "k/${filename}".to_string()), ("Policy".to_string(), "cG9saWN5".to_string())]);
            proptest::prop_assert_eq!(form.filename.as_str(), "a.txt");
            proptest::prop_assert_eq!(run(read_all(&mut form)).expect("the file"), file);
        }
    }

    #[test]
    fn malformed_forms_are_refused() {
        let body = form_body(&[("key", "k")], "f", b"data", &[]);
        let code = |body: &[u8]| run(async {
            let mut form = read(Source::cut(body, [3, 50]), "XyZ").await?;
            read_all(&mut form).await
        })
        .expect_err("refused")
        .code;
        // Cut short inside the file: no boundary after it.
        assert_eq!(code(&body[..body.len() - 14]), "MalformedPOSTRequest");
        // No file field.
        let no_file = b"--XyZ\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--XyZ--\r\n";
        assert_eq!(code(no_file), "InvalidArgument");
        // A field given twice (any case).
        let twice = form_body(&[("Content-Type", "image/png"), ("content-type", "text/html")], "f", b"x", &[]);
        assert_eq!(code(&twice), "InvalidArgument");
        // Fields beyond their budget.
        let huge = form_body(&[("key", &"k".repeat(FIELDS_BYTES_MAX + 1))], "f", b"x", &[]);
        assert_eq!(code(&huge), "MalformedPOSTRequest");
        // A part without Content-Disposition, a boundary followed by junk.
        assert_eq!(code(b"--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--"), "MalformedPOSTRequest");
        assert_eq!(code(b"--XyZjunk"), "MalformedPOSTRequest");
        // The file's size against the policy's range.
        let sized = |min, max| run(async {
            let mut form = read(Source::cut(&body, []), "XyZ").await?;
            form.file.limit(min, max);
            read_all(&mut form).await
        });
        assert_eq!(sized(0, 3).expect_err("too large").code, "EntityTooLarge");
        assert_eq!(sized(5, 10).expect_err("too small").code, "EntityTooSmall");
        assert_eq!(sized(4, 4).expect("exactly"), b"data");
        assert_eq!(boundary("multipart/form-data; boundary=\"a b\""), Some("a b".to_string()));
        assert_eq!(boundary("application/x-www-form-urlencoded"), None);
    }

    fn policy(doc: &str) -> Result<Policy, S3Error> {
        use base64::Engine;
        Policy::parse(&base64::engine::general_purpose::STANDARD.encode(doc))
    }

    #[test]
    fn policies_are_read_as_s3_reads_them() {
        let p = policy(r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [{"bUcKeT": "b"}, ["StArTs-WiTh", "$KeY", "foo"], ["content-length-range", 1, "1024"], ["eq", "$x-amz-meta-a", "1"]]}"#).expect("parses");
        assert_eq!(p.expires_ms, 1_893_456_000_000);
        assert_eq!(p.conditions, [Condition::Eq("bucket".into(), "b".into()), Condition::StartsWith("key".into(), "foo".into()), Condition::LengthRange(1, 1024), Condition::Eq("x-amz-meta-a".into(), "1".into())]);
        let fields = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
            [("bucket", "b"), ("Key", "foo.txt"), ("X-Amz-Meta-A", "1"), ("policy", "…"), ("x-ignore-me", "1")].iter().chain(extra).map(|(n, v)| (n.to_string(), v.to_string())).collect()
        };
        assert_eq!(p.check(&fields(&[]), 0, &["policy"]).expect("allowed"), (1, 1024));
        assert!(p.check(&fields(&[]), 1_893_456_000_000, &["policy"]).expect_err("expired").message.contains("Policy expired"));
        let extra = p.check(&fields(&[("acl", "private")]), 0, &["policy"]).expect_err("an extra field");
        assert_eq!((extra.code, extra.status), ("AccessDenied", 403));
        let mut wrong = fields(&[]);
        wrong[1].1 = "bar.txt".into();
        assert_eq!(p.check(&wrong, 0, &["policy"]).expect_err("a failed condition").status, 403);
        assert_eq!(p.check(&wrong[..1], 0, &["policy"]).expect_err("a field the policy names is missing").status, 403);
        for bad in [
            r#"{"EXPIRATION": "2030-01-01T00:00:00Z", "conditions": []}"#,
            r#"{"expiration": "2030-01-01 00:00:00+00:00", "conditions": []}"#,
            r#"{"expiration": "2030-01-01T00:00:00Z", "CONDITIONS": []}"#,
            r#"{"expiration": "2030-01-01T00:00:00Z"}"#,
            r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [{}]}"#,
            r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [["content-length-range", 10, 1]]}"#,
            r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [["starts-with", "key", "a"]]}"#,
            r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [["matches", "$key", "a"]]}"#,
            "not json",
        ] {
            assert_eq!(policy(bad).expect_err(bad).status, 400, "{bad}");
        }
        assert_eq!(expiration_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(expiration_ms("2026-12-06T10:00:00.123Z"), Some(1_796_551_200_123));
    }
}
