//! A bucket's lifecycle rules (S3's PutBucketLifecycleConfiguration) as the S3 gateway keeps
//! them and the OM acts on them.
//!
//! The gateway reads S3's XML, checks it, and stores the rules in the bucket's metadata in the
//! compact form of [`encode`] (cut into pieces named [`METADATA_PREFIX`]`NN`, each within a
//! metadata value: [`crate::settings`]). The OM reads that form back ([`decode`]) into every core's view of the
//! bucket, and each key shard's leader expires what the rules say has expired: the same
//! [`Rule::matches`] and [`expiry_of`] decide there what the gateway announces in
//! `x-amz-expiration`, so the header and the deletion cannot disagree.
//!
//! Times: an object expires `Days` days after it was last written, rounded up to the next
//! midnight UTC (S3's rule); with a `Date`, every object the rule matches expires at that
//! midnight. A "day" is `day_ms` long: 86,400,000 except where a test shortens it (RGW's
//! `rgw_lc_debug_interval`, here `--lifecycle-day-secs`).

/// The bucket metadata names the stored rules are cut into: `s3:lifecycle:00`, `…01`, …
pub const METADATA_PREFIX: &str = "s3:lifecycle:";

/// The metadata names under which the S3 gateway keeps an object's tags (`tag:NAME` = value),
/// which rules filter by.
pub const TAG_PREFIX: &str = "tag:";

/// A real day, in ms.
pub const DAY_MS: u64 = 86_400_000;

/// How the rule's filter was written, so that it is read back as it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `<Prefix>` directly in the rule (the first form of the API).
    Legacy,
    /// `<Filter>` with at most one condition (or none).
    Filter,
    /// `<Filter><And>…</And></Filter>`.
    And,
}

/// What happens to current objects the rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiration {
    /// Days after the object was last written (rounded up to the next midnight UTC).
    Days(u32),
    /// At this midnight UTC (ms since 1970), for every object the rule matches.
    Date(u64),
    /// `ExpiredObjectDeleteMarker`: delete markers left alone (only in versioned buckets;
    /// buckets here are not, so there are none to remove).
    DeleteMarker(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub enabled: bool,
    pub shape: Shape,
    pub prefix: String,
    /// Every one of these tags must be on the object.
    pub tags: Vec<(String, String)>,
    /// The object must be larger than this many bytes.
    pub size_gt: Option<u64>,
    /// The object must be smaller than this many bytes.
    pub size_lt: Option<u64>,
    pub expiration: Option<Expiration>,
    /// `NoncurrentVersionExpiration`: kept and read back; it never matches anything here, where
    /// no object has noncurrent versions.
    pub noncurrent_days: Option<u32>,
    pub newer_noncurrent: Option<u32>,
    /// `AbortIncompleteMultipartUpload`: uploads begun this many days ago end.
    pub abort_upload_days: Option<u32>,
}

impl Rule {
    /// Whether the rule applies to an object of this name and size with these tags (`tag`
    /// answers a tag's value).
    pub fn matches<'a>(&self, key: &str, size: u64, tag: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.enabled
            && key.starts_with(&self.prefix)
            && self.size_gt.is_none_or(|g| size > g)
            && self.size_lt.is_none_or(|l| size < l)
            && self.tags.iter().all(|(k, v)| tag(k) == Some(v.as_str()))
    }

    /// When an object last written at `modified_ms` expires under this rule, if it does.
    pub fn expires_at(&self, modified_ms: u64, day_ms: u64) -> Option<u64> {
        match self.expiration? {
            Expiration::Days(d) => Some(round_up(modified_ms.saturating_add(u64::from(d).saturating_mul(day_ms)), day_ms)),
            Expiration::Date(at) => Some(at),
            Expiration::DeleteMarker(_) => None,
        }
    }

    /// When a multipart upload of `key` begun at `created_ms` is ended under this rule, if it is.
    pub fn aborts_at(&self, key: &str, created_ms: u64, day_ms: u64) -> Option<u64> {
        let d = self.abort_upload_days?;
        (self.enabled && key.starts_with(&self.prefix)).then(|| round_up(created_ms.saturating_add(u64::from(d).saturating_mul(day_ms)), day_ms))
    }
}

