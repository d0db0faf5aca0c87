//! Name rules, as Apache Ozone and S3 apply them. Each failure says which rule broke.

use crate::constants::*;
use crate::outcome::OmError;

/// Volume and bucket names: 3–63 characters of lowercase letters, digits, `-` and `.`; starting
/// and ending with a letter or digit; no `..`, `.-` or `-.`; not shaped like an IPv4 address.
pub fn check_resource_name(what: &'static str, name: &str) -> Result<(), OmError> {
    let bad = |reason: &str| Err(OmError::InvalidName { what: what.to_string(), name: truncate_for_message(name), reason: reason.to_string() });
    let len = name.len();
    if !(RESOURCE_NAME_BYTES_MIN..=RESOURCE_NAME_BYTES_MAX).contains(&len) {
        return bad(&format!("length must be {RESOURCE_NAME_BYTES_MIN}..={RESOURCE_NAME_BYTES_MAX}, is {len}"));
    }
    // One pass over the bytes (every key operation checks two names; three `contains` and a
    // `chars` scan were 2.5k instructions per key under `omkg --batch 1`). Every allowed byte is
    // ASCII, so the first one refused starts a character: the one the message names.
    let b = name.as_bytes();
    let mut digits_and_dots = true;
    for (i, &c) in b.iter().enumerate() {
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.') {
            let c = name[i..].chars().next().expect("a refused byte starts a character");
            return bad(&format!("character {c:?} is not allowed (lowercase letters, digits, '-' and '.')"));
        }
        digits_and_dots &= c.is_ascii_digit() || c == b'.';
    }
    if !b[0].is_ascii_alphanumeric() || !b[len - 1].is_ascii_alphanumeric() {
        return bad("must start and end with a letter or digit");
    }
    if b.windows(2).any(|w| matches!(w, [b'.', b'.'] | [b'.', b'-'] | [b'-', b'.'])) {
        return bad("must not contain '..', '.-' or '-.'");
    }
    if digits_and_dots && name.split('.').count() == 4 && name.split('.').all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|c| c.is_ascii_digit())) {
        return bad("must not look like an IP address");
    }
    Ok(())
}

/// Key names: 1–1024 bytes of UTF-8 (guaranteed by `&str`), no NUL (the memtable uses it as a
/// separator), not starting with `/`.
pub fn check_key_name(name: &str) -> Result<(), OmError> {
    let bad = |reason: &str| Err(OmError::InvalidName { what: "key".to_string(), name: truncate_for_message(name), reason: reason.to_string() });
    if name.is_empty() || name.len() > KEY_NAME_BYTES_MAX {
        return bad(&format!("length must be 1..={KEY_NAME_BYTES_MAX} bytes, is {}", name.len()));
    }
    if name.contains('\0') {
        return bad("must not contain NUL");
    }
    if name.starts_with('/') {
        return bad("must not start with '/'");
    }
    Ok(())
}

/// User and group names: 1–256 bytes, no control characters.
pub fn check_user_name(what: &'static str, name: &str) -> Result<(), OmError> {
    if name.is_empty() || name.len() > USER_NAME_BYTES_MAX || name.chars().any(char::is_control) {
        return Err(OmError::InvalidName {
            what: what.to_string(),
            name: truncate_for_message(name),
            reason: format!("must be 1..={USER_NAME_BYTES_MAX} bytes without control characters"),
        });
    }
    Ok(())
}

/// The common prefix `name` rolls up into in a listing under `prefix` with `delimiter`: the
/// name up to and including the delimiter's first occurrence after the prefix (S3's rule).
/// None: no delimiter, a name outside the prefix, or no delimiter after it.
pub fn common_prefix<'a>(name: &'a str, prefix: &str, delimiter: &str) -> Option<&'a str> {
    if delimiter.is_empty() {
        return None;
    }
    let rest = name.strip_prefix(prefix)?;
    let at = rest.find(delimiter)?;
    Some(&name[..prefix.len() + at + delimiter.len()])
}

/// Names echoed in errors are cut so a hostile 1 MB name does not make a 1 MB error.
pub fn truncate_for_message(name: &str) -> String {
    const MAX: usize = 80;
    if name.len() <= MAX {
        return name.to_string();
    }
    let mut end = MAX;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &name[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names() {
        for ok in ["abc", "vol-1", "a.b.c", "0ab", "x".repeat(63).as_str()] {
            assert!(check_resource_name("volume", ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "Abc", "a_b", "-ab", "ab-", "a..b", "a.-b", "a-.b", "192.168.1.1", "x".repeat(64).as_str(), "a b", "ünï"] {
            assert!(check_resource_name("volume", bad).is_err(), "{bad}");
        }
    }

    /// The rules as first written (three `contains`, a `chars` scan): the one-pass check must
    /// agree with them on every name, reason included.
    fn reference(name: &str) -> Result<(), String> {
        let len = name.len();
        if !(RESOURCE_NAME_BYTES_MIN..=RESOURCE_NAME_BYTES_MAX).contains(&len) {
            return Err("length".into());
        }
        if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.')) {
            return Err(format!("character {c:?}"));
        }
        let b = name.as_bytes();
        if !b[0].is_ascii_alphanumeric() || !b[len - 1].is_ascii_alphanumeric() {
            return Err("start and end".into());
        }
        if name.contains("..") || name.contains(".-") || name.contains("-.") {
            return Err("pairs".into());
        }
        if name.split('.').count() == 4 && name.split('.').all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|c| c.is_ascii_digit())) {
            return Err("ip".into());
        }
        Ok(())
    }

    fn reason(r: Result<(), OmError>) -> Result<(), String> {
        r.map_err(|e| {
            let e = e.to_string();
            if e.contains("length") {
                "length".into()
            } else if let Some(i) = e.find("character ") {
                e[i..].split(" is not allowed").next().expect("a split").to_string()
            } else if e.contains("start and end") {
                "start and end".into()
            } else if e.contains("'..'") {
                "pairs".into()
            } else if e.contains("IP address") {
                "ip".into()
            } else {
                e
            }
        })
    }

    proptest::proptest! {
        #[test]
        fn the_one_pass_check_agrees_with_the_rules(name in "[a-c0-9.\\-A_é]{0,12}|[a1.\\-]{3,9}|[0-9.]{7,15}|[a-z0-9.-]{60,66}") {
            proptest::prop_assert_eq!(reason(check_resource_name("bucket", &name)), reference(&name), "{}", name);
        }
    }

    #[test]
    fn a_refused_character_is_named_whole() {
        let e = check_resource_name("bucket", "abéc").expect_err("é is refused").to_string();
        assert!(e.contains("'é'"), "{e}");
    }

    #[test]
    fn key_names() {
        assert!(check_key_name("a/b/c.txt").is_ok());
        assert!(check_key_name(&"k".repeat(1024)).is_ok());
        assert!(check_key_name(&"k".repeat(1025)).is_err());
        assert!(check_key_name("").is_err());
        assert!(check_key_name("a\0b").is_err());
        assert!(check_key_name("/abs").is_err());
    }

    #[test]
    fn long_names_are_cut_in_messages() {
        let e = check_key_name(&"é".repeat(2000)).expect_err("too long").to_string();
        assert!(e.len() < 300, "{e}");
    }
}
