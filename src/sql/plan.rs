//! Plan types: what [`crate::sql::parse`] produces and the executor consumes.

use super::catalog::CatalogAnswer;
use super::session::SessionStatement;

/// A PostgreSQL type as it appears on the wire (RowDescription, ParameterDescription).
///
/// Only the types EventDBX returns or accepts, plus those its catalog answers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgType {
    Bool,
    Bytea,
    /// PostgreSQL's one-byte internal `"char"` (oid 18), as in `pg_class.relkind`.
    Char,
    Name,
    Int8,
    Int2,
    Int2Vector,
    Int4,
    Regproc,
    Text,
    Oid,
    OidVector,
    Json,
    Float4,
    Float8,
    /// The type of an untyped literal or parameter nothing gives a type to.
    Unknown,
    Varchar,
    Date,
    Timestamp,
    Timestamptz,
    Numeric,
    Regclass,
    Regtype,
    Regnamespace,
    Jsonb,
    BoolArray,
    CharArray,
    NameArray,
    Int2Array,
    Int4Array,
    TextArray,
    VarcharArray,
    Int8Array,
    OidArray,
    JsonArray,
    JsonbArray,
    TimestamptzArray,
}

impl PgType {
    /// Every type, for lookups by oid or name.
    pub const ALL: [PgType; 37] = [
        PgType::Bool,
        PgType::Bytea,
        PgType::Char,
        PgType::Name,
        PgType::Int8,
        PgType::Int2,
        PgType::Int2Vector,
        PgType::Int4,
        PgType::Regproc,
        PgType::Text,
        PgType::Oid,
        PgType::OidVector,
        PgType::Json,
        PgType::Float4,
        PgType::Float8,
        PgType::Unknown,
        PgType::Varchar,
        PgType::Date,
        PgType::Timestamp,
        PgType::Timestamptz,
        PgType::Numeric,
        PgType::Regclass,
        PgType::Regtype,
        PgType::Regnamespace,
        PgType::Jsonb,
        PgType::BoolArray,
        PgType::CharArray,
        PgType::NameArray,
        PgType::Int2Array,
        PgType::Int4Array,
        PgType::TextArray,
        PgType::VarcharArray,
        PgType::Int8Array,
        PgType::OidArray,
        PgType::JsonArray,
        PgType::JsonbArray,
        PgType::TimestamptzArray,
    ];

    /// The type's oid in `pg_type` (PostgreSQL 15).
    pub fn oid(&self) -> u32 {
        match self {
            PgType::Bool => 16,
            PgType::Bytea => 17,
            PgType::Char => 18,
            PgType::Name => 19,
            PgType::Int8 => 20,
            PgType::Int2 => 21,
            PgType::Int2Vector => 22,
            PgType::Int4 => 23,
            PgType::Regproc => 24,
            PgType::Text => 25,
            PgType::Oid => 26,
            PgType::OidVector => 30,
            PgType::Json => 114,
            PgType::JsonArray => 199,
            PgType::Float4 => 700,
            PgType::Float8 => 701,
            PgType::Unknown => 705,
            PgType::BoolArray => 1000,
            PgType::CharArray => 1002,
            PgType::NameArray => 1003,
            PgType::Int2Array => 1005,
            PgType::Int4Array => 1007,
            PgType::TextArray => 1009,
            PgType::VarcharArray => 1015,
            PgType::Int8Array => 1016,
            PgType::OidArray => 1028,
            PgType::Varchar => 1043,
            PgType::Date => 1082,
            PgType::Timestamp => 1114,
            PgType::Timestamptz => 1184,
            PgType::TimestamptzArray => 1185,
            PgType::Numeric => 1700,
            PgType::Regclass => 2205,
            PgType::Regtype => 2206,
            PgType::Jsonb => 3802,
            PgType::JsonbArray => 3807,
            PgType::Regnamespace => 4089,
        }
    }