/// The earliest expiry the rules give an object, with the id of the rule that gives it.
pub fn expiry_of<'r, 'a>(rules: &'r [Rule], key: &str, size: u64, modified_ms: u64, tag: impl Fn(&str) -> Option<&'a str> + Copy, day_ms: u64) -> Option<(u64, &'r str)> {
    rules.iter().filter(|r| r.matches(key, size, tag)).filter_map(|r| Some((r.expires_at(modified_ms, day_ms)?, r.id.as_str()))).min_by_key(|(at, _)| *at)
}

/// The prefixes a scan for expiring objects (or uploads) must cover: each enabled rule's with
/// an action, less those inside another (empty: none to scan; `[""]`: the whole bucket).
pub fn scan_prefixes(rules: &[Rule], uploads: bool) -> Vec<String> {
    let mut p: Vec<&str> = rules
        .iter()
        .filter(|r| r.enabled && if uploads { r.abort_upload_days.is_some() } else { matches!(r.expiration, Some(Expiration::Days(_) | Expiration::Date(_))) })
        .map(|r| r.prefix.as_str())
        .collect();
    p.sort_unstable();
    let mut out: Vec<String> = Vec::new();
    for q in p {
        if out.last().is_none_or(|last| !q.starts_with(last.as_str())) {
            out.push(q.to_string());
        }
    }
    out
}

/// `t` rounded up to a whole number of days since 1970 (midnight UTC for real days).
fn round_up(t: u64, day_ms: u64) -> u64 {
    let day = day_ms.max(1);
    t.div_ceil(day).saturating_mul(day)
}

/// The rules in their stored form: one line each, tab-separated `name=value` fields, values
/// escaped (`%`, tab, newline and `=` as `%XX`).
pub fn encode(rules: &[Rule]) -> String {
    let mut out = String::new();
    for r in rules {
        let mut f = |name: &str, value: &str| {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\t');
            }
            out.push_str(name);
            out.push('=');
            out.push_str(&escape(value));
        };
        f("id", &r.id);
        f("on", if r.enabled { "1" } else { "0" });
        f("shape", match r.shape {
            Shape::Legacy => "L",
            Shape::Filter => "F",
            Shape::And => "A",
        });
        f("prefix", &r.prefix);
        for (k, v) in &r.tags {
            f("tag", &format!("{}={}", escape(k), escape(v)));
        }
        if let Some(g) = r.size_gt {
            f("gt", &g.to_string());
        }
        if let Some(l) = r.size_lt {
            f("lt", &l.to_string());
        }
        match r.expiration {
            Some(Expiration::Days(d)) => f("days", &d.to_string()),
            Some(Expiration::Date(at)) => f("date", &at.to_string()),
            Some(Expiration::DeleteMarker(m)) => f("marker", if m { "1" } else { "0" }),
            None => {}
        }
        if let Some(d) = r.noncurrent_days {
            f("ncdays", &d.to_string());
        }
        if let Some(n) = r.newer_noncurrent {
            f("ncnewer", &n.to_string());
        }
        if let Some(d) = r.abort_upload_days {
            f("abort", &d.to_string());
        }
        out.push('\n');
    }
    out
}

