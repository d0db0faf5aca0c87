//! A bucket's CORS configuration (PutBucketCors / GetBucketCors / DeleteBucketCors): the rules a
//! browser's cross-origin request is matched against, at its preflight (`OPTIONS`) and on the
//! request itself, and the `Access-Control-*` headers the match answers with.
//!
//! Kept as bucket metadata in a compact form of its own ([`encode`]), cut into pairs of at most
//! the OM's value size ([`stratos_common::settings::pieces`]), so that a configuration is set or removed by one
//! `SetBucketMetadata` command, whole.

use crate::error::S3Error;
use crate::xml::{self, Writer};

/// Rules per configuration (S3's limit).
pub const RULES_MAX: usize = 100;
/// Longest rule ID (S3's).
const ID_CHARS_MAX: usize = 255;
/// The methods a rule may allow (S3's five).
const METHODS: [&str; 5] = ["GET", "PUT", "HEAD", "POST", "DELETE"];

/// One `<CORSRule>`: which origins may use which methods, sending which headers, and what
/// their browsers may read of the answer and cache of the preflight.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub id: Option<String>,
    /// Origins, each with at most one `*` standing for any run of characters.
    pub origins: Vec<String>,
    pub methods: Vec<String>,
    /// Request headers a preflight may name, each with at most one `*` (matched without case).
    pub headers: Vec<String>,
    /// Response headers the browser may let the page read.
    pub expose: Vec<String>,
    pub max_age: Option<u32>,
}

/// A bucket's rules, in the order they were given: the first that matches answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub rules: Vec<Rule>,
}

/// A value the configuration stores and sends back in a header: visible ASCII or space, as an
/// origin, a method or a header name are (so it cannot break a header, nor the stored form).
fn check_value(what: &str, v: &str) -> Result<(), S3Error> {
    if v.is_empty() || v.len() > 1024 || !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(S3Error::invalid_request(format!("{what} {v:?} must be 1 to 1024 characters of visible ASCII")));
    }
    Ok(())
}

/// The configuration a PutBucketCors document sets, checked as S3 checks it.
pub fn parse(doc: &[u8]) -> Result<Config, S3Error> {
    let root = xml::document(doc, "CORSConfiguration")?;
    let mut rules = Vec::new();
    for r in root.children_named("CORSRule") {
        if rules.len() == RULES_MAX {
            return Err(S3Error::malformed_xml(format!("more than {RULES_MAX} CORS rules")));
        }
        let texts = |name: &str| r.children_named(name).map(|e| e.text.trim().to_string()).collect::<Vec<_>>();
        let id = r.child("ID").map(|e| e.text.trim().to_string());
        if let Some(id) = &id
            && (id.chars().count() > ID_CHARS_MAX || id.chars().any(char::is_control))
        {
            return Err(S3Error::invalid_argument(format!("a CORS rule's ID is at most {ID_CHARS_MAX} characters, none of them control characters")));
        }
        let rule = Rule {
            id,
            origins: texts("AllowedOrigin"),
            methods: texts("AllowedMethod"),
            headers: texts("AllowedHeader"),
            expose: texts("ExposeHeader"),
            max_age: match r.child("MaxAgeSeconds") {
                None => None,
                Some(e) => Some(e.text.trim().parse::<u32>().map_err(|_| S3Error::malformed_xml(format!("MaxAgeSeconds {:?} is not a whole number of seconds", e.text)))?),
            },
        };
        if rule.origins.is_empty() || rule.methods.is_empty() {
            return Err(S3Error::malformed_xml("a CORS rule needs at least one AllowedOrigin and one AllowedMethod"));
        }
        for m in &rule.methods {
            if !METHODS.contains(&m.as_str()) {
                return Err(S3Error::invalid_request(format!("Found unsupported HTTP method in CORS config. Unsupported method is {m}")));
            }
        }
        for o in &rule.origins {
            check_value("AllowedOrigin", o)?;
            if o.matches('*').count() > 1 {
                return Err(S3Error::invalid_request(format!("AllowedOrigin {o:?} can not have more than one wildcard")));
            }
        }
        for h in &rule.headers {
            check_value("AllowedHeader", h)?;
            if h.matches('*').count() > 1 {
                return Err(S3Error::invalid_request(format!("AllowedHeader {h:?} can not have more than one wildcard")));
            }
        }
        for h in &rule.expose {
            check_value("ExposeHeader", h)?;
        }
        rules.push(rule);
    }
    if rules.is_empty() {
        return Err(S3Error::malformed_xml("a CORS configuration needs at least one CORSRule"));
    }
    Ok(Config { rules })
}