    /// The type's `pg_type.typname` (`int8`, `timestamptz`, `_text`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            PgType::Bool => "bool",
            PgType::Bytea => "bytea",
            PgType::Char => "char",
            PgType::Name => "name",
            PgType::Int8 => "int8",
            PgType::Int2 => "int2",
            PgType::Int2Vector => "int2vector",
            PgType::Int4 => "int4",
            PgType::Regproc => "regproc",
            PgType::Text => "text",
            PgType::Oid => "oid",
            PgType::OidVector => "oidvector",
            PgType::Json => "json",
            PgType::Float4 => "float4",
            PgType::Float8 => "float8",
            PgType::Unknown => "unknown",
            PgType::Varchar => "varchar",
            PgType::Date => "date",
            PgType::Timestamp => "timestamp",
            PgType::Timestamptz => "timestamptz",
            PgType::Numeric => "numeric",
            PgType::Regclass => "regclass",
            PgType::Regtype => "regtype",
            PgType::Regnamespace => "regnamespace",
            PgType::Jsonb => "jsonb",
            PgType::BoolArray => "_bool",
            PgType::CharArray => "_char",
            PgType::NameArray => "_name",
            PgType::Int2Array => "_int2",
            PgType::Int4Array => "_int4",
            PgType::TextArray => "_text",
            PgType::VarcharArray => "_varchar",
            PgType::Int8Array => "_int8",
            PgType::OidArray => "_oid",
            PgType::JsonArray => "_json",
            PgType::JsonbArray => "_jsonb",
            PgType::TimestamptzArray => "_timestamptz",
        }
    }

    /// What `pg_catalog.format_type(oid, -1)` prints (`bigint`, `timestamp with time zone`, ...).
    pub fn format_type(&self) -> &'static str {
        match self {
            PgType::Bool => "boolean",
            PgType::Char => "\"char\"",
            PgType::Int8 => "bigint",
            PgType::Int2 => "smallint",
            PgType::Int4 => "integer",
            PgType::Float4 => "real",
            PgType::Float8 => "double precision",
            PgType::Varchar => "character varying",
            PgType::Timestamp => "timestamp without time zone",
            PgType::Timestamptz => "timestamp with time zone",
            PgType::BoolArray => "boolean[]",
            PgType::CharArray => "\"char\"[]",
            PgType::NameArray => "name[]",
            PgType::Int2Array => "smallint[]",
            PgType::Int4Array => "integer[]",
            PgType::TextArray => "text[]",
            PgType::VarcharArray => "character varying[]",
            PgType::Int8Array => "bigint[]",
            PgType::OidArray => "oid[]",
            PgType::JsonArray => "json[]",
            PgType::JsonbArray => "jsonb[]",
            PgType::TimestamptzArray => "timestamp with time zone[]",
            other => other.name(),
        }
    }

    /// `pg_type.typlen`: the fixed size in bytes, or -1 for variable length, -2 for C strings.
    pub fn typlen(&self) -> i16 {
        match self {
            PgType::Bool | PgType::Char => 1,
            PgType::Int2 => 2,
            PgType::Int4
            | PgType::Oid
            | PgType::Float4
            | PgType::Date
            | PgType::Regproc
            | PgType::Regclass
            | PgType::Regtype
            | PgType::Regnamespace => 4,
            PgType::Int8 | PgType::Float8 | PgType::Timestamp | PgType::Timestamptz => 8,
            PgType::Name => 64,
            PgType::Unknown => -2,
            _ => -1,
        }
    }

    /// The array type whose elements are `self`, if PostgreSQL has one we know.
    pub fn array_type(&self) -> Option<PgType> {
        Some(match self {
            PgType::Bool => PgType::BoolArray,
            PgType::Char => PgType::CharArray,
            PgType::Name => PgType::NameArray,
            PgType::Int2 => PgType::Int2Array,
            PgType::Int4 => PgType::Int4Array,
            PgType::Text | PgType::Unknown => PgType::TextArray,
            PgType::Varchar => PgType::VarcharArray,
            PgType::Int8 => PgType::Int8Array,
            PgType::Oid => PgType::OidArray,
            PgType::Json => PgType::JsonArray,
            PgType::Jsonb => PgType::JsonbArray,
            PgType::Timestamptz => PgType::TimestamptzArray,
            _ => return None,
        })
    }

    /// The element type of an array (or vector) type.
    pub fn element_type(&self) -> Option<PgType> {
        Some(match self {
            PgType::BoolArray => PgType::Bool,
            PgType::CharArray => PgType::Char,
            PgType::NameArray => PgType::Name,
            PgType::Int2Array | PgType::Int2Vector => PgType::Int2,
            PgType::Int4Array => PgType::Int4,
            PgType::TextArray => PgType::Text,
            PgType::VarcharArray => PgType::Varchar,
            PgType::Int8Array => PgType::Int8,
            PgType::OidArray | PgType::OidVector => PgType::Oid,
            PgType::JsonArray => PgType::Json,
            PgType::JsonbArray => PgType::Jsonb,
            PgType::TimestamptzArray => PgType::Timestamptz,
            _ => return None,
        })
    }

    /// Looks a type up by its `pg_type` oid.
    pub fn from_oid(oid: u32) -> Option<PgType> {
        PgType::ALL.iter().copied().find(|t| t.oid() == oid)
    }

    /// Looks a type up by a name as written in SQL (`int8`, `bigint`, `timestamptz`,
    /// `character varying`, `_text`, ...), case-insensitively.
    pub fn from_sql_name(name: &str) -> Option<PgType> {
        let lower = name.to_ascii_lowercase();
        let ty = match lower.as_str() {
            "bool" | "boolean" => PgType::Bool,
            "bytea" => PgType::Bytea,
            "char" | "\"char\"" => PgType::Char,
            "name" => PgType::Name,
            "int8" | "bigint" => PgType::Int8,
            "int2" | "smallint" => PgType::Int2,
            "int4" | "int" | "integer" => PgType::Int4,
            "text" => PgType::Text,
            "varchar" | "character varying" => PgType::Varchar,
            "oid" => PgType::Oid,
            "json" => PgType::Json,
            "jsonb" => PgType::Jsonb,
            "float4" | "real" => PgType::Float4,
            "float8" | "double precision" => PgType::Float8,
            "numeric" | "decimal" => PgType::Numeric,
            "date" => PgType::Date,
            "timestamp" | "timestamp without time zone" => PgType::Timestamp,
            "timestamptz" | "timestamp with time zone" => PgType::Timestamptz,
            "regproc" => PgType::Regproc,
            "regclass" => PgType::Regclass,
            "regtype" => PgType::Regtype,
            "regnamespace" => PgType::Regnamespace,
            "unknown" => PgType::Unknown,
            "int2vector" => PgType::Int2Vector,
            "oidvector" => PgType::OidVector,
            other => return PgType::ALL.iter().copied().find(|t| t.name() == other),
        };
        Some(ty)
    }

    /// Broad type family, used to reject comparisons PostgreSQL has no operator for.
    pub(crate) fn family(&self) -> TypeFamily {
        match self {
            PgType::Bool => TypeFamily::Bool,
            PgType::Int2
            | PgType::Int4
            | PgType::Int8
            | PgType::Float4
            | PgType::Float8
            | PgType::Numeric
            | PgType::Oid => TypeFamily::Number,
            PgType::Text | PgType::Varchar | PgType::Name | PgType::Char => TypeFamily::String,
            PgType::Json | PgType::Jsonb => TypeFamily::Json,
            PgType::Timestamp | PgType::Timestamptz | PgType::Date => TypeFamily::Time,
            PgType::Unknown => TypeFamily::Unknown,
            _ => TypeFamily::Other,
        }
    }
}

