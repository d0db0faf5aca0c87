//! Any bytes as a bucket configuration a client puts: a policy (JSON), a CORS configuration and
//! lifecycle rules (XML). Each is accepted or refused with an error, never a panic. An accepted
//! policy decides requests the input also describes; accepted CORS and lifecycle rules come
//! back whole from their stored form (cut into metadata pieces anywhere; the OM reads the
//! lifecycle's) and from the document their GET shows. Any bytes as stored lifecycle rules
//! (what the OM reads from a bucket's metadata) are rules or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stratos_common::lifecycle as stored;
use stratos_s3g::{cors, lifecycle, policy};

fuzz_target!(|input: &[u8]| {
    let Some((&selector, doc)) = input.split_first() else { return };
    if let Ok(p) = policy::parse(doc, "bkt") {
        let text = String::from_utf8_lossy(doc);
        let words: Vec<&str> = text.split(|c: char| !c.is_ascii_alphanumeric() && !"*?:/-_".contains(c)).filter(|w| !w.is_empty()).take(4).collect();
        let action = format!("s3:{}", words.first().copied().unwrap_or("GetObject"));
        let resource = format!("arn:aws:s3:::bkt/{}", words.get(1).copied().unwrap_or("k"));
        let user = if selector & 1 == 0 { "" } else { words.get(2).copied().unwrap_or("u") };
        let value = words.get(3).map(|w| w.to_string());
        let keys = |_: &str| value.clone().map(|v| vec![v]);
        let _ = p.decide(user, &action, &resource, &keys);
        let _ = p.is_public();
    }
    if let Ok(c) = cors::parse(doc) {
        let stored = cors::encode(&c);
        let pieces = stratos_common::settings::pieces(&stored, usize::from(selector).max(4));
        assert_eq!(cors::decode(&pieces.concat()).expect("the stored form decodes"), c);
        assert_eq!(cors::parse(cors::render(&c).as_bytes()).expect("the shown document parses"), c);
        let _ = cors::preflight(&c, "https://a.example", "GET", Some("x-amz-date"));
    }
    if let Ok(rules) = lifecycle::parse(doc) {
        let text = stored::encode(&rules);
        let pieces = stratos_common::settings::pieces(&text, usize::from(selector).max(4));
        assert_eq!(stored::decode(&pieces.concat()).expect("the stored form decodes"), rules);
        assert_eq!(lifecycle::parse(lifecycle::render(&rules).as_bytes()).expect("the shown document parses"), rules);
        let _ = lifecycle::expiration_header(&rules, "logs/a", u64::from(selector), u64::MAX - u64::from(selector), &[], u64::from(selector) + 1);
    }
    if let Ok(rules) = stored::decode(&String::from_utf8_lossy(doc)) {
        let _ = stored::expiry_of(&rules, "k", u64::MAX, u64::MAX, |_| Some("v"), u64::from(selector));
        let _ = stored::scan_prefixes(&rules, selector & 1 == 0);
    }
});
