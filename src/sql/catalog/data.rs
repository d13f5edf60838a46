//! The static catalog: the `pg_catalog` relations (the columns clients read) describing
//! EventDBX's four virtual tables in schema `public` of database `default`, owned by role
//! `eventdbx`.

use super::eval::Val;
use crate::sql::plan::{PgType, Table};

pub(crate) const OWNER: &str = "eventdbx";
pub(crate) const OWNER_OID: i64 = 10;
pub(crate) const DATABASE: &str = "default";
pub(crate) const DATABASE_OID: i64 = 16384;
pub(crate) const PG_CATALOG_OID: i64 = 11;
pub(crate) const PUBLIC_OID: i64 = 2200;
pub(crate) const INFORMATION_SCHEMA_OID: i64 = 13000;
pub(crate) const HEAP_AM_OID: i64 = 2;
/// `pg_encoding_to_char(6)` is UTF8.
pub(crate) const UTF8_ENCODING: i64 = 6;
/// The default collation's oid; text columns carry it in `attcollation`.
const DEFAULT_COLLATION: i64 = 100;
/// The "C" collation, `typcollation` of `name`.
const C_COLLATION: i64 = 950;

/// A catalog relation: column names and types, and rows.
pub(crate) struct CatalogTable {
    pub columns: Vec<(&'static str, PgType)>,
    pub rows: Vec<Vec<Val>>,
}

fn int(i: impl Into<i64>) -> Val {
    Val::Int(i.into())
}

fn text(s: &str) -> Val {
    Val::Text(s.to_string())
}

/// Oids of system catalogs, for `'pg_class'::regclass` and its reverse.
pub(crate) const SYSTEM_RELATIONS: &[(&str, i64)] = &[
    ("pg_type", 1247),
    ("pg_attribute", 1249),
    ("pg_proc", 1255),
    ("pg_class", 1259),
    ("pg_authid", 1260),
    ("pg_database", 1262),
    ("pg_am", 2601),
    ("pg_attrdef", 2604),
    ("pg_constraint", 2606),
    ("pg_inherits", 2611),
    ("pg_index", 2610),
    ("pg_description", 2609),
    ("pg_rewrite", 2618),
    ("pg_trigger", 2620),
    ("pg_namespace", 2615),
    ("pg_policy", 3256),
    ("pg_statistic_ext", 3381),
    ("pg_collation", 3456),
    ("pg_publication", 6104),
];

/// The relation name for a `pg_class` oid (our tables, then system catalogs).
pub(crate) fn relation_name(oid: i64) -> Option<String> {
    if let Some(t) = Table::from_oid(oid) {
        return Some(t.name().to_string());
    }
    SYSTEM_RELATIONS
        .iter()
        .find(|(_, o)| *o == oid)
        .map(|(n, _)| n.to_string())
}

/// The `pg_class` oid of a relation name (`events`, `public.events`, `pg_catalog.pg_class`).
pub(crate) fn relation_oid(name: &str) -> Option<i64> {
    let lower = name.trim().to_lowercase();
    let bare = lower
        .strip_prefix("public.")
        .or_else(|| lower.strip_prefix("pg_catalog."))
        .unwrap_or(&lower);
    let bare = bare.trim_matches('"');
    if let Some(t) = Table::from_name(bare) {
        return Some(i64::from(t.oid()));
    }
    SYSTEM_RELATIONS
        .iter()
        .find(|(n, _)| *n == bare)
        .map(|(_, o)| *o)
}

pub(crate) fn namespace_name(oid: i64) -> Option<&'static str> {
    match oid {
        PG_CATALOG_OID => Some("pg_catalog"),
        PUBLIC_OID => Some("public"),
        INFORMATION_SCHEMA_OID => Some("information_schema"),
        _ => None,
    }
}

pub(crate) fn namespace_oid(name: &str) -> Option<i64> {
    match name.trim().trim_matches('"') {
        "pg_catalog" => Some(PG_CATALOG_OID),
        "public" => Some(PUBLIC_OID),
        "information_schema" => Some(INFORMATION_SCHEMA_OID),
        _ => None,
    }
}