/// See [`PgType::family`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeFamily {
    Bool,
    Number,
    String,
    Json,
    Time,
    Unknown,
    Other,
}

/// One result column: what RowDescription announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: PgType,
}

impl Column {
    pub fn new(name: impl Into<String>, ty: PgType) -> Column {
        Column {
            name: name.into(),
            ty,
        }
    }
}

/// A value in a plan: a literal or a bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Null,
    Bool(bool),
    Int(i64),
    /// A numeric literal with a fraction or exponent (`1.5`, `2e3`).
    Float(f64),
    /// A string literal. JSON literals (`'{"a":1}'::jsonb`, or a string written into a json
    /// column) are `Text` holding the JSON source, already checked to be valid JSON.
    Text(String),
    /// `$n`: `index` is 0-based (`$1` is 0); `cast` is the explicit `::type`, if any.
    Param {
        index: usize,
        cast: Option<PgType>,
    },
    /// `a || b || ...`: text concatenation of literals and parameters (NULL if any part is),
    /// as in `'order-' || $1`.
    Concat(Vec<Operand>),
}

/// The virtual relations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Events,
    Outbox,
    Aggregates,
    Schemas,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::Events,
        Table::Aggregates,
        Table::Outbox,
        Table::Schemas,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Outbox => "outbox",
            Table::Aggregates => "aggregates",
            Table::Schemas => "schemas",
        }
    }

    /// The stable fake `pg_class.oid` the catalog answers use.
    pub fn oid(&self) -> u32 {
        match self {
            Table::Events => 16385,
            Table::Aggregates => 16386,
            Table::Outbox => 16387,
            Table::Schemas => 16388,
        }
    }

    /// Looks a relation up by its (already case-folded) name.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.iter().copied().find(|t| t.name() == name)
    }

    pub fn from_oid(oid: i64) -> Option<Table> {
        Table::ALL
            .iter()
            .copied()
            .find(|t| i64::from(t.oid()) == oid)
    }

    /// The columns in table order (what `SELECT *` returns).
    pub fn columns(&self) -> &'static [ColumnRef] {
        use ColumnRef::*;
        match self {
            Table::Events | Table::Outbox => &[
                EventId,
                AggregateType,
                AggregateId,
                Version,
                EventType,
                Payload,
                Metadata,
                Note,
                CreatedAt,
                IssuedBy,
                Hash,
                MerkleRoot,
            ],
            Table::Aggregates => &[
                AggregateType,
                AggregateId,
                Version,
                State,
                MerkleRoot,
                CreatedAt,
                UpdatedAt,
            ],
            Table::Schemas => &[AggregateType, Schema, SchemaVersion, Hidden, AppliedAt],
        }
    }

    /// The column of this table with that (case-folded) name.
    pub fn column(&self, name: &str) -> Option<ColumnRef> {
        self.columns().iter().copied().find(|c| c.name() == name)
    }

    /// Whether the column is never NULL in this table (`attnotnull` in the catalog).
    pub fn not_null(&self, column: ColumnRef) -> bool {
        !matches!(
            (self, column),
            (
                Table::Events | Table::Outbox,
                ColumnRef::Metadata | ColumnRef::Note | ColumnRef::IssuedBy
            )
        )
    }
}

