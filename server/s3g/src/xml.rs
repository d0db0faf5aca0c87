//! The XML of S3's requests and answers: a writer that escapes, and a reader just large enough
//! for the bodies S3 requests carry (DeleteObjects, PutObjectTagging): elements, text and the
//! five predefined entities, no DTDs, bounded depth and size.

/// The namespace of S3's answers.
pub const NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Text as XML character data or an attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all: as a numeric reference (S3 does the same).
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push_str(&format!("&#{};", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// An XML document being written.
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
}

impl Writer {
    /// A document whose root element is `root` in S3's namespace.
    pub fn new(root: &str) -> Writer {
        Writer { out: format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root} xmlns=\"{NS}\">") }
    }
    /// A document whose root element has no namespace (S3's `<Error>`).
    pub fn plain(root: &str) -> Writer {
        Writer { out: format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root}>") }
    }
    pub fn open(&mut self, name: &str) -> &mut Self {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        self
    }
    pub fn close(&mut self, name: &str) -> &mut Self {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }
    /// `<name>text</name>`.
    pub fn elem(&mut self, name: &str, text: impl std::fmt::Display) -> &mut Self {
        self.open(name);
        self.out.push_str(&escape(&text.to_string()));
        self.close(name)
    }

    /// `<name><ID>id</ID><DisplayName>id</DisplayName></name>`: a user as S3 names one (an
    /// owner, an initiator); a user's display name is its id here.
    pub fn user(&mut self, name: &str, id: &str) -> &mut Self {
        self.open(name).elem("ID", id).elem("DisplayName", id).close(name)
    }

    pub fn finish(mut self, root: &str) -> String {
        self.close(root);
        self.out
    }
}

/// An element read from a request body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The first child named `name` (namespace prefixes ignored).
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// A request body that must be an XML document whose root element is `root` (S3's
/// `MalformedXML` where it is not UTF-8, not XML, or another document).
pub fn document(body: &[u8], root: &str) -> Result<Element, crate::error::S3Error> {
    use crate::error::S3Error;
    let text = std::str::from_utf8(body).map_err(|_| S3Error::malformed_xml(format!("the <{root}> document is not UTF-8")))?;
    let doc = parse(text).map_err(S3Error::malformed_xml)?;
    if doc.name != root {
        return Err(S3Error::malformed_xml(format!("the root element is <{}>, not <{root}>", doc.name)));
    }
    Ok(doc)
}

/// Deepest nesting a request body may have (S3's bodies are three or four levels deep).
pub const DEPTH_MAX: usize = 16;

