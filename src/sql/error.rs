//! Errors of the SQL front end, each with the SQLSTATE the server reports.

/// Why a SQL string could not be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// SQLSTATE 42601. `position` is PostgreSQL's (the 1-based character offset into the
    /// query string), when the parser reported one.
    #[error("syntax error: {message}")]
    Syntax {
        message: String,
        position: Option<u32>,
    },
    /// SQLSTATE 0A000: valid SQL outside the supported surface.
    #[error("{what} is not supported")]
    Unsupported { what: String, hint: String },
    /// SQLSTATE 0A000: a statement that would change or remove history.
    #[error("{what} is not allowed: events are immutable")]
    ImmutableEvents { what: String },
    /// SQLSTATE 42P01.
    #[error("relation \"{name}\" does not exist")]
    UnknownTable { name: String },
    /// SQLSTATE 42703.
    #[error("column \"{column}\" does not exist in \"{table}\"")]
    UnknownColumn { table: String, column: String },
    /// SQLSTATE 42701.
    #[error("column \"{column}\" specified more than once")]
    DuplicateColumn { column: String },
    /// SQLSTATE 42804: a value or operator applied to the wrong type.
    #[error("{message}")]
    TypeMismatch { message: String },
    /// SQLSTATE 22P02: a literal that does not convert to the type its context needs
    /// (`event_id = 'abc'`, invalid JSON in a json column, a negative LIMIT).
    #[error("{message}")]
    InvalidLiteral { message: String },
    /// SQLSTATE 23502: a required INSERT column absent or NULL.
    #[error(
        "null value in column \"{column}\" of relation \"events\" violates not-null constraint"
    )]
    MissingInsertColumn { column: String },
    /// SQLSTATE 42P02.
    #[error("there is no parameter {param}")]
    UnknownParameter { param: String },
    /// SQLSTATE 54001: a size or nesting limit was hit.
    #[error("statement too complex: {what}")]
    TooComplex { what: String },
}

impl SqlError {
    /// The SQLSTATE code the server sends in ErrorResponse.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            SqlError::Syntax { .. } => "42601",
            SqlError::Unsupported { .. } => "0A000",
            SqlError::ImmutableEvents { .. } => "0A000",
            SqlError::UnknownTable { .. } => "42P01",
            SqlError::UnknownColumn { .. } => "42703",
            SqlError::DuplicateColumn { .. } => "42701",
            SqlError::TypeMismatch { .. } => "42804",
            SqlError::InvalidLiteral { .. } => "22P02",
            SqlError::MissingInsertColumn { .. } => "23502",
            SqlError::UnknownParameter { .. } => "42P02",
            SqlError::TooComplex { .. } => "54001",
        }
    }

    /// The HINT field of ErrorResponse, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            SqlError::Unsupported { hint, .. } if !hint.is_empty() => Some(hint),
            SqlError::ImmutableEvents { .. } => Some(IMMUTABLE_HINT),
            SqlError::MissingInsertColumn { .. } => Some(
                "INSERT INTO events needs aggregate_type, aggregate_id, event_type and payload",
            ),
            SqlError::UnknownTable { .. } => Some(
                "the relations are events, outbox, aggregates and schemas; the functions are \
                 read_outbox(after, take), verify([aggregate_type [, aggregate_id]]) and \
                 apply_schema(source)",
            ),
            _ => None,
        }
    }

    /// The error position (1-based character offset), when known.
    pub fn position(&self) -> Option<u32> {
        match self {
            SqlError::Syntax { position, .. } => *position,
            _ => None,
        }
    }

    pub(crate) fn unsupported(what: impl Into<String>, hint: impl Into<String>) -> SqlError {
        SqlError::Unsupported {
            what: what.into(),
            hint: hint.into(),
        }
    }

    pub(crate) fn mismatch(message: impl Into<String>) -> SqlError {
        SqlError::TypeMismatch {
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> SqlError {
        SqlError::InvalidLiteral {
            message: message.into(),
        }
    }

    pub(crate) fn too_complex(what: impl Into<String>) -> SqlError {
        SqlError::TooComplex { what: what.into() }
    }
}

pub(crate) const IMMUTABLE_HINT: &str =
    "the SQL surface is append and read: add events with INSERT INTO events, read with SELECT, \
     change schemas with CALL apply_schema(source)";
