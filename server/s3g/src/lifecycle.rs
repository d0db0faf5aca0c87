//! S3's lifecycle configuration documents (PutBucketLifecycleConfiguration and its GET): read
//! and checked as S3 checks them into [`stratos_common::lifecycle::Rule`]s, which the bucket
//! keeps and the OM acts on, and written back; and the `x-amz-expiration` header an object's
//! answers carry.
//!
//! What is acted on: `Expiration` (`Days` or `Date`) and `AbortIncompleteMultipartUpload`,
//! filtered by prefix, tags and object size. `NoncurrentVersionExpiration` and
//! `ExpiredObjectDeleteMarker` are kept and read back; they concern noncurrent versions and
//! delete markers, which unversioned buckets (every bucket here) do not have. Transitions are
//! refused: this store has one storage class.

use stratos_common::lifecycle::{Expiration, Rule, Shape, days_from_civil};

use crate::error::S3Error;
use crate::xml::{self, Element, Writer};

/// Rules in one configuration, as S3 bounds them.
pub const RULES_MAX: usize = 1000;

/// Reads and checks a configuration document. Rules without an ID get one (as S3 does).
pub fn parse(body: &[u8]) -> Result<Vec<Rule>, S3Error> {
    let doc = xml::document(body, "LifecycleConfiguration")?;
    let mut rules = Vec::new();
    for (i, e) in doc.children.iter().enumerate() {
        if e.name != "Rule" {
            return Err(S3Error::malformed_xml(format!("<{}> in a lifecycle configuration (only <Rule>)", e.name)));
        }
        if i >= RULES_MAX {
            return Err(S3Error::invalid_argument(format!("a lifecycle configuration has at most {RULES_MAX} rules")));
        }
        rules.push(rule(e)?);
    }
    if rules.is_empty() {
        return Err(S3Error::malformed_xml("a lifecycle configuration has at least one <Rule>"));
    }
    let mut ids = std::collections::BTreeSet::new();
    for r in &rules {
        if !r.id.is_empty() && !ids.insert(r.id.clone()) {
            return Err(S3Error::invalid_argument(format!("the lifecycle rule ID {} is given twice", r.id)));
        }
    }
    // IDs for the rules that have none, distinct from the others'.
    let mut n = 0;
    for r in rules.iter_mut().filter(|r| r.id.is_empty()) {
        loop {
            n += 1;
            let id = format!("rule-{n}");
            if ids.insert(id.clone()) {
                r.id = id;
                break;
            }
        }
    }
    Ok(rules)
}

fn one<'a>(e: &'a Element, name: &str) -> Result<Option<&'a Element>, S3Error> {
    let mut it = e.children.iter().filter(|c| c.name == name);
    let first = it.next();
    if it.next().is_some() {
        return Err(S3Error::malformed_xml(format!("<{}> has more than one <{name}>", e.name)));
    }
    Ok(first)
}

fn days(e: &Element, what: &str) -> Result<u32, S3Error> {
    e.text.trim().parse::<u32>().ok().filter(|d| *d > 0).ok_or_else(|| S3Error::invalid_argument(format!("{what} is a whole number of days above 0, not {:?}", e.text)))
}

fn size(e: &Element) -> Result<u64, S3Error> {
    e.text.trim().parse::<u64>().map_err(|_| S3Error::invalid_argument(format!("<{}> is a number of bytes, not {:?}", e.name, e.text)))
}

fn tag(e: &Element) -> Result<(String, String), S3Error> {
    let key = one(e, "Key")?.ok_or_else(|| S3Error::malformed_xml("a lifecycle <Tag> has a <Key>"))?;
    let value = one(e, "Value")?.map(|v| v.text.clone()).unwrap_or_default();
    if key.text.is_empty() || key.text.chars().count() > 128 || value.chars().count() > 256 {
        return Err(S3Error::new("InvalidTag", 400, "a tag's key is 1 to 128 characters and its value at most 256"));
    }
    Ok((key.text.clone(), value))
}