/// Parses a request body's XML. Errors say what is wrong; nothing here panics on any input.
pub fn parse(text: &str) -> Result<Element, String> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    p.skip_prolog()?;
    let root = p.element(0)?;
    p.skip_misc();
    if p.i != p.s.len() {
        return Err(format!("content after the root element at byte {}", p.i));
    }
    Ok(root)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn starts(&self, pat: &str) -> bool {
        self.s.get(self.i..).is_some_and(|r| r.starts_with(pat.as_bytes()))
    }
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn skip_until(&mut self, end: &str) -> Result<(), String> {
        match find(&self.s[self.i..], end.as_bytes()) {
            Some(at) => {
                self.i += at + end.len();
                Ok(())
            }
            None => Err(format!("unterminated construct (no {end:?})")),
        }
    }
    /// Comments and processing instructions.
    fn skip_misc(&mut self) {
        loop {
            self.skip_ws();
            if self.starts("<!--") {
                if self.skip_until("-->").is_err() {
                    return;
                }
            } else if self.starts("<?") {
                if self.skip_until("?>").is_err() {
                    return;
                }
            } else {
                return;
            }
        }
    }
    fn skip_prolog(&mut self) -> Result<(), String> {
        if self.s.starts_with(b"\xEF\xBB\xBF") {
            self.i = 3;
        }
        self.skip_misc();
        if self.starts("<!DOCTYPE") || self.starts("<!doctype") {
            return Err("document type declarations are not accepted".into());
        }
        Ok(())
    }
    fn name(&mut self) -> Result<String, String> {
        let start = self.i;
        while self.i < self.s.len() && !self.s[self.i].is_ascii_whitespace() && !matches!(self.s[self.i], b'>' | b'/' | b'=') {
            self.i += 1;
        }
        if self.i == start {
            return Err(format!("an element name expected at byte {start}"));
        }
        let full = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| "a name is not UTF-8".to_string())?;
        // `s3:Key` is `Key`: namespaces are not told apart.
        Ok(full.rsplit(':').next().unwrap_or(full).to_string())
    }
    fn element(&mut self, depth: usize) -> Result<Element, String> {
        if depth >= DEPTH_MAX {
            return Err(format!("elements nested deeper than {DEPTH_MAX}"));
        }
        if !self.starts("<") {
            return Err(format!("an element expected at byte {}", self.i));
        }
        self.i += 1;
        let name = self.name()?;
        // Attributes (xmlns and the like): skipped, quotes respected.
        loop {
            self.skip_ws();
            match self.s.get(self.i) {
                None => return Err(format!("<{name}> is not closed")),
                Some(b'/') if self.s.get(self.i + 1) == Some(&b'>') => {
                    self.i += 2;
                    return Ok(Element { name, ..Default::default() });
                }
                Some(b'>') => {
                    self.i += 1;
                    break;
                }
                Some(q @ (b'"' | b'\'')) => {
                    let q = *q;
                    self.i += 1;
                    while self.i < self.s.len() && self.s[self.i] != q {
                        self.i += 1;
                    }
                    self.i += 1;
                }
                Some(_) => self.i += 1,
            }
        }
        let mut el = Element { name, ..Default::default() };
        loop {
            if self.i >= self.s.len() {
                return Err(format!("<{}> is not closed", el.name));
            }
            if self.starts("</") {
                self.i += 2;
                let end = self.name()?;
                self.skip_ws();
                if end != el.name || self.s.get(self.i) != Some(&b'>') {
                    return Err(format!("<{}> closed by </{end}>", el.name));
                }
                self.i += 1;
                return Ok(el);
            }
            if self.starts("<!--") {
                self.skip_until("-->")?;
            } else if self.starts("<![CDATA[") {
                self.i += 9;
                let at = find(&self.s[self.i..], b"]]>").ok_or("unterminated CDATA")?;
                el.text.push_str(std::str::from_utf8(&self.s[self.i..self.i + at]).map_err(|_| "text is not UTF-8")?);
                self.i += at + 3;
            } else if self.starts("<?") {
                self.skip_until("?>")?;
            } else if self.starts("<") {
                el.children.push(self.element(depth + 1)?);
            } else {
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i] != b'<' {
                    self.i += 1;
                }
                let raw = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| "text is not UTF-8".to_string())?;
                el.text.push_str(&unescape(raw)?);
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The text of character data with its entity and character references resolved.
pub fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        let end = rest.find(';').ok_or("an unterminated entity reference")?;
        let ent = &rest[..end];
        let c = match ent {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            // XML's CharRef is '&#' [0-9]+ ';' or '&#x' [0-9a-fA-F]+ ';': the digit checks refuse
            // the sign that `from_str_radix` and `parse` would take.
            _ if ent.starts_with("#x") => Some(&ent[2..])
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|d| u32::from_str_radix(d, 16).ok())
                .and_then(char::from_u32)
                .ok_or(format!("a bad character reference &{ent};"))?,
            _ if ent.starts_with('#') => Some(&ent[1..])
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u32>().ok())
                .and_then(char::from_u32)
                .ok_or(format!("a bad character reference &{ent};"))?,
            _ => return Err(format!("an unknown entity &{ent};")),
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_request_reads_with_namespaces_entities_and_cdata() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet>
  <Object><Key>a&amp;b &lt;c&gt;</Key></Object><!-- note -->
  <s3:Object><s3:Key><![CDATA[x<y]]></s3:Key><VersionId>null</VersionId></s3:Object>
  <Object><Key>&#x1F600;&#65;</Key></Object>
</Delete>"#;
        let d = parse(body).expect("parses");
        assert_eq!(d.name, "Delete");
        assert_eq!(d.child("Quiet").map(|q| q.text.as_str()), Some("true"));
        let keys: Vec<&str> = d.children_named("Object").filter_map(|o| o.child("Key")).map(|k| k.text.as_str()).collect();
        assert_eq!(keys, ["a&b <c>", "x<y", "😀A"]);
    }

    #[test]
    fn bad_documents_are_errors() {
        for bad in ["", "<a>", "<a></b>", "<a>&bogus;</a>", "<!DOCTYPE x><a/>", "<a/><b/>", "<a>&#xFFFFFFFF;</a>", "<a b=\"1></a>", "<a>&#x+41;</a>", "<a>&#+65;</a>", "<a>&#x;</a>"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        let deep = "<a>".repeat(DEPTH_MAX + 1) + &"</a>".repeat(DEPTH_MAX + 1);
        assert!(parse(&deep).unwrap_err().contains("deeper"));
    }

    #[test]
    fn written_text_is_escaped() {
        let mut w = Writer::new("R");
        w.elem("Key", "a<b>&\"'\u{1}");
        assert_eq!(w.finish("R"), format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<R xmlns=\"{NS}\"><Key>a&lt;b&gt;&amp;&quot;&apos;&#1;</Key></R>"));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panic(s in ".{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn escaped_text_reads_back(s in "[^\u{0}-\u{8}\u{b}\u{c}\u{e}-\u{1f}]{0,64}") {
            let doc = format!("<a>{}</a>", escape(&s));
            let text = parse(&doc).expect("own output parses").text;
            proptest::prop_assert_eq!(text, s);
        }
    }
}
