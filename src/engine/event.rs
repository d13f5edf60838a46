//! Events: the immutable records the store is made of, and their canonical byte encoding.
//!
//! The canonical encoding is what the Merkle leaf hashes, so every field a user can see is
//! in it (ids, types, version, payload, metadata, note, timestamp, issuer); only the derived
//! `hash` and `merkle_root` follow it in the stored value. See `docs/STORAGE.md`.

use serde_json::{Map, Value};

use super::codec::{put_bytes32, put_str16, Reader};
use super::error::EngineError;
use super::merkle::{leaf_hash, Hash};

/// Version of the canonical event encoding (its first byte).
pub const EVENT_FORMAT: u8 = 1;

/// Who issued an event: the token's group and user.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Issuer {
    pub group: String,
    pub user: String,
}

/// A committed event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: u64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub version: u64,
    pub event_type: String,
    /// The payload as stored: compact JSON text of an object.
    pub payload_json: String,
    /// The metadata as stored: compact JSON text of an object.
    pub metadata_json: String,
    pub note: Option<String>,
    /// Commit time, microseconds since the Unix epoch.
    pub created_at_micros: i64,
    pub issued_by: Issuer,
    /// The Merkle leaf hash of the canonical encoding.
    pub hash: Hash,
    /// The aggregate's Merkle root right after this event.
    pub merkle_root: Hash,
}

impl Event {
    /// The payload parsed as a JSON object.
    pub fn payload(&self) -> Result<Map<String, Value>, EngineError> {
        parse_object("event payload", &self.payload_json)
    }

    /// The metadata parsed as a JSON object.
    pub fn metadata(&self) -> Result<Map<String, Value>, EngineError> {
        parse_object("event metadata", &self.metadata_json)
    }

    /// The event as a JSON object, the shape the outbox and the CLI print.
    pub fn to_json(&self) -> Result<Value, EngineError> {
        let mut object = Map::new();
        // A string: snowflake ids exceed 2^53, which JSON parsers built on doubles
        // (JavaScript's among them) cannot hold exactly.
        object.insert("event_id".into(), Value::from(self.event_id.to_string()));
        object.insert(
            "aggregate_type".into(),
            Value::from(self.aggregate_type.clone()),
        );
        object.insert(
            "aggregate_id".into(),
            Value::from(self.aggregate_id.clone()),
        );
        object.insert("version".into(), Value::from(self.version));
        object.insert("event_type".into(), Value::from(self.event_type.clone()));
        object.insert("payload".into(), Value::Object(self.payload()?));
        object.insert("metadata".into(), Value::Object(self.metadata()?));
        object.insert(
            "note".into(),
            self.note.clone().map(Value::from).unwrap_or(Value::Null),
        );
        object.insert(
            "created_at".into(),
            Value::from(format_timestamp_micros(self.created_at_micros)),
        );
        object.insert(
            "issued_by".into(),
            serde_json::json!({"group": self.issued_by.group, "user": self.issued_by.user}),
        );
        object.insert("hash".into(), Value::from(hex::encode(self.hash)));
        object.insert(
            "merkle_root".into(),
            Value::from(hex::encode(self.merkle_root)),
        );
        Ok(Value::Object(object))
    }