/// Midnight UTC of `2026-12-03T00:00:00Z` (or `….000Z`), in ms since 1970.
fn midnight(s: &str) -> Option<u64> {
    let (date, time) = s.split_once('T')?;
    if !matches!(time, "00:00:00Z" | "00:00:00.000Z") {
        return None;
    }
    let d: Vec<&str> = date.split('-').collect();
    if d.len() != 3 || d[0].len() != 4 || d[1].len() != 2 || d[2].len() != 2 || !d.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let days = days_from_civil(d[0].parse().ok()?, d[1].parse().ok()?, d[2].parse().ok()?)?;
    u64::try_from(days).ok().map(|d| d * stratos_common::lifecycle::DAY_MS)
}

fn rule(e: &Element) -> Result<Rule, S3Error> {
    const KNOWN: [&str; 9] =
        ["ID", "Prefix", "Filter", "Status", "Expiration", "Transition", "NoncurrentVersionExpiration", "NoncurrentVersionTransition", "AbortIncompleteMultipartUpload"];
    if let Some(other) = e.children.iter().find(|c| !KNOWN.contains(&c.name.as_str())) {
        return Err(S3Error::malformed_xml(format!("<{}> in a lifecycle <Rule>", other.name)));
    }
    let id = one(e, "ID")?.map(|i| i.text.clone()).unwrap_or_default();
    if id.chars().count() > 255 {
        return Err(S3Error::invalid_argument("a lifecycle rule's ID is at most 255 characters"));
    }
    let enabled = match one(e, "Status")?.map(|s| s.text.as_str()) {
        Some("Enabled") => true,
        Some("Disabled") => false,
        other => return Err(S3Error::malformed_xml(format!("a lifecycle rule's Status is Enabled or Disabled, not {other:?}"))),
    };
    let mut r = Rule { id, enabled, shape: Shape::Filter, prefix: String::new(), tags: Vec::new(), size_gt: None, size_lt: None, expiration: None, noncurrent_days: None, newer_noncurrent: None, abort_upload_days: None };
    match (one(e, "Prefix")?, one(e, "Filter")?) {
        (Some(_), Some(_)) => return Err(S3Error::malformed_xml("a lifecycle rule has a <Prefix> or a <Filter>, not both")),
        (Some(p), None) => {
            r.shape = Shape::Legacy;
            r.prefix = p.text.clone();
        }
        (None, Some(f)) => filter(f, &mut r)?,
        (None, None) => {}
    }
    if let Some(x) = one(e, "Expiration")? {
        let given: Vec<&str> = x.children.iter().map(|c| c.name.as_str()).collect();
        r.expiration = Some(match given.as_slice() {
            ["Days"] => Expiration::Days(days(&x.children[0], "an expiration's Days")?),
            ["Date"] => Expiration::Date(midnight(x.children[0].text.trim()).ok_or_else(|| S3Error::invalid_argument(format!("Expiration Date {:?} is not an ISO 8601 date at midnight UTC", x.children[0].text)))?),
            ["ExpiredObjectDeleteMarker"] => match x.children[0].text.trim() {
                "true" => Expiration::DeleteMarker(true),
                "false" => Expiration::DeleteMarker(false),
                other => return Err(S3Error::malformed_xml(format!("ExpiredObjectDeleteMarker is true or false, not {other:?}"))),
            },
            _ => return Err(S3Error::malformed_xml("an <Expiration> has exactly one of <Days>, <Date> and <ExpiredObjectDeleteMarker>")),
        });
        if matches!(r.expiration, Some(Expiration::DeleteMarker(_))) && !r.tags.is_empty() {
            return Err(S3Error::invalid_argument("ExpiredObjectDeleteMarker cannot be specified with object tag filters"));
        }
    }
    if let Some(n) = one(e, "NoncurrentVersionExpiration")? {
        r.noncurrent_days = Some(days(one(n, "NoncurrentDays")?.ok_or_else(|| S3Error::malformed_xml("a <NoncurrentVersionExpiration> has <NoncurrentDays>"))?, "NoncurrentDays")?);
        r.newer_noncurrent = one(n, "NewerNoncurrentVersions")?.map(|v| days(v, "NewerNoncurrentVersions")).transpose()?;
    }
    if let Some(a) = one(e, "AbortIncompleteMultipartUpload")? {
        r.abort_upload_days = Some(days(one(a, "DaysAfterInitiation")?.ok_or_else(|| S3Error::malformed_xml("an <AbortIncompleteMultipartUpload> has <DaysAfterInitiation>"))?, "DaysAfterInitiation")?);
        if !r.tags.is_empty() || r.size_gt.is_some() || r.size_lt.is_some() {
            return Err(S3Error::invalid_argument("AbortIncompleteMultipartUpload cannot be specified with tag or object size filters"));
        }
    }
    for t in e.children.iter().filter(|c| c.name == "Transition" || c.name == "NoncurrentVersionTransition") {
        if let Some(date) = t.child("Date")
            && midnight(date.text.trim()).is_none()
        {
            return Err(S3Error::invalid_argument(format!("Transition Date {:?} is not an ISO 8601 date at midnight UTC", date.text)));
        }
    }
    if e.children.iter().any(|c| c.name == "Transition" || c.name == "NoncurrentVersionTransition") {
        return Err(S3Error::not_implemented("lifecycle transitions (this store has one storage class, STANDARD)"));
    }
    if r.expiration.is_none() && r.noncurrent_days.is_none() && r.abort_upload_days.is_none() {
        return Err(S3Error::invalid_argument("At least one action needs to be specified in a rule"));
    }
    Ok(r)
}

