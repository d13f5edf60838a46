//! Value parsers and format validators: decimals, timestamps, dates,
//! references and the built-in `format` checks.
//!
//! Every function here is total: it returns an error for bad input and never
//! panics, whatever the input.

use std::cmp::Ordering;
use std::net::{Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::Value;

use super::limits::{
    MAX_DECIMAL_EXPONENT, MAX_DECIMAL_INPUT_CHARS, MAX_EMAIL_CHARS, MAX_NAME_CHARS,
    MAX_REFERENCE_ID_CHARS, MAX_URL_CHARS,
};
use super::types::Format;

// ---------------------------------------------------------------------------
// Decimals
// ---------------------------------------------------------------------------

/// An exact decimal number: sign, integer digits (no leading zeros) and
/// fraction digits (no trailing zeros). Zero is `{false, "", ""}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decimal {
    negative: bool,
    int: String,
    frac: String,
}

impl Decimal {
    /// Parses `-?digits(.digits)?`, optionally with an exponent
    /// (`allow_exponent`, used for JSON numbers such as `1e20`).
    pub fn parse(text: &str, allow_exponent: bool) -> Option<Decimal> {
        if text.is_empty() || text.chars().count() > MAX_DECIMAL_INPUT_CHARS {
            return None;
        }
        let (negative, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(i) if allow_exponent => {
                let exp_text = rest.get(i + 1..)?;
                let exp_digits = exp_text.strip_prefix('+').unwrap_or(exp_text);
                let (neg_exp, exp_digits) = match exp_digits.strip_prefix('-') {
                    Some(d) => (true, d),
                    None => (false, exp_digits),
                };
                if exp_digits.is_empty()
                    || exp_digits.len() > 6
                    || !exp_digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                let e: i64 = exp_digits.parse().ok()?;
                if e > MAX_DECIMAL_EXPONENT {
                    return None;
                }
                (rest.get(..i)?, if neg_exp { -e } else { e })
            }
            Some(_) => return None,
            None => (rest, 0),
        };
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        if int_part.is_empty()
            || !int_part.bytes().all(|b| b.is_ascii_digit())
            || (mantissa.contains('.') && frac_part.is_empty())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        // Shift the decimal point by the exponent.
        let digits = format!("{int_part}{frac_part}");
        let point = i64::try_from(int_part.len()).ok()? + exponent;
        let len = i64::try_from(digits.len()).ok()?;
        let (int, frac) = if point <= 0 {
            let zeros = usize::try_from(-point).ok()?;
            (String::new(), format!("{}{digits}", "0".repeat(zeros)))
        } else if point >= len {
            let zeros = usize::try_from(point - len).ok()?;
            (format!("{digits}{}", "0".repeat(zeros)), String::new())
        } else {
            let p = usize::try_from(point).ok()?;
            (digits.get(..p)?.to_string(), digits.get(p..)?.to_string())
        };
        let int = int.trim_start_matches('0').to_string();
        let frac = frac.trim_end_matches('0').to_string();
        let negative = negative && !(int.is_empty() && frac.is_empty());
        Some(Decimal {
            negative,
            int,
            frac,
        })
    }

    /// Parses a JSON number or string holding a decimal.
    pub fn from_json(value: &Value) -> Option<Decimal> {
        match value {
            Value::Number(n) => Decimal::parse(&n.to_string(), true),
            Value::String(s) => Decimal::parse(s, false),
            _ => None,
        }
    }

    /// Formats with exactly `scale` fraction digits after checking it fits
    /// `decimal(precision, scale)`.
    pub fn normalize(&self, precision: u8, scale: u8) -> Result<String, String> {
        let scale = usize::from(scale);
        let int_max = usize::from(precision).saturating_sub(scale);
        if self.frac.len() > scale {
            return Err(format!(
                "has {} fractional digits; the scale allows {scale}",
                self.frac.len()
            ));
        }
        if self.int.len() > int_max {
            return Err(format!(
                "has {} integer digits; decimal({precision},{scale}) allows {int_max}",
                self.int.len()
            ));
        }
        let mut out = String::new();
        if self.negative {
            out.push('-');
        }
        if self.int.is_empty() {
            out.push('0');
        } else {
            out.push_str(&self.int);
        }
        if scale > 0 {
            out.push('.');
            out.push_str(&self.frac);
            out.push_str(&"0".repeat(scale - self.frac.len()));
        }
        Ok(out)
    }

