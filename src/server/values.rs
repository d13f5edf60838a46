//! Values on the wire: result cells in text or binary format, and bind parameters decoded
//! from whatever the client sends (binary int2/int4/int8/float/bool/json/jsonb/timestamps,
//! or text, typed or untyped).

use bytes::{BufMut, BytesMut};
use pgwire::api::results::FieldFormat;
use pgwire::api::Type;
use pgwire::messages::data::DataRow;

use super::errors::{error, Failure};

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// One result value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// Microseconds since the Unix epoch.
    Timestamp(i64),
}

impl Cell {
    /// The text form PostgreSQL would send.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Cell::Null => None,
            Cell::Bool(b) => Some(if *b { "t" } else { "f" }.to_owned()),
            Cell::Int(i) => Some(i.to_string()),
            Cell::Float(f) => Some(format_float(*f)),
            Cell::Text(t) => Some(t.clone()),
            Cell::Timestamp(micros) => Some(format_timestamptz(*micros)),
        }
    }
}

fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        f.to_string()
    }
}

/// `2026-11-27 11:12:51.123456+00`, as PostgreSQL prints timestamptz in UTC (fraction
/// without trailing zeros, omitted when zero).
pub fn format_timestamptz(micros: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(at) => {
            let base = at.format("%Y-%m-%d %H:%M:%S").to_string();
            let fraction = micros.rem_euclid(1_000_000);
            if fraction == 0 {
                format!("{base}+00")
            } else {
                let digits = format!("{fraction:06}");
                format!("{base}.{}+00", digits.trim_end_matches('0'))
            }
        }
        None => micros.to_string(),
    }
}

/// Appends one non-null value: its length, then its bytes. Generic over the buffer so a
/// scan can write rows into a `Vec<u8>`, whose small fixed-size writes inline (see
/// `HistoryStream::next_chunk`).
pub fn put_value<B: BufMut>(buf: &mut B, bytes: &[u8]) {
    buf.put_i32(i32::try_from(bytes.len()).unwrap_or(i32::MAX));
    buf.put_slice(bytes);
}

/// Encodes every row of a result for the given column types and formats.
///
/// Values are written straight into one buffer sized up front for the whole result, and
/// each row's message body is split off it: the rows share one allocation instead of one
/// each (an outbox page is a thousand rows).
pub fn encode_rows(
    rows: &[Vec<Cell>],
    types: &[Type],
    formats: &[FieldFormat],
) -> Result<Vec<DataRow>, Failure> {
    let mut buf = BytesMut::with_capacity(rows.iter().map(|row| encoded_size_hint(row)).sum());
    let mut encoded = Vec::with_capacity(rows.len());
    for row in rows {
        encode_cells(&mut buf, row, types, formats)?;
        encoded.push(DataRow::new(
            buf.split(),
            i16::try_from(row.len()).unwrap_or(i16::MAX),
        ));
    }
    Ok(encoded)
}

/// Appends a row's values to `buf`. Text values go straight into the buffer: building each
/// as its own `String` first cost a copy and an allocation per cell. With no types and
/// formats given, every value is written in text format.
pub fn encode_cells<B: BufMut>(
    buf: &mut B,
    cells: &[Cell],
    types: &[Type],
    formats: &[FieldFormat],
) -> Result<(), Failure> {
    for (index, cell) in cells.iter().enumerate() {
        let ty = types.get(index).unwrap_or(&Type::TEXT);
        let binary = formats.get(index) == Some(&FieldFormat::Binary);
        match cell {
            Cell::Null => buf.put_i32(-1),
            _ if binary => put_value(buf, &encode_binary(cell, ty)?),
            Cell::Text(text) => put_value(buf, text.as_bytes()),
            Cell::Bool(b) => put_value(buf, if *b { b"t" } else { b"f" }),
            Cell::Int(i) => put_value(buf, itoa::Buffer::new().format(*i).as_bytes()),
            other => put_value(buf, other.to_text().unwrap_or_default().as_bytes()),
        }
    }
    Ok(())
}

/// Bytes a row's values take on the wire, close enough to allocate the buffer once.
fn encoded_size_hint(cells: &[Cell]) -> usize {
    /// Length prefix plus the longest text of a number, boolean or timestamp.
    const FIXED_CELL_BYTES: usize = 4 + 32;
    cells
        .iter()
        .map(|cell| match cell {
            Cell::Text(text) => 4 + text.len(),
            _ => FIXED_CELL_BYTES,
        })
        .sum()
}