/// [`encode`]'s form read back; an error says what does not read (a form this build does not
/// know: the rules are then not acted on).
pub fn decode(s: &str) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    for line in s.lines() {
        let mut r = Rule { id: String::new(), enabled: false, shape: Shape::Filter, prefix: String::new(), tags: Vec::new(), size_gt: None, size_lt: None, expiration: None, noncurrent_days: None, newer_noncurrent: None, abort_upload_days: None };
        for field in line.split('\t') {
            let (name, raw) = field.split_once('=').ok_or_else(|| format!("lifecycle field {field:?} has no value"))?;
            let value = unescape(raw)?;
            let num = |v: &str| v.parse::<u64>().map_err(|_| format!("lifecycle field {name}={v:?} is not a number"));
            let num32 = |v: &str| v.parse::<u32>().map_err(|_| format!("lifecycle field {name}={v:?} is not a number"));
            match name {
                "id" => r.id = value,
                "on" => r.enabled = value == "1",
                "shape" => {
                    r.shape = match value.as_str() {
                        "L" => Shape::Legacy,
                        "F" => Shape::Filter,
                        "A" => Shape::And,
                        other => return Err(format!("lifecycle shape {other:?}")),
                    }
                }
                "prefix" => r.prefix = value,
                "tag" => {
                    let (k, v) = value.split_once('=').ok_or_else(|| format!("lifecycle tag {value:?} has no value"))?;
                    r.tags.push((unescape(k)?, unescape(v)?));
                }
                "gt" => r.size_gt = Some(num(&value)?),
                "lt" => r.size_lt = Some(num(&value)?),
                "days" => r.expiration = Some(Expiration::Days(num32(&value)?)),
                "date" => r.expiration = Some(Expiration::Date(num(&value)?)),
                "marker" => r.expiration = Some(Expiration::DeleteMarker(value == "1")),
                "ncdays" => r.noncurrent_days = Some(num32(&value)?),
                "ncnewer" => r.newer_noncurrent = Some(num32(&value)?),
                "abort" => r.abort_upload_days = Some(num32(&value)?),
                other => return Err(format!("lifecycle field {other:?} is not one this build knows")),
            }
        }
        rules.push(r);
    }
    Ok(rules)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' | '\t' | '\n' | '\r' | '=' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(|| format!("lifecycle value {s:?} ends in an escape"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("lifecycle value {s:?} has a bad escape"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("lifecycle value {s:?} is not UTF-8"))
}

