//! A bucket's S3 settings (CORS, policy, tagging, lifecycle) as the S3 gateway keeps them in the
//! bucket's metadata: one setting's stored text cut into pairs named its prefix and a two-digit
//! number (`s3:cors:00`, `s3:cors:01`, ...), each value within the OM's value size, so that a
//! setting is set or removed by one `setBucketMetadata` command. The gateway cuts and joins
//! them; the OM joins the lifecycle rules it acts on.

/// `s` cut into pieces of at most `max` bytes (at least 4, a character's), each ending on a
/// character boundary: the values of a setting's pairs.
pub fn pieces(s: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let mut at = rest.len().min(max.max(4));
        while !rest.is_char_boundary(at) {
            at -= 1;
        }
        let (piece, tail) = rest.split_at(at);
        out.push(piece);
        rest = tail;
    }
    out
}

/// The stored pieces joined again (None: nothing stored under `prefix`). Pieces are named
/// `prefix` and a two-digit number, so their names sort in order.
pub fn joined<'a>(metadata: impl Iterator<Item = (&'a str, &'a str)>, prefix: &str) -> Option<String> {
    let mut pieces: Vec<(&str, &str)> = metadata.filter(|(k, _)| k.starts_with(prefix)).collect();
    pieces.sort_unstable();
    (!pieces.is_empty()).then(|| pieces.iter().map(|(_, v)| *v).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Cut at any size and stored under numbered names in any order, a text joins back to
        /// itself, every piece within its size and on a character boundary. (At most 90
        /// characters: names take two digits, so a setting has fewer than 100 pieces.)
        #[test]
        fn pieces_join_back(text in "\\PC{0,90}", max in 0usize..40, order in any::<u64>()) {
            let cut = pieces(&text, max);
            prop_assert!(cut.iter().all(|p| p.len() <= max.max(4)));
            prop_assert_eq!(cut.concat(), text.clone());
            let mut named: Vec<(String, &str)> = cut.iter().enumerate().map(|(i, p)| (format!("s3:x:{i:02}"), *p)).collect();
            let turn = if named.is_empty() { 0 } else { (order % named.len() as u64) as usize };
            named.rotate_left(turn);
            named.push(("s3:other".to_string(), "not this"));
            let back = joined(named.iter().map(|(k, v)| (k.as_str(), *v)), "s3:x:");
            prop_assert_eq!(back, (!text.is_empty()).then(|| text.clone()));
        }
    }
}