/// A column of one of the virtual tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnRef {
    EventId,
    AggregateType,
    AggregateId,
    Version,
    EventType,
    Payload,
    Metadata,
    Note,
    CreatedAt,
    IssuedBy,
    Hash,
    MerkleRoot,
    State,
    UpdatedAt,
    Schema,
    SchemaVersion,
    Hidden,
    AppliedAt,
}

impl ColumnRef {
    pub fn name(&self) -> &'static str {
        match self {
            ColumnRef::EventId => "event_id",
            ColumnRef::AggregateType => "aggregate_type",
            ColumnRef::AggregateId => "aggregate_id",
            ColumnRef::Version => "version",
            ColumnRef::EventType => "event_type",
            ColumnRef::Payload => "payload",
            ColumnRef::Metadata => "metadata",
            ColumnRef::Note => "note",
            ColumnRef::CreatedAt => "created_at",
            ColumnRef::IssuedBy => "issued_by",
            ColumnRef::Hash => "hash",
            ColumnRef::MerkleRoot => "merkle_root",
            ColumnRef::State => "state",
            ColumnRef::UpdatedAt => "updated_at",
            ColumnRef::Schema => "schema",
            ColumnRef::SchemaVersion => "schema_version",
            ColumnRef::Hidden => "hidden",
            ColumnRef::AppliedAt => "applied_at",
        }
    }

    pub fn ty(&self) -> PgType {
        match self {
            ColumnRef::EventId | ColumnRef::Version | ColumnRef::SchemaVersion => PgType::Int8,
            ColumnRef::AggregateType
            | ColumnRef::AggregateId
            | ColumnRef::EventType
            | ColumnRef::Note
            | ColumnRef::Hash
            | ColumnRef::MerkleRoot => PgType::Text,
            ColumnRef::Payload
            | ColumnRef::Metadata
            | ColumnRef::IssuedBy
            | ColumnRef::State
            | ColumnRef::Schema => PgType::Json,
            ColumnRef::CreatedAt | ColumnRef::UpdatedAt | ColumnRef::AppliedAt => {
                PgType::Timestamptz
            }
            ColumnRef::Hidden => PgType::Bool,
        }
    }
}

/// `INSERT INTO events (...) VALUES (...), ... [RETURNING ...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertEvents {
    /// The target columns in the order written; each row has one operand per column.
    pub columns: Vec<InsertColumn>,
    pub rows: Vec<Vec<Operand>>,
    /// Items over the `events` columns; empty without RETURNING.
    pub returning: Vec<SelectItem>,
    /// The payload and metadata literals of a one-row INSERT, parsed once when the statement
    /// is planned. A prepared INSERT runs many times with the same literals, and parsing
    /// them again on every run was a tenth of a worker's CPU per append. `None` for a
    /// multi-row INSERT, which is rarely run twice and whose parsed literals would hold
    /// several times the memory of its text.
    pub literal_objects: Option<LiteralObjects>,
}