/// Days since 1970 of a civil date (proleptic Gregorian), or None if it is not a date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i64> {
    let dim = [31, if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) || d == 0 || d > dim[m as usize - 1] {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule() -> Rule {
        Rule { id: "r".into(), enabled: true, shape: Shape::Legacy, prefix: "logs/".into(), tags: Vec::new(), size_gt: None, size_lt: None, expiration: Some(Expiration::Days(1)), noncurrent_days: None, newer_noncurrent: None, abort_upload_days: None }
    }

    #[test]
    fn an_object_expires_at_the_midnight_after_its_days() {
        let r = rule();
        // 2026-12-06T18:30:00Z + 1 day → 2026-12-08T00:00:00Z.
        let written = (days_from_civil(2026, 12, 6).unwrap() as u64) * DAY_MS + 18 * 3_600_000 + 1_800_000;
        assert_eq!(r.expires_at(written, DAY_MS), Some(days_from_civil(2026, 12, 8).unwrap() as u64 * DAY_MS));
        // Exactly at midnight it is not pushed a day further.
        let midnight = days_from_civil(2026, 12, 6).unwrap() as u64 * DAY_MS;
        assert_eq!(r.expires_at(midnight, DAY_MS), Some(midnight + DAY_MS));
        // A shortened day (tests): 10 s days.
        assert_eq!(r.expires_at(12_345, 10_000), Some(30_000));
    }

    #[test]
    fn rules_match_by_prefix_size_and_every_tag() {
        let mut r = rule();
        r.tags = vec![("a".into(), "1".into()), ("b".into(), "2".into())];
        r.size_gt = Some(10);
        r.size_lt = Some(100);
        let tags = |k: &str| match k {
            "a" => Some("1"),
            "b" => Some("2"),
            _ => None,
        };
        assert!(r.matches("logs/x", 50, tags));
        assert!(!r.matches("log/x", 50, tags), "prefix");
        assert!(!r.matches("logs/x", 10, tags), "not larger than 10");
        assert!(!r.matches("logs/x", 100, tags), "not smaller than 100");
        assert!(!r.matches("logs/x", 50, |k| (k == "a").then_some("1")), "a tag missing");
        assert!(!r.matches("logs/x", 50, |k| (k == "a" || k == "b").then_some("1")), "a tag's value differs");
        r.enabled = false;
        assert!(!r.matches("logs/x", 50, tags), "disabled");
    }

    #[test]
    fn the_earliest_rule_decides_and_names_itself() {
        let mut late = rule();
        late.id = "late".into();
        late.expiration = Some(Expiration::Days(30));
        let mut early = rule();
        early.id = "early".into();
        early.prefix = String::new();
        let rules = [late, early];
        let (at, id) = expiry_of(&rules, "logs/a", 1, 0, |_| None, DAY_MS).unwrap();
        assert_eq!((at, id), (DAY_MS, "early"));
        assert_eq!(expiry_of(&rules[..1], "other", 1, 0, |_| None, DAY_MS), None);
    }

    #[test]
    fn scans_cover_each_prefix_once() {
        let with = |p: &str| Rule { prefix: p.into(), ..rule() };
        assert_eq!(scan_prefixes(&[with("a/b"), with("a/"), with("c")], false), vec!["a/".to_string(), "c".to_string()]);
        assert_eq!(scan_prefixes(&[with("a/"), with("")], false), vec![String::new()]);
        let marker = Rule { expiration: Some(Expiration::DeleteMarker(true)), ..rule() };
        assert!(scan_prefixes(&[marker], false).is_empty(), "nothing to expire");
        let abort = Rule { abort_upload_days: Some(1), expiration: None, ..rule() };
        assert_eq!(scan_prefixes(std::slice::from_ref(&abort), true), vec!["logs/".to_string()]);
        assert!(scan_prefixes(&[abort], false).is_empty());
    }

    #[test]
    fn civil_dates_count_from_1970() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(days_from_civil(2024, 2, 29), Some(19_782));
        assert_eq!(days_from_civil(2023, 2, 29), None);
        assert_eq!(days_from_civil(2023, 13, 1), None);
    }

    fn arb_rule() -> impl Strategy<Value = Rule> {
        let text = "[a-z%=\t\n/ é]{0,12}";
        (
            (text, any::<bool>(), 0u8..3, text, proptest::collection::vec((text, text), 0..3)),
            (proptest::option::of(any::<u64>()), proptest::option::of(any::<u64>()), 0u8..4, any::<u32>(), any::<u64>()),
            (proptest::option::of(any::<u32>()), proptest::option::of(any::<u32>()), proptest::option::of(any::<u32>())),
        )
            .prop_map(|((id, enabled, shape, prefix, tags), (size_gt, size_lt, exp, days, date), (noncurrent_days, newer_noncurrent, abort_upload_days))| Rule {
                id,
                enabled,
                shape: [Shape::Legacy, Shape::Filter, Shape::And][shape as usize],
                prefix,
                tags,
                size_gt,
                size_lt,
                expiration: match exp {
                    0 => None,
                    1 => Some(Expiration::Days(days)),
                    2 => Some(Expiration::Date(date)),
                    _ => Some(Expiration::DeleteMarker(days % 2 == 0)),
                },
                noncurrent_days,
                newer_noncurrent,
                abort_upload_days,
            })
    }

    proptest! {
        #[test]
        fn the_stored_form_reads_back(rules in proptest::collection::vec(arb_rule(), 0..5)) {
            let s = encode(&rules);
            prop_assert_eq!(decode(&s).unwrap(), rules);
        }

        #[test]
        fn bytes_that_are_not_the_form_are_an_error_or_rules(s in "\\PC{0,64}") {
            let _ = decode(&s);
        }
    }
}