    /// The canonical encoding the leaf hash covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self.payload_json.len() + self.metadata_json.len() + self.aggregate_id.len(),
        );
        out.push(EVENT_FORMAT);
        out.extend_from_slice(&self.event_id.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.created_at_micros.to_be_bytes());
        put_str16(&mut out, &self.aggregate_type);
        put_str16(&mut out, &self.aggregate_id);
        put_str16(&mut out, &self.event_type);
        put_str16(&mut out, &self.issued_by.group);
        put_str16(&mut out, &self.issued_by.user);
        match &self.note {
            Some(note) => {
                out.push(1);
                put_str16(&mut out, note);
            }
            None => out.push(0),
        }
        put_bytes32(&mut out, self.payload_json.as_bytes());
        put_bytes32(&mut out, self.metadata_json.as_bytes());
        out
    }

    /// The stored value: canonical bytes (length-prefixed), then hash and root.
    pub fn encode_stored(&self) -> Vec<u8> {
        encode_stored_parts(&self.canonical_bytes(), &self.hash, &self.merkle_root)
    }

    /// Decodes a stored value. The hash is taken as stored; `verify` recomputes it.
    pub fn decode_stored(bytes: &[u8]) -> Result<Self, EngineError> {
        EventView::decode_stored(bytes)?.to_event()
    }

    /// The canonical bytes inside a stored value, and the leaf hash recomputed from them.
    pub fn recompute_leaf(stored: &[u8]) -> Option<Hash> {
        let mut reader = Reader::new(stored);
        reader.bytes32().map(leaf_hash)
    }

    /// The event as a view borrowing its fields.
    pub fn view(&self) -> EventView<'_> {
        EventView {
            event_id: self.event_id,
            aggregate_type: self.aggregate_type.as_str().into(),
            aggregate_id: self.aggregate_id.as_str().into(),
            version: self.version,
            event_type: self.event_type.as_str().into(),
            payload_json: self.payload_json.as_str().into(),
            metadata_json: self.metadata_json.as_str().into(),
            note: self.note.as_deref().map(StoredText::from),
            created_at_micros: self.created_at_micros,
            issued_by_group: self.issued_by.group.as_str().into(),
            issued_by_user: self.issued_by.user.as_str().into(),
            hash: &self.hash,
            merkle_root: &self.merkle_root,
        }
    }
}

/// Text as the commit path stored it, not checked again on the way out.
///
/// The commit path stores only `str`s, and a read returns exactly the bytes stored (RocksDB
/// checks every block's checksum, and a sealed value's AEAD tag covers all of it), so a
/// scan that only copies a field to the wire sends these bytes as they are, the way
/// PostgreSQL sends stored text without validating it again. Re-validating the payload and
/// the issuer and metadata fields of every event was ~5% of the server's time on an
/// outbox page. [`StoredText::to_str`] checks when a caller needs a `str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredText<'a>(&'a [u8]);

impl<'a> StoredText<'a> {
    /// Bytes expected to be UTF-8; nothing relies on it until [`Self::to_str`] checks.
    pub fn new(bytes: &'a [u8]) -> Self {
        StoredText(bytes)
    }

    pub fn as_bytes(self) -> &'a [u8] {
        self.0
    }

    /// The text as a `str`; an error names the field when the stored bytes are not UTF-8.
    pub fn to_str(self, field: &'static str) -> Result<&'a str, EngineError> {
        std::str::from_utf8(self.0).map_err(|_| EngineError::corrupt(field, "not UTF-8"))
    }
}

/// Equal when the stored bytes are the text's: the way a scan matches a stored name.
impl PartialEq<&str> for StoredText<'_> {
    fn eq(&self, text: &&str) -> bool {
        self.0 == text.as_bytes()
    }
}

impl<'a> From<&'a str> for StoredText<'a> {
    fn from(text: &'a str) -> Self {
        StoredText(text.as_bytes())
    }
}

/// A committed event read in place: every text field borrows the stored record, so a scan
/// can look at an event (filter it, copy the columns it projects) without first copying all
/// of it into owned strings. Every text field, the names included, stays [`StoredText`]
/// until someone needs it as text: authorization and equality on names compare bytes.
/// Checking the three names of each of a page's 1,000 events as UTF-8 was ~6% of the
/// server's CPU per outbox page (BENCHMARKS.md, nineteenth pass).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventView<'a> {
    pub event_id: u64,
    pub aggregate_type: StoredText<'a>,
    pub aggregate_id: StoredText<'a>,
    pub version: u64,
    pub event_type: StoredText<'a>,
    pub payload_json: StoredText<'a>,
    pub metadata_json: StoredText<'a>,
    pub note: Option<StoredText<'a>>,
    pub created_at_micros: i64,
    pub issued_by_group: StoredText<'a>,
    pub issued_by_user: StoredText<'a>,
    pub hash: &'a Hash,
    pub merkle_root: &'a Hash,
}