    fn cmp_magnitude(&self, other: &Decimal) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(&other.int))
            .then_with(|| self.frac.cmp(&other.frac))
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

// ---------------------------------------------------------------------------
// Timestamps and dates
// ---------------------------------------------------------------------------

/// Parses an RFC 3339 date-time (any offset).
pub(crate) fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    // chrono also accepts a space for `T`, as RFC 3339 section 5.6 permits.
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|dt| dt.with_timezone(&Utc))
}

/// Normalized text of a timestamp: UTC, `Z`, fraction digits only when
/// non-zero (3, 6 or 9 digits), e.g. `2026-01-01T08:00:00.500Z`.
pub(crate) fn format_timestamp(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Parses a strict `YYYY-MM-DD` calendar date.
pub(crate) fn parse_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let digits_ok = b
        .iter()
        .enumerate()
        .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !digits_ok {
        return None;
    }
    let y: i32 = text.get(0..4)?.parse().ok()?;
    let m: u32 = text.get(5..7)?.parse().ok()?;
    let d: u32 = text.get(8..10)?.parse().ok()?;
    NaiveDate::from_ymd_opt(y, m, d)
}

// ---------------------------------------------------------------------------
// References
// ---------------------------------------------------------------------------

/// A parsed reference string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedReference {
    /// Legacy `domain#` prefix, if any.
    pub domain: Option<String>,
    /// `None` for the `#id` shorthand.
    pub aggregate: Option<String>,
    pub id: String,
}

/// True for bare-token names: `[A-Za-z_][A-Za-z0-9_-]*`, at most 64 chars.
pub(crate) fn is_bare_token(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && s.len() <= MAX_NAME_CHARS
}

/// True for `^[a-z][a-z0-9_]*$`.
pub(crate) fn is_snake_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn valid_reference_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= MAX_REFERENCE_ID_CHARS
        && id
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '#')
}

/// Parses `aggregate#id`, `#id` or legacy `domain#aggregate#id`.
pub(crate) fn parse_reference(text: &str) -> Result<ParsedReference, String> {
    const SHAPES: &str = "expected `aggregate#id`, `#id` or `domain#aggregate#id`";
    let parts: Vec<&str> = text.split('#').collect();
    let (domain, aggregate, id) = match parts.as_slice() {
        [agg, id] => (None, *agg, *id),
        [domain, agg, id] => {
            if !is_bare_token(domain) || agg.is_empty() {
                return Err(format!("value is not a valid reference; {SHAPES}"));
            }
            (Some(domain.to_string()), *agg, *id)
        }
        _ => return Err(format!("value is not a valid reference; {SHAPES}")),
    };
    if !aggregate.is_empty() && !is_bare_token(aggregate) {
        return Err(format!(
            "value is not a valid reference: `{}` is not an aggregate name; {SHAPES}",
            aggregate.chars().take(MAX_NAME_CHARS).collect::<String>()
        ));
    }
    if !valid_reference_id(id) {
        return Err(format!(
            "value is not a valid reference: the id must be 1 to {MAX_REFERENCE_ID_CHARS} characters \
             without `#`, spaces or control characters"
        ));
    }
    Ok(ParsedReference {
        domain,
        aggregate: if aggregate.is_empty() {
            None
        } else {
            Some(aggregate.to_string())
        },
        id: id.to_string(),
    })
}

// ---------------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------------