fn filter(f: &Element, r: &mut Rule) -> Result<(), S3Error> {
    const CONDITIONS: [&str; 4] = ["Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan"];
    let condition = |c: &Element, r: &mut Rule| -> Result<(), S3Error> {
        match c.name.as_str() {
            "Prefix" if r.prefix.is_empty() => r.prefix = c.text.clone(),
            "Tag" => {
                let t = tag(c)?;
                if r.tags.iter().any(|(k, _)| *k == t.0) {
                    return Err(S3Error::invalid_argument(format!("the lifecycle filter names tag {:?} twice", t.0)));
                }
                r.tags.push(t);
            }
            "ObjectSizeGreaterThan" if r.size_gt.is_none() => r.size_gt = Some(size(c)?),
            "ObjectSizeLessThan" if r.size_lt.is_none() => r.size_lt = Some(size(c)?),
            other => return Err(S3Error::malformed_xml(format!("<{other}> in a lifecycle filter"))),
        }
        Ok(())
    };
    match f.children.as_slice() {
        [] => {}
        [and] if and.name == "And" => {
            r.shape = Shape::And;
            for c in &and.children {
                condition(c, r)?;
            }
        }
        [c] if CONDITIONS.contains(&c.name.as_str()) => condition(c, r)?,
        _ => return Err(S3Error::malformed_xml("a lifecycle <Filter> holds one condition, or several in <And>")),
    }
    if let (Some(g), Some(l)) = (r.size_gt, r.size_lt)
        && g >= l
    {
        return Err(S3Error::invalid_argument("ObjectSizeGreaterThan must be less than ObjectSizeLessThan"));
    }
    Ok(())
}

/// The configuration as GetBucketLifecycleConfiguration answers it: each rule's filter in the
/// form it was given.
pub fn render(rules: &[Rule]) -> String {
    let mut w = Writer::new("LifecycleConfiguration");
    for r in rules {
        w.open("Rule").elem("ID", &r.id);
        let conditions = |w: &mut Writer| {
            if !r.prefix.is_empty() || (r.tags.is_empty() && r.size_gt.is_none() && r.size_lt.is_none() && r.shape == Shape::And) {
                w.elem("Prefix", &r.prefix);
            }
            for (k, v) in &r.tags {
                w.open("Tag").elem("Key", k).elem("Value", v).close("Tag");
            }
            if let Some(g) = r.size_gt {
                w.elem("ObjectSizeGreaterThan", g);
            }
            if let Some(l) = r.size_lt {
                w.elem("ObjectSizeLessThan", l);
            }
        };
        match r.shape {
            Shape::Legacy => {
                w.elem("Prefix", &r.prefix);
            }
            Shape::Filter => {
                w.open("Filter");
                conditions(&mut w);
                w.close("Filter");
            }
            Shape::And => {
                w.open("Filter").open("And");
                conditions(&mut w);
                w.close("And").close("Filter");
            }
        }
        w.elem("Status", if r.enabled { "Enabled" } else { "Disabled" });
        match r.expiration {
            Some(Expiration::Days(d)) => {
                w.open("Expiration").elem("Days", d).close("Expiration");
            }
            Some(Expiration::Date(at)) => {
                w.open("Expiration").elem("Date", crate::gateway::iso8601(at)).close("Expiration");
            }
            Some(Expiration::DeleteMarker(m)) => {
                w.open("Expiration").elem("ExpiredObjectDeleteMarker", m).close("Expiration");
            }
            None => {}
        }
        if let Some(d) = r.noncurrent_days {
            w.open("NoncurrentVersionExpiration").elem("NoncurrentDays", d);
            if let Some(n) = r.newer_noncurrent {
                w.elem("NewerNoncurrentVersions", n);
            }
            w.close("NoncurrentVersionExpiration");
        }
        if let Some(d) = r.abort_upload_days {
            w.open("AbortIncompleteMultipartUpload").elem("DaysAfterInitiation", d).close("AbortIncompleteMultipartUpload");
        }
        w.close("Rule");
    }
    w.finish("LifecycleConfiguration")
}

