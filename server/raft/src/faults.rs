//! Fault injection for tests and failure drills: cut nodes off from their peers while their
//! clients still reach them (a network partition as the Raft groups see it).
//!
//! With the environment variable `STRATOS_FAULTS` naming a file, every executor reads that file
//! every [`POLL`]; it lists node ids (whitespace-separated). A listed node exchanges no Raft
//! traffic (votes, appends, snapshots, read indexes, forwarded writes) with any other node, in
//! either direction, until it is no longer listed; an empty or missing file heals everything.
//! Give every node the same file. Unset (the default), nothing is read and every check is one
//! thread-local lookup of an empty list.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Duration;

pub const ENV: &str = "STRATOS_FAULTS";
pub const POLL: Duration = Duration::from_millis(100);

thread_local! {
    static ISOLATED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Whether traffic between `me` and `peer` is cut.
pub fn cut(me: u64, peer: u64) -> bool {
    ISOLATED.with(|i| {
        let i = i.borrow();
        !i.is_empty() && (i.contains(&me) || i.contains(&peer))
    })
}

/// The ids a fault file lists (words that are not node ids are ignored).
pub fn parse(text: &str) -> Vec<u64> {
    text.split_whitespace().filter_map(|w| w.parse().ok()).collect()
}

/// The file `STRATOS_FAULTS` names, if set.
pub fn file() -> Option<PathBuf> {
    std::env::var_os(ENV).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Keeps this executor's list current (run on each executor when [`file`] is set).
pub async fn watch(path: PathBuf, core: usize) {
    let mut last: Option<Vec<u64>> = None;
    loop {
        let now = std::fs::read_to_string(&path).map(|t| parse(&t)).unwrap_or_default();
        if last.as_ref() != Some(&now) {
            if core == 0 {
                eprintln!("fault injection ({}): nodes cut off from their peers: {now:?}", path.display());
            }
            ISOLATED.with(|i| *i.borrow_mut() = now.clone());
            last = Some(now);
        }
        glommio::timer::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_node_is_cut_both_ways_and_an_empty_list_heals() {
        assert_eq!(parse("2\n 3 x"), vec![2, 3]);
        assert!(!cut(1, 2));
        ISOLATED.with(|i| *i.borrow_mut() = vec![2]);
        assert!(cut(1, 2) && cut(2, 3) && !cut(1, 3));
        ISOLATED.with(|i| i.borrow_mut().clear());
        assert!(!cut(1, 2));
    }
}