/// The relation called `name` (already folded, without schema), if the catalog has it.
pub(crate) fn table(name: &str) -> Option<CatalogTable> {
    Some(match name {
        "pg_class" => pg_class(),
        "pg_namespace" => pg_namespace(),
        "pg_attribute" => pg_attribute(),
        "pg_type" => pg_type(),
        "pg_am" => CatalogTable {
            columns: vec![
                ("oid", PgType::Oid),
                ("amname", PgType::Name),
                ("amhandler", PgType::Regproc),
                ("amtype", PgType::Char),
            ],
            rows: vec![vec![
                int(HEAP_AM_OID),
                text("heap"),
                text("heap_tableam_handler"),
                text("t"),
            ]],
        },
        "pg_database" => pg_database(),
        "pg_roles" | "pg_authid" | "pg_user" => pg_roles(),
        "pg_description" => empty(&[
            ("objoid", PgType::Oid),
            ("classoid", PgType::Oid),
            ("objsubid", PgType::Int4),
            ("description", PgType::Text),
        ]),
        "pg_attrdef" => empty(&[
            ("oid", PgType::Oid),
            ("adrelid", PgType::Oid),
            ("adnum", PgType::Int2),
            ("adbin", PgType::Text),
        ]),
        "pg_collation" => empty(&[
            ("oid", PgType::Oid),
            ("collname", PgType::Name),
            ("collnamespace", PgType::Oid),
            ("collowner", PgType::Oid),
            ("collprovider", PgType::Char),
            ("collencoding", PgType::Int4),
            ("collcollate", PgType::Text),
            ("collctype", PgType::Text),
        ]),
        "pg_index" => empty(&[
            ("indexrelid", PgType::Oid),
            ("indrelid", PgType::Oid),
            ("indnatts", PgType::Int2),
            ("indnkeyatts", PgType::Int2),
            ("indisunique", PgType::Bool),
            ("indnullsnotdistinct", PgType::Bool),
            ("indisprimary", PgType::Bool),
            ("indisexclusion", PgType::Bool),
            ("indimmediate", PgType::Bool),
            ("indisclustered", PgType::Bool),
            ("indisvalid", PgType::Bool),
            ("indcheckxmin", PgType::Bool),
            ("indisready", PgType::Bool),
            ("indislive", PgType::Bool),
            ("indisreplident", PgType::Bool),
            ("indkey", PgType::Int2Vector),
            ("indclass", PgType::OidVector),
            ("indoption", PgType::Int2Vector),
            ("indexprs", PgType::Text),
            ("indpred", PgType::Text),
        ]),
        "pg_constraint" => empty(&[
            ("oid", PgType::Oid),
            ("conname", PgType::Name),
            ("connamespace", PgType::Oid),
            ("contype", PgType::Char),
            ("condeferrable", PgType::Bool),
            ("condeferred", PgType::Bool),
            ("convalidated", PgType::Bool),
            ("conrelid", PgType::Oid),
            ("contypid", PgType::Oid),
            ("conindid", PgType::Oid),
            ("conparentid", PgType::Oid),
            ("confrelid", PgType::Oid),
            ("confupdtype", PgType::Char),
            ("confdeltype", PgType::Char),
            ("confmatchtype", PgType::Char),
            ("conislocal", PgType::Bool),
            ("coninhcount", PgType::Int4),
            ("connoinherit", PgType::Bool),
            ("conkey", PgType::Int2Array),
            ("confkey", PgType::Int2Array),
            ("conbin", PgType::Text),
        ]),
        "pg_policy" => empty(&[
            ("oid", PgType::Oid),
            ("polname", PgType::Name),
            ("polrelid", PgType::Oid),
            ("polcmd", PgType::Char),
            ("polpermissive", PgType::Bool),
            ("polroles", PgType::OidArray),
            ("polqual", PgType::Text),
            ("polwithcheck", PgType::Text),
        ]),
        "pg_statistic_ext" => empty(&[
            ("oid", PgType::Oid),
            ("stxrelid", PgType::Oid),
            ("stxname", PgType::Name),
            ("stxnamespace", PgType::Oid),
            ("stxowner", PgType::Oid),
            ("stxstattarget", PgType::Int4),
            ("stxkeys", PgType::Int2Vector),
            ("stxkind", PgType::CharArray),
            ("stxexprs", PgType::Text),
        ]),
        "pg_publication" => empty(&[
            ("oid", PgType::Oid),
            ("pubname", PgType::Name),
            ("pubowner", PgType::Oid),
            ("puballtables", PgType::Bool),
            ("pubinsert", PgType::Bool),
            ("pubupdate", PgType::Bool),
            ("pubdelete", PgType::Bool),
            ("pubtruncate", PgType::Bool),
            ("pubviaroot", PgType::Bool),
        ]),
        "pg_publication_namespace" => empty(&[
            ("oid", PgType::Oid),
            ("pnpubid", PgType::Oid),
            ("pnnspid", PgType::Oid),
        ]),
        "pg_publication_rel" => empty(&[
            ("oid", PgType::Oid),
            ("prpubid", PgType::Oid),
            ("prrelid", PgType::Oid),
            ("prqual", PgType::Text),
            ("prattrs", PgType::Int2Vector),
        ]),
        "pg_inherits" => empty(&[
            ("inhrelid", PgType::Oid),
            ("inhparent", PgType::Oid),
            ("inhseqno", PgType::Int4),
            ("inhdetachpending", PgType::Bool),
        ]),
        "pg_trigger" => empty(&[
            ("oid", PgType::Oid),
            ("tgrelid", PgType::Oid),
            ("tgparentid", PgType::Oid),
            ("tgname", PgType::Name),
            ("tgfoid", PgType::Oid),
            ("tgtype", PgType::Int2),
            ("tgenabled", PgType::Char),
            ("tgisinternal", PgType::Bool),
            ("tgconstraint", PgType::Oid),
        ]),
        "pg_rewrite" => empty(&[
            ("oid", PgType::Oid),
            ("rulename", PgType::Name),
            ("ev_class", PgType::Oid),
            ("ev_type", PgType::Char),
            ("ev_enabled", PgType::Char),
            ("is_instead", PgType::Bool),
        ]),
        "pg_extension" => empty(&[
            ("oid", PgType::Oid),
            ("extname", PgType::Name),
            ("extowner", PgType::Oid),
            ("extnamespace", PgType::Oid),
            ("extrelocatable", PgType::Bool),
            ("extversion", PgType::Text),
        ]),
        _ => return None,
    })
}