/// JSON object literals of an INSERT's one row, parsed (see [`InsertEvents::literal_objects`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LiteralObjects {
    /// `None` when the payload is not a literal JSON object. Shared with every append the
    /// statement makes (`NewEvent::payload`).
    pub payload: Option<std::sync::Arc<crate::payload::Payload>>,
    /// `None` when the metadata is not a literal JSON object.
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The columns an INSERT may name. `expected_version` and `idempotency_key` are write-only
/// (they are not columns of `events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InsertColumn {
    AggregateType,
    AggregateId,
    EventType,
    Payload,
    Metadata,
    Note,
    ExpectedVersion,
    IdempotencyKey,
}

impl InsertColumn {
    pub const ALL: [InsertColumn; 8] = [
        InsertColumn::AggregateType,
        InsertColumn::AggregateId,
        InsertColumn::EventType,
        InsertColumn::Payload,
        InsertColumn::Metadata,
        InsertColumn::Note,
        InsertColumn::ExpectedVersion,
        InsertColumn::IdempotencyKey,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            InsertColumn::AggregateType => "aggregate_type",
            InsertColumn::AggregateId => "aggregate_id",
            InsertColumn::EventType => "event_type",
            InsertColumn::Payload => "payload",
            InsertColumn::Metadata => "metadata",
            InsertColumn::Note => "note",
            InsertColumn::ExpectedVersion => "expected_version",
            InsertColumn::IdempotencyKey => "idempotency_key",
        }
    }

    pub fn from_name(name: &str) -> Option<InsertColumn> {
        InsertColumn::ALL.iter().copied().find(|c| c.name() == name)
    }

    /// The type a value for this column has (what a `$n` in it is described as).
    pub fn ty(&self) -> PgType {
        match self {
            InsertColumn::Payload | InsertColumn::Metadata => PgType::Json,
            InsertColumn::ExpectedVersion => PgType::Int8,
            _ => PgType::Text,
        }
    }

    /// Columns every INSERT must name, with a non-NULL value.
    pub fn required(&self) -> bool {
        matches!(
            self,
            InsertColumn::AggregateType
                | InsertColumn::AggregateId
                | InsertColumn::EventType
                | InsertColumn::Payload
        )
    }
}

/// `SELECT ... FROM events|outbox|aggregates|schemas ...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub table: Table,
    pub items: Vec<SelectItem>,
    /// Conjunction: a row is returned when every predicate holds.
    pub filters: Vec<Predicate>,
    /// `(column, descending)`, outermost first.
    pub order_by: Vec<(ColumnRef, bool)>,
    pub limit: Option<Operand>,
    pub offset: Option<Operand>,
}

/// One item of a select list (or of RETURNING).
#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    Column {
        column: ColumnRef,
        alias: Option<String>,
    },
    /// `col -> 'a' -> 0 ->> 'b'`: `path` holds the keys (`Text`) and indexes (`Int`) in order,
    /// or parameters; `as_text` is true when the last step is `->>` (or `#>>`).
    Json {
        column: ColumnRef,
        path: Vec<Operand>,
        as_text: bool,
        alias: Option<String>,
    },
    /// `COUNT(*)` (or `COUNT(1)`), only ever the sole item.
    CountStar { alias: Option<String> },
    /// `*` or `table.*`.
    Wildcard,
}

/// A WHERE conjunct, normalized so the column is on the left.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    Compare {
        left: ValueRef,
        op: CompareOp,
        right: Operand,
    },
    In {
        left: ValueRef,
        values: Vec<Operand>,
    },
    IsNull {
        left: ValueRef,
        negated: bool,
    },
}

/// The column side of a predicate.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueRef {
    Column(ColumnRef),
    Json {
        column: ColumnRef,
        path: Vec<Operand>,
        as_text: bool,
    },
}