fn as_int(cell: &Cell) -> Result<i64, Failure> {
    match cell {
        Cell::Int(i) => Ok(*i),
        Cell::Bool(b) => Ok(i64::from(*b)),
        Cell::Text(t) => t.trim().parse().map_err(|_| {
            error(
                "22P02",
                format!("invalid input syntax for type bigint: \"{t}\""),
            )
        }),
        other => Err(error(
            "42804",
            format!("cannot send {other:?} as an integer"),
        )),
    }
}

fn encode_binary(cell: &Cell, ty: &Type) -> Result<Vec<u8>, Failure> {
    let overflow = |what: &str| error("22003", format!("value out of range for type {what}"));
    Ok(match *ty {
        Type::BOOL => match cell {
            Cell::Bool(b) => vec![u8::from(*b)],
            Cell::Text(t) => vec![u8::from(t == "t" || t == "true")],
            other => vec![u8::from(as_int(other)? != 0)],
        },
        Type::INT8 => as_int(cell)?.to_be_bytes().to_vec(),
        Type::INT4 => i32::try_from(as_int(cell)?)
            .map_err(|_| overflow("integer"))?
            .to_be_bytes()
            .to_vec(),
        Type::INT2 => i16::try_from(as_int(cell)?)
            .map_err(|_| overflow("smallint"))?
            .to_be_bytes()
            .to_vec(),
        Type::OID | Type::REGPROC | Type::REGTYPE | Type::REGCLASS => u32::try_from(as_int(cell)?)
            .map_err(|_| overflow("oid"))?
            .to_be_bytes()
            .to_vec(),
        Type::FLOAT8 => match cell {
            Cell::Float(f) => f.to_be_bytes().to_vec(),
            other => (as_int(other)? as f64).to_be_bytes().to_vec(),
        },
        Type::FLOAT4 => match cell {
            Cell::Float(f) => (*f as f32).to_be_bytes().to_vec(),
            other => (as_int(other)? as f32).to_be_bytes().to_vec(),
        },
        Type::TIMESTAMPTZ | Type::TIMESTAMP => match cell {
            Cell::Timestamp(micros) => micros
                .saturating_sub(PG_EPOCH_OFFSET_MICROS)
                .to_be_bytes()
                .to_vec(),
            _ => {
                return Err(error(
                    "42804",
                    "cannot send this value as a binary timestamp",
                ))
            }
        },
        Type::JSONB => {
            let mut out = vec![1u8];
            out.extend_from_slice(cell.to_text().unwrap_or_default().as_bytes());
            out
        }
        Type::CHAR => cell
            .to_text()
            .unwrap_or_default()
            .into_bytes()
            .into_iter()
            .take(1)
            .collect(),
        // text, varchar, name, json, unknown and anything textual: the text bytes.
        _ => cell.to_text().unwrap_or_default().into_bytes(),
    })
}

/// A decoded bind parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// A fixed-width binary parameter as an array, or a protocol error naming the type.
fn fixed<const N: usize>(bytes: &[u8], ty: &str) -> Result<[u8; N], Failure> {
    bytes.try_into().map_err(|_| {
        error(
            "08P01",
            format!(
                "binary {ty} parameter has the wrong length ({} bytes)",
                bytes.len()
            ),
        )
    })
}