/// The configuration as GetBucketCors shows it.
pub fn render(c: &Config) -> String {
    let root = "CORSConfiguration";
    let mut w = Writer::new(root);
    for r in &c.rules {
        w.open("CORSRule");
        if let Some(id) = &r.id {
            w.elem("ID", id);
        }
        for (name, values) in [("AllowedHeader", &r.headers), ("AllowedMethod", &r.methods), ("AllowedOrigin", &r.origins), ("ExposeHeader", &r.expose)] {
            for v in values {
                w.elem(name, v);
            }
        }
        if let Some(s) = r.max_age {
            w.elem("MaxAgeSeconds", s);
        }
        w.close("CORSRule");
    }
    w.finish(root)
}

/// The stored form: a line `R` opens each rule, then one line per field, its letter, a space and
/// the value (IDs and values hold no line breaks: [`parse`] refuses control characters).
pub fn encode(c: &Config) -> String {
    let mut out = String::new();
    for r in &c.rules {
        out.push_str("R\n");
        let mut line = |tag: char, v: &str| {
            out.push(tag);
            out.push(' ');
            out.push_str(v);
            out.push('\n');
        };
        if let Some(id) = &r.id {
            line('I', id);
        }
        for (tag, values) in [('O', &r.origins), ('M', &r.methods), ('H', &r.headers), ('E', &r.expose)] {
            for v in values {
                line(tag, v);
            }
        }
        if let Some(s) = r.max_age {
            line('A', &s.to_string());
        }
    }
    out
}

/// What [`encode`] made; an error names the line it cannot read.
pub fn decode(s: &str) -> Result<Config, String> {
    let mut rules: Vec<Rule> = Vec::new();
    for l in s.split('\n').filter(|l| !l.is_empty()) {
        if l == "R" {
            rules.push(Rule::default());
            continue;
        }
        let (Some(r), Some((tag, v))) = (rules.last_mut(), l.split_once(' ')) else { return Err(format!("a stored CORS configuration has the line {l:?}")) };
        match tag {
            "I" => r.id = Some(v.to_string()),
            "O" => r.origins.push(v.to_string()),
            "M" => r.methods.push(v.to_string()),
            "H" => r.headers.push(v.to_string()),
            "E" => r.expose.push(v.to_string()),
            "A" => r.max_age = Some(v.parse().map_err(|_| format!("a stored CORS configuration has the max age {v:?}"))?),
            _ => return Err(format!("a stored CORS configuration has the line {l:?}")),
        }
    }
    Ok(Config { rules })
}

/// Whether `value` matches `pattern`, whose one `*` (if any) stands for any run of characters.
fn wildcard(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((head, tail)) => value.len() >= head.len() + tail.len() && value.starts_with(head) && value.ends_with(tail),
    }
}

/// [`wildcard`] without regard to ASCII case (header names).
fn wildcard_nocase(pattern: &str, value: &str) -> bool {
    wildcard(&pattern.to_ascii_lowercase(), &value.to_ascii_lowercase())
}

impl Rule {
    fn allows(&self, origin: &str, method: &str) -> bool {
        self.methods.iter().any(|m| m == method) && self.origins.iter().any(|o| wildcard(o, origin))
    }

    /// The headers that answer a request from `origin` this rule allows (`*` where the rule
    /// allows any origin, which then cannot carry credentials).
    fn answer(&self, origin: &str) -> Vec<(String, String)> {
        let any = self.origins.iter().any(|o| o == "*");
        let mut h = vec![("access-control-allow-origin".to_string(), if any { "*".to_string() } else { origin.to_string() })];
        if !any {
            h.push(("access-control-allow-credentials".into(), "true".into()));
        }
        h.push(("access-control-allow-methods".into(), self.methods.join(", ")));
        if !self.expose.is_empty() {
            h.push(("access-control-expose-headers".into(), self.expose.join(", ")));
        }
        if let Some(s) = self.max_age {
            h.push(("access-control-max-age".into(), s.to_string()));
        }
        h
    }
}