impl<'a> EventView<'a> {
    /// Decodes a stored value in place. The hash is taken as stored; `verify` recomputes it.
    pub fn decode_stored(bytes: &'a [u8]) -> Result<Self, EngineError> {
        let corrupt = || EngineError::corrupt("event", "truncated or malformed event record");
        let mut reader = Reader::new(bytes);
        let canonical = reader.bytes32().ok_or_else(corrupt)?;
        let hash = reader.array_ref::<32>().ok_or_else(corrupt)?;
        let merkle_root = reader.array_ref::<32>().ok_or_else(corrupt)?;
        if !reader.is_empty() {
            return Err(corrupt());
        }
        Self::decode_canonical(canonical, hash, merkle_root).ok_or_else(corrupt)
    }

    fn decode_canonical(bytes: &'a [u8], hash: &'a Hash, merkle_root: &'a Hash) -> Option<Self> {
        let mut r = Reader::new(bytes);
        if r.u8()? != EVENT_FORMAT {
            return None;
        }
        let event_id = r.u64()?;
        let version = r.u64()?;
        let created_at_micros = r.i64()?;
        let aggregate_type = StoredText(r.bytes16()?);
        let aggregate_id = StoredText(r.bytes16()?);
        let event_type = StoredText(r.bytes16()?);
        let issued_by_group = StoredText(r.bytes16()?);
        let issued_by_user = StoredText(r.bytes16()?);
        let note = match r.u8()? {
            0 => None,
            1 => Some(StoredText(r.bytes16()?)),
            _ => return None,
        };
        let payload_json = StoredText(r.bytes32()?);
        let metadata_json = StoredText(r.bytes32()?);
        if !r.is_empty() {
            return None;
        }
        Some(Self {
            event_id,
            aggregate_type,
            aggregate_id,
            version,
            event_type,
            payload_json,
            metadata_json,
            note,
            created_at_micros,
            issued_by_group,
            issued_by_user,
            hash,
            merkle_root,
        })
    }

    /// An owned copy; an error when a text field is not UTF-8.
    pub fn to_event(&self) -> Result<Event, EngineError> {
        let owned = |text: StoredText<'_>, field| text.to_str(field).map(str::to_owned);
        Ok(Event {
            event_id: self.event_id,
            aggregate_type: owned(self.aggregate_type, "event aggregate type")?,
            aggregate_id: owned(self.aggregate_id, "event aggregate id")?,
            version: self.version,
            event_type: owned(self.event_type, "event type")?,
            payload_json: owned(self.payload_json, "event payload")?,
            metadata_json: owned(self.metadata_json, "event metadata")?,
            note: self.note.map(|n| owned(n, "event note")).transpose()?,
            created_at_micros: self.created_at_micros,
            issued_by: Issuer {
                group: owned(self.issued_by_group, "event issuer")?,
                user: owned(self.issued_by_user, "event issuer")?,
            },
            hash: *self.hash,
            merkle_root: *self.merkle_root,
        })
    }
}

/// The stored value from already-encoded canonical bytes (the commit path encodes them once
/// for the leaf hash and reuses them here).
pub fn encode_stored_parts(canonical: &[u8], hash: &Hash, merkle_root: &Hash) -> Vec<u8> {
    let mut out = Vec::with_capacity(canonical.len() + 4 + 64);
    put_bytes32(&mut out, canonical);
    out.extend_from_slice(hash);
    out.extend_from_slice(merkle_root);
    out
}

fn parse_object(what: &'static str, text: &str) -> Result<Map<String, Value>, EngineError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(EngineError::corrupt(what, "not a JSON object")),
        Err(err) => Err(EngineError::corrupt(what, err.to_string())),
    }
}