impl ValueRef {
    /// The type of the value: the column's, `json` for `->`, `text` for `->>`.
    pub fn ty(&self) -> PgType {
        match self {
            ValueRef::Column(c) => c.ty(),
            ValueRef::Json { as_text: true, .. } => PgType::Text,
            ValueRef::Json { column, .. } => column.ty(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl CompareOp {
    /// The operator with its operands swapped (`5 < x` is `x > 5`).
    pub fn flipped(&self) -> CompareOp {
        match self {
            CompareOp::Eq => CompareOp::Eq,
            CompareOp::NotEq => CompareOp::NotEq,
            CompareOp::Lt => CompareOp::Gt,
            CompareOp::LtEq => CompareOp::GtEq,
            CompareOp::Gt => CompareOp::Lt,
            CompareOp::GtEq => CompareOp::LtEq,
        }
    }
}

/// Whether a table function was reached with `CALL f(...)` or `SELECT * FROM f(...)`;
/// it decides the command tag (`CALL` or `SELECT n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallForm {
    Call,
    Select,
}

/// A scalar the server evaluates for `SELECT <expr>, ...` without FROM.
#[derive(Debug, Clone, PartialEq)]
pub enum ScalarExpr {
    /// A literal or parameter; `ty` is the result column's type (`SELECT 1` is int4,
    /// `SELECT 'x'` is text, `SELECT $1::int8` is int8).
    Value {
        value: Operand,
        ty: PgType,
    },
    /// `version()`.
    Version,
    /// `current_setting(name [, missing_ok])`.
    CurrentSetting {
        name: Operand,
        missing_ok: bool,
    },
    /// `current_schema()` / `current_schema`.
    CurrentSchema,
    SessionUser,
    CurrentUser,
    CurrentDatabase,
    PgBackendPid,
    /// `now()`, `current_timestamp`, `transaction_timestamp()`.
    Now,
    /// `pg_sleep(seconds)`: waits (cancellable), returns NULL (type void, sent as text).
    Sleep {
        seconds: Operand,
    },
}

impl ScalarExpr {
    pub fn ty(&self) -> PgType {
        match self {
            ScalarExpr::Value { ty, .. } => *ty,
            ScalarExpr::Version | ScalarExpr::CurrentSetting { .. } => PgType::Text,
            ScalarExpr::CurrentSchema
            | ScalarExpr::SessionUser
            | ScalarExpr::CurrentUser
            | ScalarExpr::CurrentDatabase => PgType::Name,
            ScalarExpr::PgBackendPid => PgType::Int4,
            ScalarExpr::Now => PgType::Timestamptz,
            ScalarExpr::Sleep { .. } => PgType::Text,
        }
    }
}

/// One planned statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// An empty query string (or only `;` / comments): answer with EmptyQueryResponse.
    Empty,
    Insert(InsertEvents),
    Query(Query),
    /// `read_outbox(after_event_id, take)`; an omitted argument is `Operand::Null` (default).
    ReadOutbox {
        after: Operand,
        take: Operand,
        form: CallForm,
    },
    Verify {
        aggregate_type: Option<Operand>,
        aggregate_id: Option<Operand>,
        form: CallForm,
    },
    ApplySchema {
        source: Operand,
        form: CallForm,
    },
    Session(SessionStatement),
    /// `SELECT <scalar> [AS name], ...`: (column name as PostgreSQL names it, expression).
    Scalars(Vec<(String, ScalarExpr)>),
    /// A client catalog query answered from the static catalog.
    Catalog(CatalogAnswer),
    /// Some columns of a table function's result (`SELECT ok FROM verify(...)`): each
    /// `(index into the inner result columns, output name)`.
    Projected {
        inner: Box<Statement>,
        columns: Vec<(usize, String)>,
    },
}

/// The command a statement completes with. [`CommandTag::text`] renders CommandComplete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandTag {
    Insert,
    Select,
    Call,
    Set,
    Show,
    Reset,
    Begin,
    StartTransaction,
    Commit,
    Rollback,
    Discard(super::session::DiscardKind),
    Deallocate,
    DeallocateAll,
    /// No CommandComplete: the server sends EmptyQueryResponse.
    Empty,
}

impl CommandTag {
    /// The CommandComplete text, with `rows` where PostgreSQL prints a count
    /// (`INSERT 0 n`, `SELECT n`); `None` for [`CommandTag::Empty`].
    pub fn text(&self, rows: u64) -> Option<String> {
        use super::session::DiscardKind;
        let fixed = match self {
            CommandTag::Insert => return Some(format!("INSERT 0 {rows}")),
            CommandTag::Select => return Some(format!("SELECT {rows}")),
            CommandTag::Empty => return None,
            CommandTag::Call => "CALL",
            CommandTag::Set => "SET",
            CommandTag::Show => "SHOW",
            CommandTag::Reset => "RESET",
            CommandTag::Begin => "BEGIN",
            CommandTag::StartTransaction => "START TRANSACTION",
            CommandTag::Commit => "COMMIT",
            CommandTag::Rollback => "ROLLBACK",
            CommandTag::Discard(DiscardKind::All) => "DISCARD ALL",
            CommandTag::Discard(DiscardKind::Plans) => "DISCARD PLANS",
            CommandTag::Discard(DiscardKind::Sequences) => "DISCARD SEQUENCES",
            CommandTag::Discard(DiscardKind::Temp) => "DISCARD TEMP",
            CommandTag::Deallocate => "DEALLOCATE",
            CommandTag::DeallocateAll => "DEALLOCATE ALL",
        };
        Some(fixed.to_string())
    }
}

impl SelectItem {
    /// The result columns this item produces when selected from `table`.
    pub fn columns(&self, table: Table) -> Vec<Column> {
        match self {
            SelectItem::Wildcard => table
                .columns()
                .iter()
                .map(|c| Column::new(c.name(), c.ty()))
                .collect(),
            SelectItem::Column { column, alias } => vec![Column::new(
                alias.clone().unwrap_or_else(|| column.name().to_string()),
                column.ty(),
            )],
            SelectItem::Json {
                column,
                as_text,
                alias,
                ..
            } => vec![Column::new(
                alias.clone().unwrap_or_else(|| "?column?".to_string()),
                if *as_text { PgType::Text } else { column.ty() },
            )],
            SelectItem::CountStar { alias } => vec![Column::new(
                alias.clone().unwrap_or_else(|| "count".to_string()),
                PgType::Int8,
            )],
        }
    }
}

impl Statement {
    /// The parameter types, index `i` for `$i+1`; the length is the highest `$n` used.
    /// Types come from context (column compared with, LIMIT, function argument) or an
    /// explicit cast; [`PgType::Unknown`] where nothing tells.
    pub fn param_types(&self) -> Vec<PgType> {
        super::params::param_types(self).unwrap_or_default()
    }

