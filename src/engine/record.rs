//! The materialized aggregate record: current version, state, Merkle frontier and times.
//! One point lookup answers "what is this aggregate now", whatever its history length.

use serde_json::{Map, Value};

use super::codec::{put_bytes32, Reader};
use super::error::EngineError;
use super::merkle::{Frontier, Hash, MAX_FRONTIER_LEN};

const RECORD_FORMAT: u8 = 1;

/// An aggregate's current materialized record.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateRecord {
    pub version: u64,
    pub last_event_id: u64,
    pub created_at_micros: i64,
    pub updated_at_micros: i64,
    pub merkle_root: Hash,
    pub frontier: Frontier,
    /// Compact JSON text of the state object.
    pub state_json: String,
}

impl AggregateRecord {
    pub fn encode(&self) -> Vec<u8> {
        let peaks = self.frontier.peaks();
        let mut out = Vec::with_capacity(64 + peaks.len() * 32 + self.state_json.len());
        out.push(RECORD_FORMAT);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.last_event_id.to_be_bytes());
        out.extend_from_slice(&self.created_at_micros.to_be_bytes());
        out.extend_from_slice(&self.updated_at_micros.to_be_bytes());
        out.extend_from_slice(&self.merkle_root);
        out.extend_from_slice(&self.frontier.leaves().to_be_bytes());
        // A u64 leaf count has at most 64 set bits, so the count fits a byte.
        out.push(u8::try_from(peaks.len()).unwrap_or(u8::MAX));
        for peak in peaks {
            out.extend_from_slice(peak);
        }
        put_bytes32(&mut out, self.state_json.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EngineError> {
        Self::try_decode(bytes)
            .ok_or_else(|| EngineError::corrupt("aggregate record", "truncated or malformed"))
    }

    fn try_decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader::new(bytes);
        if r.u8()? != RECORD_FORMAT {
            return None;
        }
        let version = r.u64()?;
        let last_event_id = r.u64()?;
        let created_at_micros = r.i64()?;
        let updated_at_micros = r.i64()?;
        let merkle_root = r.array::<32>()?;
        let leaves = r.u64()?;
        let peak_count = usize::from(r.u8()?);
        if peak_count > MAX_FRONTIER_LEN {
            return None;
        }
        let mut peaks = Vec::with_capacity(peak_count);
        for _ in 0..peak_count {
            peaks.push(r.array::<32>()?);
        }
        let frontier = Frontier::from_parts(leaves, peaks)?;
        let state_json = std::str::from_utf8(r.bytes32()?).ok()?.to_owned();
        if !r.is_empty() {
            return None;
        }
        Some(Self {
            version,
            last_event_id,
            created_at_micros,
            updated_at_micros,
            merkle_root,
            frontier,
            state_json,
        })
    }

    /// The state parsed as a JSON object.
    pub fn state(&self) -> Result<Map<String, Value>, EngineError> {
        parse_state(&self.state_json)
    }
}

/// A stored state's text parsed as the JSON object it must be.
pub(crate) fn parse_state(text: &str) -> Result<Map<String, Value>, EngineError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(EngineError::corrupt("aggregate state", "not a JSON object")),
    }
}

/// Snapshot value: the last event id at that version, then the state JSON.
pub fn encode_snapshot(last_event_id: u64, state_json: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + state_json.len());
    out.extend_from_slice(&last_event_id.to_be_bytes());
    put_bytes32(&mut out, state_json.as_bytes());
    out
}

/// Decodes a snapshot value into (last event id, state JSON).
pub fn decode_snapshot(bytes: &[u8]) -> Result<(u64, String), EngineError> {
    let mut r = Reader::new(bytes);
    let decoded = (|| {
        let id = r.u64()?;
        let state = std::str::from_utf8(r.bytes32()?).ok()?.to_owned();
        r.is_empty().then_some((id, state))
    })();
    decoded.ok_or_else(|| EngineError::corrupt("snapshot", "truncated or malformed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::merkle::leaf_hash;

    #[test]
    fn record_round_trip_and_truncation() {
        let mut frontier = Frontier::default();
        for i in 0u8..5 {
            frontier.push(leaf_hash(&[i]));
        }
        let record = AggregateRecord {
            version: 5,
            last_event_id: 99,
            created_at_micros: 1,
            updated_at_micros: 2,
            merkle_root: frontier.root(),
            frontier,
            state_json: r#"{"status":"open"}"#.into(),
        };
        let bytes = record.encode();
        assert_eq!(AggregateRecord::decode(&bytes).ok(), Some(record));
        for len in 0..bytes.len() {
            assert!(AggregateRecord::decode(&bytes[..len]).is_err());
        }
        let snap = encode_snapshot(7, "{}");
        assert_eq!(decode_snapshot(&snap).ok(), Some((7, "{}".to_string())));
        assert!(decode_snapshot(&snap[..5]).is_err());
    }
}