fn empty(columns: &[(&'static str, PgType)]) -> CatalogTable {
    CatalogTable {
        columns: columns.to_vec(),
        rows: vec![],
    }
}

fn pg_namespace() -> CatalogTable {
    CatalogTable {
        columns: vec![
            ("oid", PgType::Oid),
            ("nspname", PgType::Name),
            ("nspowner", PgType::Oid),
            ("nspacl", PgType::TextArray),
        ],
        rows: [PG_CATALOG_OID, PUBLIC_OID, INFORMATION_SCHEMA_OID]
            .iter()
            .map(|&oid| {
                vec![
                    int(oid),
                    text(namespace_name(oid).unwrap_or_default()),
                    int(OWNER_OID),
                    Val::Null,
                ]
            })
            .collect(),
    }
}

fn pg_class() -> CatalogTable {
    let columns = vec![
        ("oid", PgType::Oid),
        ("relname", PgType::Name),
        ("relnamespace", PgType::Oid),
        ("reltype", PgType::Oid),
        ("reloftype", PgType::Oid),
        ("relowner", PgType::Oid),
        ("relam", PgType::Oid),
        ("relfilenode", PgType::Oid),
        ("reltablespace", PgType::Oid),
        ("relpages", PgType::Int4),
        ("reltuples", PgType::Float4),
        ("relallvisible", PgType::Int4),
        ("reltoastrelid", PgType::Oid),
        ("relhasindex", PgType::Bool),
        ("relisshared", PgType::Bool),
        ("relpersistence", PgType::Char),
        ("relkind", PgType::Char),
        ("relnatts", PgType::Int2),
        ("relchecks", PgType::Int2),
        ("relhasrules", PgType::Bool),
        ("relhastriggers", PgType::Bool),
        ("relhassubclass", PgType::Bool),
        ("relrowsecurity", PgType::Bool),
        ("relforcerowsecurity", PgType::Bool),
        ("relispopulated", PgType::Bool),
        ("relreplident", PgType::Char),
        ("relispartition", PgType::Bool),
        ("relacl", PgType::TextArray),
        ("reloptions", PgType::TextArray),
        ("relpartbound", PgType::Text),
    ];
    let rows = Table::ALL
        .iter()
        .map(|t| {
            let oid = i64::from(t.oid());
            vec![
                int(oid),
                text(t.name()),
                int(PUBLIC_OID),
                int(0),
                int(0),
                int(OWNER_OID),
                int(HEAP_AM_OID),
                int(oid),
                int(0),
                int(0),
                int(-1),
                int(0),
                int(0),
                Val::Bool(false),
                Val::Bool(false),
                text("p"),
                text("r"),
                int(t.columns().len() as i64),
                int(0),
                Val::Bool(false),
                Val::Bool(false),
                Val::Bool(false),
                Val::Bool(false),
                Val::Bool(false),
                Val::Bool(true),
                text("d"),
                Val::Bool(false),
                Val::Null,
                Val::Null,
                Val::Null,
            ]
        })
        .collect();
    CatalogTable { columns, rows }
}

fn pg_attribute() -> CatalogTable {
    let columns = vec![
        ("attrelid", PgType::Oid),
        ("attname", PgType::Name),
        ("atttypid", PgType::Oid),
        ("attstattarget", PgType::Int4),
        ("attlen", PgType::Int2),
        ("attnum", PgType::Int2),
        ("attndims", PgType::Int4),
        ("attcacheoff", PgType::Int4),
        ("atttypmod", PgType::Int4),
        ("attbyval", PgType::Bool),
        ("attalign", PgType::Char),
        ("attstorage", PgType::Char),
        ("attcompression", PgType::Char),
        ("attnotnull", PgType::Bool),
        ("atthasdef", PgType::Bool),
        ("atthasmissing", PgType::Bool),
        ("attidentity", PgType::Char),
        ("attgenerated", PgType::Char),
        ("attisdropped", PgType::Bool),
        ("attislocal", PgType::Bool),
        ("attinhcount", PgType::Int4),
        ("attcollation", PgType::Oid),
        ("attacl", PgType::TextArray),
        ("attoptions", PgType::TextArray),
        ("attfdwoptions", PgType::TextArray),
    ];
    let mut rows = Vec::new();
    for t in Table::ALL {
        for (i, c) in t.columns().iter().enumerate() {
            let ty = c.ty();
            let len = ty.typlen();
            rows.push(vec![
                int(t.oid()),
                text(c.name()),
                int(ty.oid()),
                int(-1),
                int(len),
                int(i as i64 + 1),
                int(0),
                int(-1),
                int(-1),
                Val::Bool(len > 0),
                text(align(ty)),
                text(if len > 0 { "p" } else { "x" }),
                text(""),
                Val::Bool(t.not_null(*c)),
                Val::Bool(false),
                Val::Bool(false),
                text(""),
                text(""),
                Val::Bool(false),
                Val::Bool(true),
                int(0),
                int(collation(ty)),
                Val::Null,
                Val::Null,
                Val::Null,
            ]);
        }
    }
    CatalogTable { columns, rows }
}

fn align(ty: PgType) -> &'static str {
    match ty.typlen() {
        1 | 64 => "c",
        2 => "s",
        8 => "d",
        _ if ty == PgType::Numeric => "i",
        4 | -1 => "i",
        _ => "c",
    }
}

fn collation(ty: PgType) -> i64 {
    match ty {
        PgType::Text | PgType::Varchar => DEFAULT_COLLATION,
        PgType::Name => C_COLLATION,
        _ => 0,
    }
}

/// `(typcategory, typispreferred)`.
fn category(ty: PgType) -> (&'static str, bool) {
    match ty {
        PgType::Bool => ("B", true),
        PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Float4 | PgType::Numeric => {
            ("N", false)
        }
        PgType::Float8 | PgType::Oid => ("N", true),
        PgType::Regproc | PgType::Regclass | PgType::Regtype | PgType::Regnamespace => ("N", false),
        PgType::Text => ("S", true),
        PgType::Varchar | PgType::Name => ("S", false),
        PgType::Char => ("Z", false),
        PgType::Json | PgType::Jsonb => ("U", false),
        PgType::Bytea => ("U", false),
        PgType::Date | PgType::Timestamp => ("D", false),
        PgType::Timestamptz => ("D", true),
        PgType::Unknown => ("X", false),
        _ => ("A", false),
    }
}

/// The name of the type's input function (`int8in`, `json_in`, `array_in`).
pub(crate) fn input_function(ty: PgType) -> String {
    if ty.element_type().is_some() && !matches!(ty, PgType::Int2Vector | PgType::OidVector) {
        return "array_in".into();
    }
    match ty {
        PgType::Json
        | PgType::Jsonb
        | PgType::Date
        | PgType::Timestamp
        | PgType::Timestamptz
        | PgType::Numeric => format!("{}_in", ty.name()),
        _ => format!("{}in", ty.name()),
    }
}

fn io_function(ty: PgType, kind: &str) -> String {
    let input = input_function(ty);
    match input.strip_suffix("_in") {
        Some(base) => format!("{base}_{kind}"),
        None => format!("{}{kind}", input.strip_suffix("in").unwrap_or(&input)),
    }
}

fn pg_type() -> CatalogTable {
    let columns = vec![
        ("oid", PgType::Oid),
        ("typname", PgType::Name),
        ("typnamespace", PgType::Oid),
        ("typowner", PgType::Oid),
        ("typlen", PgType::Int2),
        ("typbyval", PgType::Bool),
        ("typtype", PgType::Char),
        ("typcategory", PgType::Char),
        ("typispreferred", PgType::Bool),
        ("typisdefined", PgType::Bool),
        ("typdelim", PgType::Char),
        ("typrelid", PgType::Oid),
        ("typelem", PgType::Oid),
        ("typarray", PgType::Oid),
        ("typinput", PgType::Regproc),
        ("typoutput", PgType::Regproc),
        ("typreceive", PgType::Regproc),
        ("typsend", PgType::Regproc),
        ("typalign", PgType::Char),
        ("typstorage", PgType::Char),
        ("typnotnull", PgType::Bool),
        ("typbasetype", PgType::Oid),
        ("typtypmod", PgType::Int4),
        ("typndims", PgType::Int4),
        ("typcollation", PgType::Oid),
        ("typdefault", PgType::Text),
    ];
    let rows = PgType::ALL
        .iter()
        .map(|&ty| {
            let (cat, preferred) = category(ty);
            let len = ty.typlen();
            let elem = match ty {
                PgType::Name => i64::from(PgType::Char.oid()),
                _ => ty.element_type().map_or(0, |e| i64::from(e.oid())),
            };
            vec![
                int(ty.oid()),
                text(ty.name()),
                int(PG_CATALOG_OID),
                int(OWNER_OID),
                int(len),
                Val::Bool(matches!(len, 1 | 2 | 4 | 8)),
                text(if ty == PgType::Unknown { "p" } else { "b" }),
                text(cat),
                Val::Bool(preferred),
                Val::Bool(true),
                text(","),
                int(0),
                int(elem),
                int(ty
                    .array_type()
                    .filter(|_| ty != PgType::Unknown)
                    .map_or(0, |a| i64::from(a.oid()))),
                Val::Text(input_function(ty)),
                Val::Text(io_function(ty, "out")),
                Val::Text(io_function(ty, "recv")),
                Val::Text(io_function(ty, "send")),
                text(align(ty)),
                text(if len > 0 { "p" } else { "x" }),
                Val::Bool(false),
                int(0),
                int(-1),
                int(0),
                int(collation(ty)),
                Val::Null,
            ]
        })
        .collect();
    CatalogTable { columns, rows }
}

fn pg_database() -> CatalogTable {
    CatalogTable {
        columns: vec![
            ("oid", PgType::Oid),
            ("datname", PgType::Name),
            ("datdba", PgType::Oid),
            ("encoding", PgType::Int4),
            ("datlocprovider", PgType::Char),
            ("datistemplate", PgType::Bool),
            ("datallowconn", PgType::Bool),
            ("datconnlimit", PgType::Int4),
            ("dattablespace", PgType::Oid),
            ("datcollate", PgType::Text),
            ("datctype", PgType::Text),
            ("daticulocale", PgType::Text),
            ("datcollversion", PgType::Text),
            ("datacl", PgType::TextArray),
        ],
        rows: vec![vec![
            int(DATABASE_OID),
            text(DATABASE),
            int(OWNER_OID),
            int(UTF8_ENCODING),
            text("c"),
            Val::Bool(false),
            Val::Bool(true),
            int(-1),
            int(1663),
            text("C.UTF-8"),
            text("C.UTF-8"),
            Val::Null,
            Val::Null,
            Val::Null,
        ]],
    }
}

fn pg_roles() -> CatalogTable {
    CatalogTable {
        columns: vec![
            ("oid", PgType::Oid),
            ("rolname", PgType::Name),
            ("rolsuper", PgType::Bool),
            ("rolinherit", PgType::Bool),
            ("rolcreaterole", PgType::Bool),
            ("rolcreatedb", PgType::Bool),
            ("rolcanlogin", PgType::Bool),
            ("rolreplication", PgType::Bool),
            ("rolconnlimit", PgType::Int4),
            ("rolpassword", PgType::Text),
            ("rolvaliduntil", PgType::Timestamptz),
            ("rolbypassrls", PgType::Bool),
            ("rolconfig", PgType::TextArray),
        ],
        rows: vec![vec![
            int(OWNER_OID),
            text(OWNER),
            Val::Bool(true),
            Val::Bool(true),
            Val::Bool(false),
            Val::Bool(false),
            Val::Bool(true),
            Val::Bool(false),
            int(-1),
            text("********"),
            Val::Null,
            Val::Bool(false),
            Val::Null,
        ]],
    }
}