/// Decodes one bind parameter from its bytes, the type the client declared (if any) and
/// the format code. Binary values are decoded by their declared type; text values are kept
/// as text and coerced where they are used.
pub fn decode_param(
    bytes: Option<&[u8]>,
    declared: Option<&Type>,
    binary: bool,
) -> Result<Param, Failure> {
    let Some(bytes) = bytes else {
        return Ok(Param::Null);
    };
    let text = |b: &[u8]| {
        std::str::from_utf8(b).map(str::to_owned).map_err(|_| {
            error(
                "22021",
                "invalid byte sequence for encoding \"UTF8\" in a parameter",
            )
        })
    };
    if !binary {
        return Ok(Param::Text(text(bytes)?));
    }
    let ty = declared.cloned().unwrap_or(Type::UNKNOWN);
    Ok(match ty {
        Type::INT2 => Param::Int(i64::from(i16::from_be_bytes(fixed(bytes, "int2")?))),
        Type::INT4 => Param::Int(i64::from(i32::from_be_bytes(fixed(bytes, "int4")?))),
        Type::OID => Param::Int(i64::from(u32::from_be_bytes(fixed(bytes, "oid")?))),
        Type::INT8 => Param::Int(i64::from_be_bytes(fixed(bytes, "int8")?)),
        Type::FLOAT4 => Param::Float(f64::from(f32::from_be_bytes(fixed(bytes, "float4")?))),
        Type::FLOAT8 => Param::Float(f64::from_be_bytes(fixed(bytes, "float8")?)),
        Type::BOOL => Param::Bool(fixed::<1>(bytes, "bool")?[0] != 0),
        Type::JSONB => match bytes.split_first() {
            Some((1, rest)) => Param::Text(text(rest)?),
            _ => return Err(error("22P02", "unsupported binary jsonb version")),
        },
        Type::TIMESTAMPTZ | Type::TIMESTAMP => {
            let micros = i64::from_be_bytes(fixed(bytes, "timestamp")?)
                .saturating_add(PG_EPOCH_OFFSET_MICROS);
            Param::Text(crate::engine::format_timestamp_micros(micros))
        }
        Type::NUMERIC => {
            return Err(error(
                "0A000",
                "binary numeric parameters are not supported; send the value as text or as an integer/float",
            ))
        }
        // text, varchar, name, json, unknown and the rest arrive as their text bytes.
        _ => Param::Text(text(bytes)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_like_postgres() {
        assert_eq!(
            format_timestamptz(1_700_000_000_123_456),
            "2023-11-14 22:13:20.123456+00"
        );
        assert_eq!(
            format_timestamptz(1_700_000_000_120_000),
            "2023-11-14 22:13:20.12+00"
        );
        assert_eq!(
            format_timestamptz(1_700_000_000_000_000),
            "2023-11-14 22:13:20+00"
        );
    }

    #[test]
    fn binary_params_decode_by_declared_type() {
        assert_eq!(
            decode_param(Some(&7i16.to_be_bytes()), Some(&Type::INT2), true).ok(),
            Some(Param::Int(7))
        );
        assert_eq!(
            decode_param(Some(&(-9i32).to_be_bytes()), Some(&Type::INT4), true).ok(),
            Some(Param::Int(-9))
        );
        assert_eq!(
            decode_param(Some(&(1i64 << 40).to_be_bytes()), Some(&Type::INT8), true).ok(),
            Some(Param::Int(1 << 40))
        );
        assert_eq!(
            decode_param(Some(b"\x01{}"), Some(&Type::JSONB), true).ok(),
            Some(Param::Text("{}".into()))
        );
        assert_eq!(
            decode_param(Some(b"42"), None, false).ok(),
            Some(Param::Text("42".into()))
        );
        assert_eq!(
            decode_param(None, Some(&Type::INT8), true).ok(),
            Some(Param::Null)
        );
        assert!(decode_param(Some(&[1, 2, 3]), Some(&Type::INT8), true).is_err());
        assert!(decode_param(Some(&[0xff, 0xfe]), None, false).is_err());
    }

    #[test]
    fn rows_encode_text_and_binary() {
        let rows = encode_rows(
            &[
                vec![Cell::Int(5), Cell::Null, Cell::Text("x".into())],
                vec![Cell::Int(-7), Cell::Text("yz".into()), Cell::Null],
            ],
            &[Type::INT8, Type::TEXT, Type::TEXT],
            &[FieldFormat::Binary, FieldFormat::Text, FieldFormat::Text],
        )
        .expect("rows");
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|row| row.field_count == 3));
        let first: Vec<u8> = [
            &8i32.to_be_bytes()[..],
            &5i64.to_be_bytes(),
            &(-1i32).to_be_bytes(),
            &1i32.to_be_bytes(),
            b"x",
        ]
        .concat();
        // Rows split off one buffer must not see each other's bytes.
        let second: Vec<u8> = [
            &8i32.to_be_bytes()[..],
            &(-7i64).to_be_bytes(),
            &2i32.to_be_bytes(),
            b"yz",
            &(-1i32).to_be_bytes(),
        ]
        .concat();
        assert_eq!(&rows[0].data[..], &first[..]);
        assert_eq!(&rows[1].data[..], &second[..]);
    }
}