/// `x-amz-expiration` for an object of the bucket: when the rules expire it and which rule
/// does (`expiry-date="Fri, 23 Dec 2012 00:00:00 GMT", rule-id="…"`), as S3 announces it on
/// PUT, GET and HEAD.
pub fn expiration_header(rules: &[Rule], key: &str, size: u64, modified_ms: u64, metadata: &[(String, String)], day_ms: u64) -> Option<String> {
    let tag = |t: &str| metadata.iter().find(|(n, _)| n.strip_prefix(crate::gateway::TAG) == Some(t)).map(|(_, v)| v.as_str());
    let (at, id) = stratos_common::lifecycle::expiry_of(rules, key, size, modified_ms, tag, day_ms)?;
    // The ID inside the header's quotes: nothing that ends them or the line.
    let id: String = id.chars().map(|c| if c == '"' || c == '\\' || c.is_control() { '_' } else { c }).collect();
    Some(format!("expiry-date=\"{}\", rule-id=\"{id}\"", crate::gateway::http_date_of(at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(rules: &str) -> String {
        format!("<LifecycleConfiguration>{rules}</LifecycleConfiguration>")
    }

    fn code(d: String) -> Option<&'static str> {
        parse(d.as_bytes()).err().map(|e| e.code)
    }

    #[test]
    fn configurations_are_checked_as_s3_does() {
        let rule = |id: &str, status: &str, exp: &str| format!("<Rule><ID>{id}</ID><Filter><Prefix>a/</Prefix></Filter><Status>{status}</Status><Expiration>{exp}</Expiration></Rule>");
        assert_eq!(code(doc(&rule("r1", "Enabled", "<Days>2</Days>"))), None);
        assert_eq!(code(doc(&rule(&"a".repeat(256), "Enabled", "<Days>2</Days>"))), Some("InvalidArgument"));
        assert_eq!(code(doc(&(rule("r1", "Enabled", "<Days>2</Days>") + &rule("r1", "Enabled", "<Days>3</Days>")))), Some("InvalidArgument"));
        assert_eq!(code(doc(&rule("r1", "enabled", "<Days>2</Days>"))), Some("MalformedXML"));
        assert_eq!(code(doc(&rule("r1", "Enabled", "<Days>0</Days>"))), Some("InvalidArgument"));
        assert_eq!(code(doc(&rule("r1", "Enabled", "<Date>20200101</Date>"))), Some("InvalidArgument"));
        assert_eq!(code(doc(&rule("r1", "Enabled", "<Date>2020-01-01T00:00:00.000Z</Date>"))), None);
        assert_eq!(code(doc(&rule("r1", "Enabled", "<Date>2020-02-30T00:00:00Z</Date>"))), Some("InvalidArgument"));
        assert_eq!(code(doc(&rule("r1", "Enabled", "<Date>2020-01-01T10:00:00Z</Date>"))), Some("InvalidArgument"));
        assert_eq!(code(doc(&rule("r1", "Enabled", "<Days>1</Days><Date>2020-01-01T00:00:00Z</Date>"))), Some("MalformedXML"));
        assert_eq!(code("<Other/>".into()), Some("MalformedXML"));
        assert_eq!(code(doc("")), Some("MalformedXML"), "no rule");
        assert_eq!(code(doc("<Rule><ID>x</ID><Prefix>a</Prefix><Status>Enabled</Status></Rule>")), Some("InvalidArgument"), "no action");
        assert_eq!(code(doc("<Rule><Prefix>a</Prefix><Filter/><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>")), Some("MalformedXML"));
        let two = "<Filter><Prefix>a</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></Filter>";
        assert_eq!(code(doc(&format!("<Rule>{two}<Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>"))), Some("MalformedXML"), "two conditions need <And>");
        let abort_tags = "<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload>";
        assert_eq!(code(doc(&format!("<Rule>{abort_tags}</Rule>"))), Some("InvalidArgument"));
        let transition = "<Prefix>a</Prefix><Status>Enabled</Status><Transition><Days>1</Days><StorageClass>GLACIER</StorageClass></Transition>";
        assert_eq!(code(doc(&format!("<Rule>{transition}</Rule>"))), Some("NotImplemented"));
    }

    #[test]
    fn a_configuration_reads_back_as_it_was_given() {
        let given = doc(concat!(
            "<Rule><ID>legacy</ID><Prefix>logs/</Prefix><Status>Enabled</Status><Expiration><Days>31</Days></Expiration></Rule>",
            "<Rule><Filter><And><Prefix>p/</Prefix><Tag><Key>a</Key><Value>1</Value></Tag><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan></And></Filter>",
            "<Status>Disabled</Status><Expiration><Date>2030-01-01T00:00:00Z</Date></Expiration></Rule>",
            "<Rule><ID>mpu</ID><Filter><Prefix>up/</Prefix></Filter><Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>2</DaysAfterInitiation></AbortIncompleteMultipartUpload>",
            "<NoncurrentVersionExpiration><NoncurrentDays>3</NoncurrentDays></NoncurrentVersionExpiration></Rule>",
        ));
        let rules = parse(given.as_bytes()).unwrap();
        assert_eq!(rules[1].id, "rule-1", "an ID given where none was");
        assert_eq!(rules[1].tags, vec![("a".to_string(), "1".to_string())]);
        let text = render(&rules);
        assert!(text.contains("<Rule><ID>legacy</ID><Prefix>logs/</Prefix><Status>Enabled</Status><Expiration><Days>31</Days></Expiration></Rule>"), "{text}");
        assert!(text.contains("<Filter><And><Prefix>p/</Prefix><Tag><Key>a</Key><Value>1</Value></Tag><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan></And></Filter>"), "{text}");
        assert!(text.contains("<Date>2030-01-01T00:00:00.000Z</Date>"), "{text}");
        assert!(text.contains("<Filter><Prefix>up/</Prefix></Filter>"), "{text}");
        // What it renders reads back as the same rules, and the stored form too.
        let body = text.split_once('\n').unwrap().1.replace(&format!(" xmlns=\"{}\"", xml::NS), "");
        assert_eq!(parse(body.as_bytes()).unwrap(), rules);
        let stored = stratos_common::lifecycle::encode(&rules);
        assert_eq!(stratos_common::lifecycle::decode(&stored).unwrap(), rules);
    }

    #[test]
    fn the_header_names_the_earliest_rule() {
        let rules = parse(doc("<Rule><ID>r1</ID><Prefix>a/</Prefix><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>").as_bytes()).unwrap();
        let day = stratos_common::lifecycle::DAY_MS;
        let h = expiration_header(&rules, "a/x", 3, 10 * day + 5, &[], day).unwrap();
        assert_eq!(h, "expiry-date=\"Tue, 13 Jan 1970 00:00:00 GMT\", rule-id=\"r1\"");
        assert_eq!(expiration_header(&rules, "b/x", 3, 0, &[], day), None);
        let odd = parse(doc("<Rule><ID>a\"b&#10;c\\</ID><Prefix></Prefix><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>").as_bytes()).unwrap();
        assert!(expiration_header(&odd, "k", 1, 0, &[], day).unwrap().ends_with("rule-id=\"a_b_c_\""), "nothing that ends the quotes or the line");
    }
}
