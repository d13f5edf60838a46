//! Shapes of names and ids. Keys are built from these, so the rules here are also what keeps
//! the key layout unambiguous: none of them can contain the 0x00 separator.

use super::error::EngineError;
use super::options::{
    MAX_AGGREGATE_ID_LEN, MAX_IDEMPOTENCY_KEY_LEN, MAX_ISSUER_NAME_LEN, MAX_TYPE_NAME_LEN,
};

/// `^[a-z][a-z0-9_]*$`, at most [`MAX_TYPE_NAME_LEN`] bytes.
pub fn check_type_name(what: &'static str, value: &str) -> Result<(), EngineError> {
    let invalid = |reason: String| EngineError::InvalidName {
        what,
        value: truncate(value, 80),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("must not be empty".into()));
    }
    if value.len() > MAX_TYPE_NAME_LEN {
        return Err(invalid(format!("longer than {MAX_TYPE_NAME_LEN} bytes")));
    }
    let bytes = value.as_bytes();
    let starts_ok = bytes[0].is_ascii_lowercase();
    let rest_ok = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
    if !starts_ok || !rest_ok {
        return Err(invalid(
            "must be snake_case: a lowercase letter, then lowercase letters, digits or '_'".into(),
        ));
    }
    Ok(())
}

/// `^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`.
pub fn check_aggregate_id(value: &str) -> Result<(), EngineError> {
    let invalid = |reason: String| EngineError::InvalidName {
        what: "aggregate id",
        value: truncate(value, 80),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("must not be empty".into()));
    }
    if value.len() > MAX_AGGREGATE_ID_LEN {
        return Err(invalid(format!("longer than {MAX_AGGREGATE_ID_LEN} bytes")));
    }
    let bytes = value.as_bytes();
    let starts_ok = bytes[0].is_ascii_alphanumeric();
    let rest_ok = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-');
    if !starts_ok || !rest_ok {
        return Err(invalid("must match [A-Za-z0-9][A-Za-z0-9_-]{0,127}".into()));
    }
    Ok(())
}

/// Printable ASCII, 1..=128 bytes.
pub fn check_idempotency_key(value: &str) -> Result<(), EngineError> {
    if value.is_empty()
        || value.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !value.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        return Err(EngineError::InvalidName {
            what: "idempotency key",
            value: truncate(value, 80),
            reason: format!("must be 1..={MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters"),
        });
    }
    Ok(())
}

/// Issuer group/user: any text without control characters, at most 128 bytes.
pub fn check_issuer_name(what: &'static str, value: &str) -> Result<(), EngineError> {
    if value.len() > MAX_ISSUER_NAME_LEN || value.chars().any(char::is_control) {
        return Err(EngineError::InvalidName {
            what,
            value: truncate(value, 80),
            reason: format!(
                "must be at most {MAX_ISSUER_NAME_LEN} bytes without control characters"
            ),
        });
    }
    Ok(())
}

/// Cuts `value` to at most `max` characters for an error message.
pub fn truncate(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names() {
        for ok in ["order", "order_paid", "a1", "x_"] {
            assert!(check_type_name("aggregate type", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Order",
            "1order",
            "order-paid",
            "_x",
            "ordér",
            &"a".repeat(65),
        ] {
            assert!(check_type_name("aggregate type", bad).is_err(), "{bad}");
        }
        assert!(check_type_name("aggregate type", &"a".repeat(64)).is_ok());
    }

    #[test]
    fn aggregate_ids() {
        for ok in ["order-42", "A", "9_x-Y", &"a".repeat(128)] {
            assert!(check_aggregate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "_x", "a b", "a#b", "a\0b", &"a".repeat(129)] {
            assert!(check_aggregate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn idempotency_keys_and_issuers() {
        assert!(check_idempotency_key("retry-1 ok").is_ok());
        assert!(check_idempotency_key("").is_err());
        assert!(check_idempotency_key("é").is_err());
        assert!(check_idempotency_key(&"k".repeat(129)).is_err());
        assert!(check_issuer_name("user", "alice").is_ok());
        assert!(check_issuer_name("user", "a\nb").is_err());
    }

    #[test]
    fn truncate_counts_characters() {
        assert_eq!(truncate("ééé", 2), "éé…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