    /// The columns Execute returns; empty for statements that return no rows.
    pub fn result_columns(&self) -> Vec<Column> {
        match self {
            Statement::Empty => vec![],
            Statement::Insert(insert) => insert
                .returning
                .iter()
                .flat_map(|i| i.columns(Table::Events))
                .collect(),
            Statement::Query(q) => q.items.iter().flat_map(|i| i.columns(q.table)).collect(),
            Statement::ReadOutbox { .. } => vec![
                Column::new("events_json", PgType::Json),
                Column::new("next_after_event_id", PgType::Int8),
            ],
            Statement::Verify { .. } => vec![
                Column::new("aggregate_type", PgType::Text),
                Column::new("aggregate_id", PgType::Text),
                Column::new("version", PgType::Int8),
                Column::new("recomputed_root", PgType::Text),
                Column::new("stored_root", PgType::Text),
                Column::new("ok", PgType::Bool),
            ],
            Statement::ApplySchema { .. } => vec![
                Column::new("aggregate_type", PgType::Text),
                Column::new("schema_version", PgType::Int8),
            ],
            Statement::Session(s) => s.result_columns(),
            Statement::Scalars(items) => items
                .iter()
                .map(|(name, e)| Column::new(name.clone(), e.ty()))
                .collect(),
            Statement::Catalog(answer) => answer.columns.clone(),
            Statement::Projected { inner, columns } => {
                let all = inner.result_columns();
                columns
                    .iter()
                    .filter_map(|(i, name)| all.get(*i).map(|c| Column::new(name.clone(), c.ty)))
                    .collect()
            }
        }
    }

    /// The command tag; the server adds the row count (see [`CommandTag::text`]).
    pub fn command_tag(&self) -> CommandTag {
        match self {
            Statement::Empty => CommandTag::Empty,
            Statement::Insert(_) => CommandTag::Insert,
            Statement::Query(_) | Statement::Scalars(_) | Statement::Catalog(_) => {
                CommandTag::Select
            }
            Statement::ReadOutbox { form, .. }
            | Statement::Verify { form, .. }
            | Statement::ApplySchema { form, .. } => match form {
                CallForm::Call => CommandTag::Call,
                CallForm::Select => CommandTag::Select,
            },
            Statement::Session(s) => s.command_tag(),
            Statement::Projected { inner, .. } => inner.command_tag(),
        }
    }
}