/// The `Vary` that every answer a CORS rule can change carries, so that caches keep them apart.
const VARY: (&str, &str) = ("vary", "Origin, Access-Control-Request-Headers, Access-Control-Request-Method");

/// A preflight's answer: the headers of the first rule that allows `origin` to send `method`
/// with every header of `request_headers` (a comma-separated list), or None: refused.
pub fn preflight(c: &Config, origin: &str, method: &str, request_headers: Option<&str>) -> Option<Vec<(String, String)>> {
    let asked: Vec<&str> = request_headers.map(|l| l.split(',').map(str::trim).filter(|h| !h.is_empty()).collect()).unwrap_or_default();
    let rule = c.rules.iter().find(|r| r.allows(origin, method) && asked.iter().all(|h| r.headers.iter().any(|p| wildcard_nocase(p, h))))?;
    let mut h = rule.answer(origin);
    if !asked.is_empty() {
        h.push(("access-control-allow-headers".into(), asked.join(", ").to_ascii_lowercase()));
    }
    h.push((VARY.0.into(), VARY.1.into()));
    Some(h)
}

/// The headers added to the answer of a request itself (any status) from `origin`: those of the
/// first rule that allows its method (that of an `Access-Control-Request-Method` it carries, as
/// Ceph's gateway reads it, else its own); none where no rule does.
pub fn actual(c: &Config, origin: &str, method: &str) -> Vec<(String, String)> {
    match c.rules.iter().find(|r| r.allows(origin, method)) {
        Some(rule) => {
            let mut h = rule.answer(origin);
            h.push((VARY.0.into(), VARY.1.into()));
            h
        }
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = String> {
        "[ -~&&[^*]]{0,6}(\\*[ -~&&[^*]]{0,6})?".prop_filter("not empty", |s| !s.trim().is_empty() && s.trim() == s)
    }

    fn rule() -> impl Strategy<Value = Rule> {
        (
            proptest::option::of("[a-zA-Z0-9 <&>]{0,8}".prop_map(|s| s.trim().to_string())),
            proptest::collection::vec(value(), 1..4),
            proptest::sample::subsequence(METHODS.to_vec(), 1..=5),
            proptest::collection::vec(value(), 0..3),
            proptest::collection::vec("[a-zA-Z-]{1,12}", 0..3),
            proptest::option::of(any::<u32>()),
        )
            .prop_map(|(id, origins, methods, headers, expose, max_age)| Rule {
                id,
                origins,
                methods: methods.into_iter().map(str::to_string).collect(),
                headers,
                expose,
                max_age,
            })
    }

    proptest! {
        /// Whatever a configuration holds, the stored form gives it back, and so does the
        /// document GetBucketCors shows when it is put again (as `aws s3api get-bucket-cors`
        /// then `put-bucket-cors` do).
        #[test]
        fn stored_and_shown_configurations_come_back_whole(rules in proptest::collection::vec(rule(), 1..5), max in 4usize..64) {
            let c = Config { rules };
            let stored = encode(&c);
            let joined: String = stratos_common::settings::pieces(&stored, max).concat();
            prop_assert_eq!(&joined, &stored);
            prop_assert!(stratos_common::settings::pieces(&stored, max).iter().all(|p| p.len() <= max));
            prop_assert_eq!(decode(&joined).unwrap(), c.clone());
            prop_assert_eq!(parse(render(&c).as_bytes()).unwrap(), c);
        }

        /// A pattern with one `*` matches exactly the values that start with what precedes it
        /// and end with what follows it, without the two overlapping.
        #[test]
        fn a_wildcard_stands_for_any_run(head in "[a-c]{0,3}", tail in "[a-c]{0,3}", v in "[a-c]{0,7}") {
            let pattern = format!("{head}*{tail}");
            let expected = (0..=v.len()).any(|i| (i..=v.len()).any(|j| v[..i] == head && v[j..] == tail));
            prop_assert_eq!(wildcard(&pattern, &v), expected);
            prop_assert_eq!(wildcard(&head, &v), head == v);
        }
    }

    fn doc(rules: &str) -> Vec<u8> {
        format!("<CORSConfiguration>{rules}</CORSConfiguration>").into_bytes()
    }

    #[test]
    fn rules_are_checked_as_s3_checks_them() {
        let code = |d: &str| parse(&doc(d)).unwrap_err().code;
        assert_eq!(code(""), "MalformedXML");
        assert_eq!(code("<CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule>"), "MalformedXML");
        assert_eq!(code("<CORSRule><AllowedOrigin>*</AllowedOrigin></CORSRule>"), "MalformedXML");
        assert_eq!(code("<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod></CORSRule>"), "InvalidRequest");
        assert_eq!(code("<CORSRule><AllowedOrigin>*.a.*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>"), "InvalidRequest");
        assert_eq!(code("<CORSRule><AllowedOrigin>a</AllowedOrigin><AllowedMethod>GET</AllowedMethod><AllowedHeader>x-*-*</AllowedHeader></CORSRule>"), "InvalidRequest");
        assert_eq!(code("<CORSRule><AllowedOrigin>a</AllowedOrigin><AllowedMethod>GET</AllowedMethod><MaxAgeSeconds>-1</MaxAgeSeconds></CORSRule>"), "MalformedXML");
        assert_eq!(code("<CORSRule><AllowedOrigin>a&#10;b</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>"), "InvalidRequest");
        let many = "<CORSRule><AllowedOrigin>a</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>".repeat(RULES_MAX + 1);
        assert_eq!(code(&many), "MalformedXML");
        assert_eq!(parse(&doc(&"<CORSRule><AllowedOrigin>a</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>".repeat(RULES_MAX))).unwrap().rules.len(), RULES_MAX);
    }

    fn sample() -> Config {
        let d = doc("<CORSRule><AllowedOrigin>*suffix</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>\
                     <CORSRule><AllowedOrigin>https://app.example</AllowedOrigin><AllowedMethod>PUT</AllowedMethod><AllowedMethod>POST</AllowedMethod>\
                     <AllowedHeader>x-amz-*</AllowedHeader><AllowedHeader>Content-Type</AllowedHeader><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>600</MaxAgeSeconds></CORSRule>\
                     <CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>HEAD</AllowedMethod></CORSRule>");
        parse(&d).unwrap()
    }

    fn get<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_preflight_is_answered_by_the_first_rule_allowing_origin_method_and_headers() {
        let c = sample();
        let h = preflight(&c, "foo.suffix", "GET", None).unwrap();
        assert_eq!(get(&h, "access-control-allow-origin"), Some("foo.suffix"));
        assert_eq!(get(&h, "access-control-allow-methods"), Some("GET"));
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
        assert!(preflight(&c, "foo.suffix", "PUT", None).is_none());
        assert!(preflight(&c, "foo.suffix.x", "GET", None).is_none());
        // Headers: each asked one must be allowed, without regard to case.
        let h = preflight(&c, "https://app.example", "PUT", Some("X-Amz-Date, content-type")).unwrap();
        assert_eq!(get(&h, "access-control-allow-methods"), Some("PUT, POST"));
        assert_eq!(get(&h, "access-control-allow-headers"), Some("x-amz-date, content-type"));
        assert_eq!(get(&h, "access-control-expose-headers"), Some("ETag"));
        assert_eq!(get(&h, "access-control-max-age"), Some("600"));
        assert!(preflight(&c, "https://app.example", "PUT", Some("x-amz-date, authorization")).is_none());
        assert!(preflight(&c, "foo.suffix", "GET", Some("x-amz-date")).is_none());
        // A rule for any origin answers `*`, without credentials.
        let h = preflight(&c, "elsewhere", "HEAD", None).unwrap();
        assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
        assert_eq!(get(&h, "access-control-allow-credentials"), None);
    }

    #[test]
    fn a_request_itself_gets_the_headers_of_the_rule_allowing_its_method() {
        let c = sample();
        assert_eq!(get(&actual(&c, "foo.suffix", "GET"), "access-control-allow-origin"), Some("foo.suffix"));
        assert!(actual(&c, "foo.suffix", "PUT").is_empty());
        assert!(actual(&c, "bar", "GET").is_empty());
        assert_eq!(get(&actual(&c, "bar", "HEAD"), "access-control-allow-origin"), Some("*"));
    }

    #[test]
    fn a_stored_form_that_is_not_one_is_an_error() {
        assert!(decode("O a\n").is_err());
        assert!(decode("R\nX a\n").is_err());
        assert!(decode("R\nA many\n").is_err());
        assert_eq!(decode("").unwrap(), Config::default());
    }
}