/// Checks a non-null value against a format other than `reference`
/// (references are checked in `validate`, which knows the rule).
pub(crate) fn check_format(format: Format, value: &Value) -> Result<(), String> {
    if format == Format::Wgs84 {
        return check_wgs84(value);
    }
    let Value::String(s) = value else {
        return Err(format!("value must be a string to match format `{format}`"));
    };
    let ok = match format {
        Format::Email => is_email(s),
        Format::Url => is_url(s),
        Format::CreditCard => is_credit_card(s),
        Format::CountryCode => is_country_code(s),
        Format::Iso8601 => parse_timestamp(s).is_some() || parse_date(s).is_some(),
        Format::CamelCase => is_camel_case(s),
        Format::SnakeCase => is_snake_case(s),
        Format::KebabCase => is_kebab_case(s),
        Format::PascalCase => is_pascal_case(s),
        Format::UpperCaseSnakeCase => is_upper_snake_case(s),
        Format::Reference => parse_reference(s).is_ok(),
        Format::Wgs84 => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("value does not match format `{format}`"))
    }
}

/// Pragmatic email check: `local@domain.tld`, one `@`, no spaces, ASCII,
/// dot-atom local part, DNS-style domain with an alphabetic TLD.
pub(crate) fn is_email(s: &str) -> bool {
    if s.len() > MAX_EMAIL_CHARS || !s.is_ascii() {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    if domain.contains('@') || local.is_empty() || local.len() > 64 {
        return false;
    }
    let local_ok = local
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    if !local_ok || !is_hostname(domain, true) {
        return false;
    }
    let tld = domain.rsplit('.').next().unwrap_or("");
    tld.len() >= 2
        && (tld.chars().all(|c| c.is_ascii_alphabetic())
            || (tld.starts_with("xn--")
                && tld.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')))
}

/// DNS host name: dot-separated labels of letters, digits and `-`
/// (not at either end), 1..=63 chars each, at most 253 in all.
fn is_hostname(s: &str, need_dot: bool) -> bool {
    if s.is_empty() || s.len() > 253 || (need_dot && !s.contains('.')) {
        return false;
    }
    s.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// URL schemes accepted by the `url` format.
const URL_SCHEMES: [&str; 7] = ["http", "https", "ftp", "ftps", "sftp", "ws", "wss"];

/// `scheme://[userinfo@]host[:port][/path][?query][#fragment]` with an
/// accepted scheme, a DNS name, IPv4 or bracketed IPv6 host, and only
/// RFC 3986 characters (valid `%XX` escapes) after the host.
pub(crate) fn is_url(s: &str) -> bool {
    if s.len() > MAX_URL_CHARS || !s.is_ascii() {
        return false;
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    if !URL_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
        return false;
    }
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at_checked(auth_end).unwrap_or((rest, ""));
    let host_port = match authority.rsplit_once('@') {
        Some((userinfo, hp)) => {
            if !uri_chars_ok(userinfo, |c| {
                is_unreserved(c) || is_sub_delim(c) || c == ':'
            }) {
                return false;
            }
            hp
        }
        None => authority,
    };
    let (host_ok, port) = if let Some(after) = host_port.strip_prefix('[') {
        let Some((v6, after)) = after.split_once(']') else {
            return false;
        };
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(port) => Some(port),
                None => return false,
            },
        };
        (v6.parse::<Ipv6Addr>().is_ok(), port)
    } else {
        let (host, port) = match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        };
        let all_numeric = host.chars().all(|c| c.is_ascii_digit() || c == '.');
        let ok = if all_numeric {
            host.parse::<Ipv4Addr>().is_ok()
        } else {
            is_hostname(host, false)
        };
        (ok, port)
    };
    if !host_ok {
        return false;
    }
    if let Some(port) = port {
        if port.is_empty()
            || port.len() > 5
            || !port.bytes().all(|b| b.is_ascii_digit())
            || !matches!(port.parse::<u32>(), Ok(p) if p <= 65535)
        {
            return false;
        }
    }
    // Path, query and fragment: at most one `#`.
    if tail.matches('#').count() > 1 {
        return false;
    }
    uri_chars_ok(tail, |c| {
        is_unreserved(c) || is_sub_delim(c) || matches!(c, ':' | '@' | '/' | '?' | '#')
    })
}

fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

fn is_sub_delim(c: char) -> bool {
    matches!(
        c,
        '!' | '$' | '&' | '\'' | '(' | ')' | '*' | '+' | ',' | ';' | '='
    )
}

/// Every char is allowed by `ok` or starts a `%XX` escape.
fn uri_chars_ok(s: &str, ok: impl Fn(char) -> bool) -> bool {
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            let hex = (chars.next(), chars.next());
            match hex {
                (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => {}
                _ => return false,
            }
        } else if !ok(c) {
            return false;
        }
    }
    true
}

