//! Key layouts of every column family (byte tables in `docs/STORAGE.md`).
//!
//! Names and ids never contain 0x00 (see `names`), so `type 0x00 id` is unambiguous and
//! sorts by type, then id; versions and event ids are big-endian so byte order is numeric
//! order.

/// Column family names, in the order they are opened.
pub const CF_EVENTS: &str = "events";
pub const CF_STREAMS: &str = "streams";
pub const CF_AGGREGATES: &str = "aggregates";
pub const CF_SNAPSHOTS: &str = "snapshots";
pub const CF_IDEMPOTENCY: &str = "idempotency";
pub const CF_META: &str = "meta";
pub const ALL_CFS: [&str; 6] = [
    CF_EVENTS,
    CF_STREAMS,
    CF_AGGREGATES,
    CF_SNAPSHOTS,
    CF_IDEMPOTENCY,
    CF_META,
];

/// Keys in the meta column family.
pub const META_FORMAT: &[u8] = b"format";
pub const META_DOMAIN: &[u8] = b"domain";
pub const META_COUNTERS: &[u8] = b"counters";
pub const META_SCHEMA: &[u8] = b"schema";
/// Present only in encrypted stores: cipher, key derivation and key check value
/// (`seal.rs`). Plaintext, because it is read before the key is known.
pub const META_ENCRYPTION: &[u8] = b"encryption";

const SEP: u8 = 0;

/// `events`: the event id.
pub fn event_key(event_id: u64) -> [u8; 8] {
    event_id.to_be_bytes()
}

/// `aggregates`: `type 0x00 id`.
pub fn aggregate_key(aggregate_type: &str, aggregate_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(aggregate_type.len() + aggregate_id.len() + 1);
    key.extend_from_slice(aggregate_type.as_bytes());
    key.push(SEP);
    key.extend_from_slice(aggregate_id.as_bytes());
    key
}

/// The prefix shared by every aggregate of a type: `type 0x00`.
pub fn aggregate_type_prefix(aggregate_type: &str) -> Vec<u8> {
    let mut key = aggregate_type.as_bytes().to_vec();
    key.push(SEP);
    key
}

/// `streams` and `snapshots`: `type 0x00 id 0x00 version(u64 BE)`.
pub fn versioned_key(aggregate_type: &str, aggregate_id: &str, version: u64) -> Vec<u8> {
    let mut key = stream_prefix(aggregate_type, aggregate_id);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

/// `type 0x00 id 0x00`: the prefix of one aggregate's versioned keys.
pub fn stream_prefix(aggregate_type: &str, aggregate_id: &str) -> Vec<u8> {
    let mut key = aggregate_key(aggregate_type, aggregate_id);
    key.push(SEP);
    key
}

/// The smallest key greater than every key starting with `prefix` (None if there is none).
pub fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut bound = prefix.to_vec();
    while let Some(last) = bound.pop() {
        if last < u8::MAX {
            bound.push(last + 1);
            return Some(bound);
        }
    }
    None
}

/// Splits an `aggregates` key into type and id.
pub fn split_aggregate_key(key: &[u8]) -> Option<(&str, &str)> {
    let at = key.iter().position(|b| *b == SEP)?;
    let aggregate_type = std::str::from_utf8(&key[..at]).ok()?;
    let aggregate_id = std::str::from_utf8(&key[at + 1..]).ok()?;
    Some((aggregate_type, aggregate_id))
}

/// The version at the end of a versioned key.
pub fn version_of_key(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_type_then_id_then_version() {
        let mut keys = [
            versioned_key("order", "b", 1),
            versioned_key("order", "a", 300),
            versioned_key("order", "a", 2),
            versioned_key("order_line", "a", 1),
            versioned_key("or", "zzz", 1),
        ];
        keys.sort();
        assert_eq!(keys[0], versioned_key("or", "zzz", 1));
        assert_eq!(keys[1], versioned_key("order", "a", 2));
        assert_eq!(keys[2], versioned_key("order", "a", 300));
        assert_eq!(keys[3], versioned_key("order", "b", 1));
        assert_eq!(version_of_key(&keys[2]), Some(300));
    }

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_upper_bound(b"ab\0"), Some(b"ab\x01".to_vec()));
        assert_eq!(prefix_upper_bound(&[0xff, 0xff]), None);
        assert_eq!(
            split_aggregate_key(&aggregate_key("order", "o-1")),
            Some(("order", "o-1"))
        );
    }
}