/// RFC 3339 UTC with microseconds, e.g. `2026-11-27T11:12:51.123456Z`.
pub fn format_timestamp_micros(micros: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(at) => at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => micros.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        Event {
            event_id: 42,
            aggregate_type: "order".into(),
            aggregate_id: "order-42".into(),
            version: 3,
            event_type: "order_paid".into(),
            payload_json: r#"{"status":"paid"}"#.into(),
            metadata_json: "{}".into(),
            note: Some("n".into()),
            created_at_micros: 1_700_000_000_123_456,
            issued_by: Issuer {
                group: "ops".into(),
                user: "alice".into(),
            },
            hash: [7; 32],
            merkle_root: [9; 32],
        }
    }

    #[test]
    fn stored_round_trip() {
        let event = sample();
        let decoded = Event::decode_stored(&event.encode_stored()).ok();
        assert_eq!(decoded, Some(event.clone()));
        assert_eq!(
            Event::recompute_leaf(&event.encode_stored()),
            Some(leaf_hash(&event.canonical_bytes()))
        );
    }

    #[test]
    fn every_visible_field_changes_the_leaf() {
        let base = leaf_hash(&sample().canonical_bytes());
        let mutations: Vec<fn(&mut Event)> = vec![
            |e| e.event_id += 1,
            |e| e.version += 1,
            |e| e.created_at_micros += 1,
            |e| e.aggregate_type.push('x'),
            |e| e.aggregate_id.push('x'),
            |e| e.event_type.push('x'),
            |e| e.issued_by.group.push('x'),
            |e| e.issued_by.user.push('x'),
            |e| e.note = None,
            |e| e.payload_json = r#"{"status":"paie"}"#.into(),
            |e| e.metadata_json = r#"{"a":1}"#.into(),
        ];
        for mutate in mutations {
            let mut event = sample();
            mutate(&mut event);
            assert_ne!(leaf_hash(&event.canonical_bytes()), base);
        }
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let bytes = sample().encode_stored();
        for len in 0..bytes.len() {
            assert!(Event::decode_stored(&bytes[..len]).is_err(), "len {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Event::decode_stored(&longer).is_err());
    }

    /// `stored` with the byte `offset` into the first `needle` replaced by 0xFF, which no
    /// UTF-8 text holds.
    fn with_byte_not_utf8(mut stored: Vec<u8>, needle: &[u8], offset: usize) -> Vec<u8> {
        let at = stored
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("needle in the record");
        stored[at + offset] = 0xFF;
        stored
    }

    #[test]
    fn stored_text_is_checked_only_when_read_as_text() {
        let mut event = sample();
        event.payload_json = r#"{"status":"paid"}"#.into();
        // The payload's `"paid"` (its `p`), not the event type's `order_paid`.
        let stored = with_byte_not_utf8(event.encode_stored(), b"\"paid", 1);
        // A scan copying the payload to the wire takes the bytes as stored ...
        let view = EventView::decode_stored(&stored).expect("decodes in place");
        assert_eq!(view.payload_json.as_bytes(), b"{\"status\":\"\xFFaid\"}");
        assert_eq!(view.metadata_json.to_str("m").ok(), Some("{}"));
        // ... while anything that needs a `str` gets an error naming the field, not a panic.
        let err = view.payload_json.to_str("event payload").unwrap_err();
        assert!(err.to_string().contains("event payload"), "{err}");
        assert!(view.to_event().is_err());
        assert!(Event::decode_stored(&stored).is_err());
    }

    #[test]
    fn names_are_checked_only_when_read_as_text() {
        // The aggregate id's `order-42`: its first byte, inside the record's names.
        let stored = with_byte_not_utf8(sample().encode_stored(), b"order-42", 0);
        // A scan compares and copies names as the bytes stored ...
        let view = EventView::decode_stored(&stored).expect("decodes in place");
        assert_eq!(view.aggregate_id.as_bytes(), b"\xFFrder-42");
        assert!(view.aggregate_type == "order" && view.event_type == "order_paid");
        assert!(view.aggregate_id != "order-42");
        // ... and a copy that needs text names the field it could not read.
        let err = view.to_event().unwrap_err();
        assert!(err.to_string().contains("event aggregate id"), "{err}");
        assert!(Event::decode_stored(&stored).is_err());
    }

    #[test]
    fn timestamps_render_in_utc() {
        assert_eq!(
            format_timestamp_micros(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
    }
}