/// 13 to 19 digits (spaces and dashes allowed between them) passing Luhn.
pub(crate) fn is_credit_card(s: &str) -> bool {
    if !s
        .chars()
        .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
    {
        return false;
    }
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let dd = d * 2;
                if dd > 9 {
                    dd - 9
                } else {
                    dd
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The 249 officially assigned ISO 3166-1 alpha-2 codes, sorted.
pub(crate) const COUNTRY_CODES: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

pub(crate) fn is_country_code(s: &str) -> bool {
    COUNTRY_CODES.binary_search(&s).is_ok()
}

/// `camelCase`: lowercase letter first, then letters and digits.
pub(crate) fn is_camel_case(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z')) && chars.all(|c| c.is_ascii_alphanumeric())
}

/// `PascalCase`: uppercase letter first, then letters and digits.
pub(crate) fn is_pascal_case(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('A'..='Z')) && chars.all(|c| c.is_ascii_alphanumeric())
}

/// Words of `[a-z0-9]` (first starting with a letter) joined by `sep`.
fn is_separated(s: &str, sep: char, upper: bool) -> bool {
    let word_char = |c: char| {
        c.is_ascii_digit()
            || if upper {
                c.is_ascii_uppercase()
            } else {
                c.is_ascii_lowercase()
            }
    };
    let mut words = s.split(sep);
    let first_ok = words.next().is_some_and(|w| {
        w.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && w.chars().all(word_char)
    });
    first_ok && words.all(|w| !w.is_empty() && w.chars().all(word_char))
}

/// `snake_case`: `^[a-z][a-z0-9]*(_[a-z0-9]+)*$`.
pub(crate) fn is_snake_case(s: &str) -> bool {
    is_separated(s, '_', false)
}

/// `kebab-case`: `^[a-z][a-z0-9]*(-[a-z0-9]+)*$`.
pub(crate) fn is_kebab_case(s: &str) -> bool {
    is_separated(s, '-', false)
}

/// `UPPER_CASE_SNAKE_CASE`: `^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$`.
pub(crate) fn is_upper_snake_case(s: &str) -> bool {
    is_separated(s, '_', true)
}

/// A strict decimal coordinate: `-?digits(.digits)?`.
fn parse_coordinate(s: &str) -> Option<f64> {
    let t = s.trim();
    let body = t.strip_prefix('-').unwrap_or(t);
    let (i, f) = body.split_once('.').unwrap_or((body, "0"));
    if i.is_empty()
        || f.is_empty()
        || t.len() > 32
        || !i.bytes().all(|b| b.is_ascii_digit())
        || !f.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    t.parse().ok()
}

/// WGS 84 coordinates: `"lat,lon"`, `{"lat":..,"lon":..}`,
/// `{"latitude":..,"longitude":..}` or `[lat, lon]`.
pub(crate) fn check_wgs84(value: &Value) -> Result<(), String> {
    const SHAPES: &str =
        "expected \"lat,lon\", {\"lat\", \"lon\"}, {\"latitude\", \"longitude\"} or [lat, lon]";
    let (lat, lon) = match value {
        Value::String(s) => {
            let Some((a, b)) = s.split_once(',') else {
                return Err(format!("value is not a WGS 84 coordinate; {SHAPES}"));
            };
            match (parse_coordinate(a), parse_coordinate(b)) {
                (Some(a), Some(b)) => (a, b),
                _ => return Err(format!("value is not a WGS 84 coordinate; {SHAPES}")),
            }
        }
        Value::Array(items) => match items.as_slice() {
            [Value::Number(a), Value::Number(b)] => match (a.as_f64(), b.as_f64()) {
                (Some(a), Some(b)) => (a, b),
                _ => return Err(format!("value is not a WGS 84 coordinate; {SHAPES}")),
            },
            _ => return Err(format!("value is not a WGS 84 coordinate; {SHAPES}")),
        },
        Value::Object(map) => {
            let pair = if map.len() == 2 && map.contains_key("lat") && map.contains_key("lon") {
                (map.get("lat"), map.get("lon"))
            } else if map.len() == 2
                && map.contains_key("latitude")
                && map.contains_key("longitude")
            {
                (map.get("latitude"), map.get("longitude"))
            } else {
                return Err(format!("value is not a WGS 84 coordinate; {SHAPES}"));
            };
            match (
                pair.0.and_then(Value::as_f64),
                pair.1.and_then(Value::as_f64),
            ) {
                (Some(a), Some(b)) => (a, b),
                _ => return Err(format!("value is not a WGS 84 coordinate; {SHAPES}")),
            }
        }
        _ => return Err(format!("value is not a WGS 84 coordinate; {SHAPES}")),
    };
    if !(-90.0..=90.0).contains(&lat) {
        return Err("latitude must be between -90 and 90".into());
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err("longitude must be between -180 and 180".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn country_list_is_sorted_unique_and_complete() {
        assert_eq!(COUNTRY_CODES.len(), 249);
        assert!(COUNTRY_CODES.windows(2).all(|w| w[0] < w[1]));
        for c in [
            "US", "GB", "DE", "SS", "XK_NOT", "AX", "BQ", "CW", "SX", "ZW",
        ] {
            assert_eq!(is_country_code(c), c != "XK_NOT", "{c}");
        }
        // Not officially assigned / reserved / wrong case.
        for c in ["XK", "UK", "EU", "AN", "us", "U", "USA", ""] {
            assert!(!is_country_code(c), "{c}");
        }
    }

    #[test]
    fn decimal_parse_and_normalize_table() {
        type Case<'a> = (&'a str, bool, u8, u8, Result<&'a str, &'a str>);
        let cases: &[Case] = &[
            ("12.5", false, 12, 2, Ok("12.50")),
            ("0", false, 12, 2, Ok("0.00")),
            ("-0.00", false, 5, 2, Ok("0.00")),
            ("-1.5", false, 5, 2, Ok("-1.50")),
            ("007.10", false, 5, 2, Ok("7.10")),
            ("1.2300", false, 5, 2, Ok("1.23")),
            (
                "1.234",
                false,
                5,
                2,
                Err("has 3 fractional digits; the scale allows 2"),
            ),
            (
                "1234",
                false,
                5,
                2,
                Err("has 4 integer digits; decimal(5,2) allows 3"),
            ),
            ("999.99", false, 5, 2, Ok("999.99")),
            ("5", false, 3, 0, Ok("5")),
            ("5.0", false, 3, 0, Ok("5")),
            ("0.5", false, 1, 1, Ok("0.5")),
            ("1e2", true, 5, 2, Ok("100.00")),
            ("1.5E-1", true, 5, 2, Ok("0.15")),
            ("1e20", true, 38, 0, Ok("100000000000000000000")),
        ];
        for (input, exp, p, s, expected) in cases {
            let got = Decimal::parse(input, *exp).map(|d| d.normalize(*p, *s));
            let expected = expected.map(str::to_string).map_err(str::to_string);
            assert_eq!(got, Some(expected), "{input}");
        }
        for bad in [
            "", "-", "1.", ".5", "+1", "1e2", "abc", "1,5", "1.2.3", " 1", "NaN",
        ] {
            assert_eq!(Decimal::parse(bad, false), None, "{bad}");
        }
        assert_eq!(Decimal::parse("1e999999", true), None);
        assert_eq!(Decimal::parse("1e-999999", true), None);
    }

    #[test]
    fn decimal_ordering() {
        let d = |s: &str| Decimal::parse(s, false);
        let sorted = [
            "-10", "-9.5", "-0.01", "0", "0.001", "0.01", "0.5", "0.51", "0.6", "9.99", "10",
        ];
        for w in sorted.windows(2) {
            assert!(d(w[0]) < d(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(d("1.50"), d("1.5"));
        assert_eq!(d("-0"), d("0"));
    }

    #[test]
    fn timestamps_and_dates() {
        let ts = |s: &str| parse_timestamp(s).map(|t| format_timestamp(&t));
        assert_eq!(
            ts("2026-01-01T00:00:00Z").as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            ts("2026-01-01T01:30:00+01:30").as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            ts("2025-12-31T23:00:00.5-02:00").as_deref(),
            Some("2026-01-01T01:00:00.500Z")
        );
        assert_eq!(
            ts("2026-01-01t00:00:00z").as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            ts("2026-01-01T00:00:00.123456Z").as_deref(),
            Some("2026-01-01T00:00:00.123456Z")
        );
        for bad in [
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "yesterday",
            "",
        ] {
            assert_eq!(ts(bad), None, "{bad}");
        }
        assert_eq!(
            parse_date("2024-02-29").map(|d| d.to_string()).as_deref(),
            Some("2024-02-29")
        );
        for bad in [
            "2023-02-29",
            "2024-2-29",
            "2024-02-29T00:00:00Z",
            "20240229",
            "2024/02/29",
            "+024-02-29",
            "2024-00-10",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn references_table() {
        let ok = |s: &str| parse_reference(s).map(|r| (r.domain, r.aggregate, r.id));
        assert_eq!(
            ok("person#p-1"),
            Ok((None, Some("person".into()), "p-1".into()))
        );
        assert_eq!(ok("#p1"), Ok((None, None, "p1".into())));
        assert_eq!(
            ok("default#person#p1"),
            Ok((Some("default".into()), Some("person".into()), "p1".into()))
        );
        for bad in [
            "p1",
            "person#",
            "#",
            "a#b#c#d",
            "per son#1",
            "person#a b",
            "1abc#x",
            "#person#1",
            "",
        ] {
            assert!(parse_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn format_table() {
        let cases: &[(Format, Value, bool)] = &[
            (Format::Email, json!("ada@example.com"), true),
            (Format::Email, json!("a.b+tag@mail.example.co.uk"), true),
            (Format::Email, json!("ada@localhost"), false),
            (Format::Email, json!("ada@@example.com"), false),
            (Format::Email, json!("a da@example.com"), false),
            (Format::Email, json!("ada@exa_mple.com"), false),
            (Format::Email, json!(".ada@example.com"), false),
            (Format::Email, json!("ada@example.c0m"), false),
            (Format::Email, json!("@example.com"), false),
            (Format::Email, json!(42), false),
            (Format::Url, json!("https://example.com"), true),
            (
                Format::Url,
                json!("http://user:pw@example.com:8080/a/b?x=1&y=%20#frag"),
                true,
            ),
            (Format::Url, json!("ftp://10.0.0.1/file.txt"), true),
            (Format::Url, json!("https://[::1]:443/"), true),
            (Format::Url, json!("HTTPS://EXAMPLE.COM"), true),
            (Format::Url, json!("https://localhost"), true),
            (Format::Url, json!("wss://example.com:0/socket"), true),
            (Format::Url, json!("mailto:ada@example.com"), false),
            (Format::Url, json!("https://example.com/a#b#c"), false),
            (Format::Url, json!("example.com"), false),
            (Format::Url, json!("javascript://alert(1)"), false),
            (Format::Url, json!("https://exa mple.com"), false),
            (Format::Url, json!("https://example.com/a b"), false),
            (Format::Url, json!("https://"), false),
            (Format::Url, json!("https://example.com:99999"), false),
            (Format::Url, json!("https://example.com/%zz"), false),
            (Format::Url, json!("https://999.1.1.1"), false),
            (Format::Url, json!("https://[zz]/"), false),
            (Format::Url, json!("https://ex--ample-.com"), false),
            (Format::CreditCard, json!("4111 1111 1111 1111"), true),
            (Format::CreditCard, json!("4111-1111-1111-1111"), true),
            (Format::CreditCard, json!("378282246310005"), true),
            (Format::CreditCard, json!("4111 1111 1111 1112"), false),
            (Format::CreditCard, json!("411111111111"), false),
            (Format::CreditCard, json!("4111x1111111111111"), false),
            (Format::CountryCode, json!("NZ"), true),
            (Format::CountryCode, json!("nz"), false),
            (Format::CountryCode, json!("ZZ"), false),
            (Format::Iso8601, json!("2026-01-01T00:00:00Z"), true),
            (Format::Iso8601, json!("2026-01-01"), true),
            (Format::Iso8601, json!("2026-01-01T00:00"), false),
            (Format::Iso8601, json!("01/01/2026"), false),
            (Format::Wgs84, json!("51.5074,-0.1278"), true),
            (Format::Wgs84, json!(" 51.5 , -0.12 "), true),
            (Format::Wgs84, json!({"lat": 51.5, "lon": -0.12}), true),
            (
                Format::Wgs84,
                json!({"latitude": -90, "longitude": 180}),
                true,
            ),
            (Format::Wgs84, json!([51.5, -0.12]), true),
            (Format::Wgs84, json!("91,0"), false),
            (Format::Wgs84, json!("0,181"), false),
            (Format::Wgs84, json!([0, -180.5]), false),
            (Format::Wgs84, json!({"lat": 1}), false),
            (Format::Wgs84, json!({"lat": 1, "longitude": 2}), false),
            (Format::Wgs84, json!("inf,0"), false),
            (Format::Wgs84, json!("1,2,3"), false),
            (Format::Wgs84, json!(["1", "2"]), false),
            (Format::CamelCase, json!("camelCase2"), true),
            (Format::CamelCase, json!("CamelCase"), false),
            (Format::CamelCase, json!("camel_case"), false),
            (Format::SnakeCase, json!("snake_case_2"), true),
            (Format::SnakeCase, json!("snake__case"), false),
            (Format::SnakeCase, json!("_snake"), false),
            (Format::SnakeCase, json!("Snake"), false),
            (Format::KebabCase, json!("kebab-case"), true),
            (Format::KebabCase, json!("kebab-"), false),
            (Format::KebabCase, json!("kebab_case"), false),
            (Format::PascalCase, json!("PascalCase"), true),
            (Format::PascalCase, json!("pascalCase"), false),
            (Format::PascalCase, json!("Pascal-Case"), false),
            (Format::UpperCaseSnakeCase, json!("ABC_123"), true),
            (Format::UpperCaseSnakeCase, json!("ABC"), true),
            (Format::UpperCaseSnakeCase, json!("ABC__1"), false),
            (Format::UpperCaseSnakeCase, json!("1ABC"), false),
            (Format::UpperCaseSnakeCase, json!("AbC"), false),
            (Format::Reference, json!("person#1"), true),
            (Format::Reference, json!("person"), false),
        ];
        for (format, value, ok) in cases {
            assert_eq!(
                check_format(*format, value).is_ok(),
                *ok,
                "{format} {value}"
            );
        }
        assert_eq!(
            check_format(Format::Wgs84, &json!("91,0")),
            Err("latitude must be between -90 and 90".to_string())
        );
        assert_eq!(
            check_format(Format::Email, &json!(1)),
            Err("value must be a string to match format `email`".to_string())
        );
    }
}
