//! The one place where errors become SQLSTATEs. Every error a client can cause leaves here
//! as an `ErrorInfo` with a fitting code and a message that names the problem.

use pgwire::error::{ErrorInfo, PgWireError};

use crate::engine::{EngineError, ViolationClass};

/// An error on its way to the client (boxed: `ErrorInfo` is large).
pub type Failure = Box<ErrorInfo>;

/// An ERROR-severity response.
pub fn error(code: &str, message: impl Into<String>) -> Failure {
    Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    ))
}

/// With DETAIL and HINT.
pub fn error_with(
    code: &str,
    message: impl Into<String>,
    detail: Option<String>,
    hint: Option<String>,
) -> Failure {
    let mut info = error(code, message);
    info.detail = detail;
    info.hint = hint;
    info
}

/// Engine errors by class.
pub fn engine_error(err: &EngineError) -> Failure {
    match err {
        EngineError::Conflict { .. } => error_with(
            "40001",
            err.to_string(),
            None,
            Some("re-read the aggregate and retry with its current version".into()),
        ),
        EngineError::InvalidName { .. } | EngineError::InvalidValue { .. } => {
            error("22023", err.to_string())
        }
        EngineError::TooLarge { .. } => error("54000", err.to_string()),
        EngineError::IdempotencyMismatch { .. } => error_with(
            "23505",
            err.to_string(),
            None,
            Some("use a new idempotency key for a different append".into()),
        ),
        EngineError::SchemaViolation(rejection) => {
            let code = match rejection.kind {
                ViolationClass::Check | ViolationClass::NoSchema => "23514",
                ViolationClass::ReferenceMissing => "23503",
                ViolationClass::Locked => "55000",
            };
            let detail = match &rejection.field {
                Some(field) => format!("field: {field}, rule: {}", rejection.rule),
                None => format!("rule: {}", rejection.rule),
            };
            let hint = matches!(rejection.kind, ViolationClass::NoSchema)
                .then(|| "apply a schema for this aggregate type (dbx schema apply) or start the server with --restrict default".to_owned());
            error_with(code, err.to_string(), Some(detail), hint)
        }
        EngineError::IncompatibleStore(_) | EngineError::EncryptionKey(_) => {
            error("XX000", err.to_string())
        }
        EngineError::Corrupt { .. } | EngineError::Tampered { .. } => {
            error("XX001", err.to_string())
        }
        EngineError::Closed => Box::new(ErrorInfo::new(
            "FATAL".into(),
            "57P01".into(),
            "the server is shutting down".into(),
        )),
        EngineError::Storage(_) | EngineError::Io { .. } => error("58030", err.to_string()),
    }
}

/// Into a pgwire error (what handlers return).
pub fn user_error(info: Failure) -> PgWireError {
    PgWireError::UserError(info)
}

/// Whether an error is an authentication failure that must look the same whatever the cause.
pub fn is_auth_failure(err: &PgWireError) -> bool {
    matches!(
        err,
        PgWireError::InvalidPassword(_)
            | PgWireError::InvalidScramMessage(_)
            | PgWireError::UnsupportedSASLAuthMethod(_)
            | PgWireError::InvalidSASLState
            | PgWireError::FailedToCoercePasswordMessage
            | PgWireError::NoAuthenticationInProgress
    )
}

/// The one message for every authentication failure.
pub fn auth_failure(user: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        "28P01".into(),
        format!("password authentication failed for user \"{user}\""),
    )))
}
