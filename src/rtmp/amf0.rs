//! AMF0 encoding and decoding of RTMP command (type 20) and data (type 18) message payloads.
//!
//! This module owns the AMF0 wire format and nothing else: turning payload bytes
//! into [`Amf0Value`]s and back. It knows nothing about RTMP commands, chunking
//! or sessions.
//!
//! The decoder faces hostile network input, so it must never:
//! - panic, whatever the bytes are;
//! - recurse without bound: nested Object/EcmaArray/StrictArray/TypedObject values
//!   deeper than [`MAX_DEPTH`] fail with [`Amf0Error::TooDeep`];
//! - build more values than its budget: every value (nested ones included) is counted
//!   before it is decoded, and past the budget ([`MAX_VALUES`] unless the caller gives a
//!   smaller one) decoding fails with [`Amf0Error::TooManyValues`]. A payload of one-byte
//!   null markers would otherwise become a `Vec` some 50 times its size;
//! - trust a length or count read from the input: a string is only allocated once
//!   all of its bytes are known to be present, and a strict array's element count
//!   never sizes an allocation beyond a small cap.
//!
//! Decisions worth knowing:
//! - Movieclip (0x04) and recordset (0x0E) are reserved markers that no encoder
//!   emits; they are decode errors ([`Amf0Error::ReservedMarker`]), not
//!   [`Amf0Value::Unsupported`], so garbage is not silently accepted.
//! - An AMF3 value after the 0x11 avmplus marker is mapped onto the closest AMF0
//!   variant (see [`Amf0Value`]); there is no AMF3 variant, so the encoder never
//!   emits AMF3.
//! - Invalid UTF-8 in strings and keys is converted lossily, never an error.
//! - A property with an empty key whose value is not the object-end marker is
//!   kept as a property named `""`, so every `Object` round-trips.
//! - An ECMA array may end without its end marker when the input ends exactly
//!   at a property boundary (old FMLE does this); other containers may not.

use bytes::{BufMut, Bytes, BytesMut};

/// Deepest allowed nesting of Object/EcmaArray/StrictArray/TypedObject values.
pub const MAX_DEPTH: usize = 32;

/// Values (nested ones included) one [`decode`] or [`decode_all`] call builds at most.
/// Real command and metadata payloads hold a few dozen.
pub const MAX_VALUES: usize = 4096;

/// Upper bound on the capacity reserved up front for a strict array. The count
/// on the wire is untrusted; past this the Vec grows only as real elements arrive.
const PREALLOC_CAP: usize = 64;

mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const MOVIECLIP: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const REFERENCE: u8 = 0x07;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0A;
    pub const DATE: u8 = 0x0B;
    pub const LONG_STRING: u8 = 0x0C;
    pub const UNSUPPORTED: u8 = 0x0D;
    pub const RECORDSET: u8 = 0x0E;
    pub const XML_DOCUMENT: u8 = 0x0F;
    pub const TYPED_OBJECT: u8 = 0x10;
    pub const AVMPLUS: u8 = 0x11;
}

mod amf3 {
    pub const UNDEFINED: u8 = 0x00;
    pub const NULL: u8 = 0x01;
    pub const FALSE: u8 = 0x02;
    pub const TRUE: u8 = 0x03;
    pub const INTEGER: u8 = 0x04;
    pub const DOUBLE: u8 = 0x05;
    pub const STRING: u8 = 0x06;
    pub const XML_DOC: u8 = 0x07;
    pub const DATE: u8 = 0x08;
    pub const XML: u8 = 0x0B;
}

/// One AMF0 value.
///
/// An AMF3 value found after the 0x11 avmplus marker is decoded into the closest
/// AMF0 variant: undefined -> `Undefined`, null -> `Null`, false/true -> `Boolean`,
/// integer (29-bit signed) and double -> `Number`, string -> `String`,
/// xml-doc and xml -> `XmlDocument`, date -> `Date` with `timezone: 0`.
/// Other AMF3 markers (arrays, objects, byte arrays, vectors, dictionaries) fail
/// with [`Amf0Error::UnsupportedAmf3Marker`].
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    /// 0x00: an IEEE 754 double.
    Number(f64),
    /// 0x01: any non-zero byte decodes as `true`.
    Boolean(bool),
    /// 0x02 (u16 length) or 0x0C (u32 length) on the wire; encoded as a long
    /// string only when longer than 0xFFFF bytes.
    String(String),
    /// 0x03: properties in wire order, duplicates kept.
    Object(Vec<(String, Amf0Value)>),
    /// 0x05.
    Null,
    /// 0x06.
    Undefined,
    /// 0x07: an index into the AMF0 reference table; kept as is, never resolved.
    Reference(u16),
    /// 0x08: properties in wire order. The u32 count on the wire is only a hint:
    /// decoding reads until the object-end marker (or, leniently, until the
    /// input ends at a property boundary).
    EcmaArray(Vec<(String, Amf0Value)>),
    /// 0x0A: elements in order.
    StrictArray(Vec<Amf0Value>),
    /// 0x0B: milliseconds since the Unix epoch, and a timezone offset in minutes
    /// (which the spec says should be 0).
    Date {
        /// Milliseconds since the Unix epoch (UTC).
        millis: f64,
        /// Offset in minutes; should be 0, kept as sent.
        timezone: i16,
    },
    /// 0x0D.
    Unsupported,
    /// 0x0F: XML text with a u32 length, like a long string.
    XmlDocument(String),
    /// 0x10: an object tagged with a class name.
    TypedObject {
        /// The registered class name (u16 length on the wire).
        class_name: String,
        /// Properties in wire order, duplicates kept.
        properties: Vec<(String, Amf0Value)>,
    },
}

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Amf0Error {
    /// The input ended before the value did (also: a length larger than the input).
    #[error("AMF0 input ended inside a value")]
    Truncated,
    /// A marker byte above 0x11.
    #[error("unknown AMF0 marker 0x{0:02x}")]
    UnknownMarker(u8),
    /// Movieclip (0x04) or recordset (0x0E): reserved by the spec, never sent.
    #[error("reserved AMF0 marker 0x{0:02x} (movieclip/recordset) is not supported")]
    ReservedMarker(u8),
    /// 0x09 where a value was expected.
    #[error("AMF0 object-end marker outside of an object")]
    UnexpectedObjectEnd,
    /// An AMF3 type after 0x11 that has no AMF0 mapping here (arrays, objects, ...).
    #[error("unsupported AMF3 marker 0x{0:02x}")]
    UnsupportedAmf3Marker(u8),
    /// An AMF3 string or date sent by reference; carries the reference index.
    #[error("AMF3 reference #{0} cannot be resolved: a lone AMF3 value has no reference table")]
    Amf3Reference(u32),
    /// Containers nested deeper than [`MAX_DEPTH`]; carries the limit.
    #[error("AMF nesting deeper than {0}")]
    TooDeep(usize),
    /// More values than the decoding budget; carries the budget.
    #[error("more than {0} AMF values in one message")]
    TooManyValues(usize),
}

/// Decode one value from the front of `input`, advancing it past the value.
///
/// On error `input` is left somewhere inside the value and should be discarded.
pub fn decode(input: &mut &[u8]) -> Result<Amf0Value, Amf0Error> {
    decode_value(input, 0, &mut Budget::new(MAX_VALUES))
}

/// Decode values until `input` is exhausted. Empty input gives an empty list.
pub fn decode_all(input: &[u8]) -> Result<Vec<Amf0Value>, Amf0Error> {
    decode_all_limited(input, MAX_VALUES)
}

/// [`decode_all`] building at most `max_values` values (nested ones included).
pub fn decode_all_limited(input: &[u8], max_values: usize) -> Result<Vec<Amf0Value>, Amf0Error> {
    let mut budget = Budget::new(max_values);
    let mut rest = input;
    let mut values = Vec::new();
    while !rest.is_empty() {
        values.push(decode_value(&mut rest, 0, &mut budget)?);
    }
    Ok(values)
}

/// What is left of a decoding budget of values.
struct Budget {
    left: usize,
    limit: usize,
}

impl Budget {
    fn new(limit: usize) -> Budget {
        Budget { left: limit, limit }
    }

    /// Counts one more value, failing once the budget is spent.
    fn take(&mut self) -> Result<(), Amf0Error> {
        self.left = self
            .left
            .checked_sub(1)
            .ok_or(Amf0Error::TooManyValues(self.limit))?;
        Ok(())
    }
}

/// Encode one value.
///
/// Lengths the format cannot express are clamped rather than panicking: keys
/// and class names longer than 0xFFFF bytes and strings longer than
/// `u32::MAX` bytes are cut at a char boundary, and arrays with more than
/// `u32::MAX` elements are cut. None of these fit in an RTMP message anyway.
/// Like any `BufMut` writer, this panics only if `out` cannot grow.
pub fn encode<B: BufMut>(value: &Amf0Value, out: &mut B) {
    match value {
        Amf0Value::Number(n) => {
            out.put_u8(marker::NUMBER);
            out.put_f64(*n);
        }
        Amf0Value::Boolean(b) => {
            out.put_u8(marker::BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        Amf0Value::String(s) => {
            if s.len() <= usize::from(u16::MAX) {
                out.put_u8(marker::STRING);
                put_short_str(s, out);
            } else {
                out.put_u8(marker::LONG_STRING);
                put_long_str(s, out);
            }
        }
        Amf0Value::Object(props) => {
            out.put_u8(marker::OBJECT);
            put_properties(props, out);
        }
        Amf0Value::Null => out.put_u8(marker::NULL),
        Amf0Value::Undefined => out.put_u8(marker::UNDEFINED),
        Amf0Value::Reference(index) => {
            out.put_u8(marker::REFERENCE);
            out.put_u16(*index);
        }
        Amf0Value::EcmaArray(props) => {
            out.put_u8(marker::ECMA_ARRAY);
            out.put_u32(clamp_count(props.len()));
            put_properties(props, out);
        }
        Amf0Value::StrictArray(items) => {
            let count = clamp_count(items.len());
            out.put_u8(marker::STRICT_ARRAY);
            out.put_u32(count);
            // Write exactly as many elements as the count says.
            for item in items.iter().take(count as usize) {
                encode(item, out);
            }
        }
        Amf0Value::Date { millis, timezone } => {
            out.put_u8(marker::DATE);
            out.put_f64(*millis);
            out.put_i16(*timezone);
        }
        Amf0Value::Unsupported => out.put_u8(marker::UNSUPPORTED),
        Amf0Value::XmlDocument(s) => {
            out.put_u8(marker::XML_DOCUMENT);
            put_long_str(s, out);
        }
        Amf0Value::TypedObject {
            class_name,
            properties,
        } => {
            out.put_u8(marker::TYPED_OBJECT);
            put_short_str(class_name, out);
            put_properties(properties, out);
        }
    }
}

/// Convenience: encode a list of values into a fresh `Bytes`.
pub fn encode_all(values: &[Amf0Value]) -> Bytes {
    let mut out = BytesMut::new();
    for value in values {
        encode(value, &mut out);
    }
    out.freeze()
}

impl Amf0Value {
    /// The text of a `String`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a `Number`.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The value of a `Boolean`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// Property lookup for Object, EcmaArray and TypedObject (first match).
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        match self {
            Amf0Value::Object(props)
            | Amf0Value::EcmaArray(props)
            | Amf0Value::TypedObject {
                properties: props, ..
            } => props.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Small builder helper: `Amf0Value::object([("level", "status".into()), ...])`.
    pub fn object<I: IntoIterator<Item = (&'static str, Amf0Value)>>(props: I) -> Amf0Value {
        Amf0Value::Object(props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
}

impl From<&str> for Amf0Value {
    fn from(s: &str) -> Self {
        Amf0Value::String(s.to_owned())
    }
}

impl From<String> for Amf0Value {
    fn from(s: String) -> Self {
        Amf0Value::String(s)
    }
}

impl From<f64> for Amf0Value {
    fn from(n: f64) -> Self {
        Amf0Value::Number(n)
    }
}

impl From<bool> for Amf0Value {
    fn from(b: bool) -> Self {
        Amf0Value::Boolean(b)
    }
}

// ---------------------------------------------------------------------------
// Decoding

/// `depth` is the number of containers already open around this value.
fn decode_value(
    input: &mut &[u8],
    depth: usize,
    budget: &mut Budget,
) -> Result<Amf0Value, Amf0Error> {
    budget.take()?;
    let m = read_u8(input)?;
    match m {
        marker::NUMBER => Ok(Amf0Value::Number(read_f64(input)?)),
        marker::BOOLEAN => Ok(Amf0Value::Boolean(read_u8(input)? != 0)),
        marker::STRING => {
            let len = usize::from(read_u16(input)?);
            Ok(Amf0Value::String(read_utf8(input, len)?))
        }
        marker::OBJECT => {
            let depth = enter(depth)?;
            Ok(Amf0Value::Object(read_properties(
                input, depth, false, budget,
            )?))
        }
        marker::MOVIECLIP | marker::RECORDSET => Err(Amf0Error::ReservedMarker(m)),
        marker::NULL => Ok(Amf0Value::Null),
        marker::UNDEFINED => Ok(Amf0Value::Undefined),
        marker::REFERENCE => Ok(Amf0Value::Reference(read_u16(input)?)),
        marker::ECMA_ARRAY => {
            let depth = enter(depth)?;
            // The count is only a hint (encoders get it wrong); the end marker decides.
            let _count_hint = read_u32(input)?;
            Ok(Amf0Value::EcmaArray(read_properties(
                input, depth, true, budget,
            )?))
        }
        marker::OBJECT_END => Err(Amf0Error::UnexpectedObjectEnd),
        marker::STRICT_ARRAY => {
            let depth = enter(depth)?;
            let count = read_u32(input)?;
            // Every element takes at least one byte, so an honest count never
            // exceeds the bytes left; cap further so nested arrays cannot
            // multiply the reservation.
            let hint = usize::try_from(count)
                .unwrap_or(usize::MAX)
                .min(input.len())
                .min(PREALLOC_CAP);
            let mut items = Vec::with_capacity(hint);
            // A lying count ends in Truncated after at most input.len() iterations.
            for _ in 0..count {
                items.push(decode_value(input, depth, budget)?);
            }
            Ok(Amf0Value::StrictArray(items))
        }
        marker::DATE => {
            let millis = read_f64(input)?;
            let timezone = i16::from_be_bytes(read_array(input)?);
            Ok(Amf0Value::Date { millis, timezone })
        }
        marker::LONG_STRING => {
            let len = read_u32_len(input)?;
            Ok(Amf0Value::String(read_utf8(input, len)?))
        }
        marker::UNSUPPORTED => Ok(Amf0Value::Unsupported),
        marker::XML_DOCUMENT => {
            let len = read_u32_len(input)?;
            Ok(Amf0Value::XmlDocument(read_utf8(input, len)?))
        }
        marker::TYPED_OBJECT => {
            let depth = enter(depth)?;
            let name_len = usize::from(read_u16(input)?);
            let class_name = read_utf8(input, name_len)?;
            let properties = read_properties(input, depth, false, budget)?;
            Ok(Amf0Value::TypedObject {
                class_name,
                properties,
            })
        }
        marker::AVMPLUS => decode_amf3(input),
        other => Err(Amf0Error::UnknownMarker(other)),
    }
}

/// Open one more container level, failing past `MAX_DEPTH`.
fn enter(depth: usize) -> Result<usize, Amf0Error> {
    let depth = depth + 1;
    if depth > MAX_DEPTH {
        return Err(Amf0Error::TooDeep(MAX_DEPTH));
    }
    Ok(depth)
}

/// Read `key, value` pairs up to the empty-key + object-end terminator.
///
/// With `end_at_eof`, running out of input exactly where the next key would
/// start also ends the list (ECMA arrays from old FMLE lack the terminator).
fn read_properties(
    input: &mut &[u8],
    depth: usize,
    end_at_eof: bool,
    budget: &mut Budget,
) -> Result<Vec<(String, Amf0Value)>, Amf0Error> {
    let mut props = Vec::new();
    loop {
        if end_at_eof && input.is_empty() {
            return Ok(props);
        }
        let key_len = usize::from(read_u16(input)?);
        if key_len == 0 {
            if let Some((&marker::OBJECT_END, rest)) = input.split_first() {
                *input = rest;
                return Ok(props);
            }
        }
        let key = read_utf8(input, key_len)?;
        let value = decode_value(input, depth, budget)?;
        props.push((key, value));
    }
}

/// Decode the AMF3 value after an avmplus marker into the closest AMF0 variant.
/// Only scalar AMF3 types are supported, so this never recurses.
fn decode_amf3(input: &mut &[u8]) -> Result<Amf0Value, Amf0Error> {
    let m = read_u8(input)?;
    match m {
        amf3::UNDEFINED => Ok(Amf0Value::Undefined),
        amf3::NULL => Ok(Amf0Value::Null),
        amf3::FALSE => Ok(Amf0Value::Boolean(false)),
        amf3::TRUE => Ok(Amf0Value::Boolean(true)),
        amf3::INTEGER => {
            let raw = read_u29(input)?;
            // Sign-extend the 29-bit two's complement value.
            let signed = ((raw << 3) as i32) >> 3;
            Ok(Amf0Value::Number(f64::from(signed)))
        }
        amf3::DOUBLE => Ok(Amf0Value::Number(read_f64(input)?)),
        amf3::STRING => Ok(Amf0Value::String(read_amf3_utf8(input)?)),
        amf3::XML_DOC | amf3::XML => Ok(Amf0Value::XmlDocument(read_amf3_utf8(input)?)),
        amf3::DATE => {
            let header = read_u29(input)?;
            if header & 1 == 0 {
                return Err(Amf0Error::Amf3Reference(header >> 1));
            }
            let millis = read_f64(input)?;
            Ok(Amf0Value::Date {
                millis,
                timezone: 0,
            })
        }
        other => Err(Amf0Error::UnsupportedAmf3Marker(other)),
    }
}

/// An AMF3 U29 variable-length integer: up to three 7-bit groups with a
/// continuation bit, then a full 8-bit group. At most 29 bits, so no overflow.
fn read_u29(input: &mut &[u8]) -> Result<u32, Amf0Error> {
    let mut value = 0u32;
    for _ in 0..3 {
        let b = read_u8(input)?;
        value = (value << 7) | u32::from(b & 0x7F);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    let b = read_u8(input)?;
    Ok((value << 8) | u32::from(b))
}

/// An AMF3 string body (used by string, xml-doc and xml): U29 header whose low
/// bit set means an inline string of `header >> 1` bytes, clear means a
/// reference into a string table that a lone AMF3 value does not have.
fn read_amf3_utf8(input: &mut &[u8]) -> Result<String, Amf0Error> {
    let header = read_u29(input)?;
    if header & 1 == 0 {
        return Err(Amf0Error::Amf3Reference(header >> 1));
    }
    let len = usize::try_from(header >> 1).map_err(|_| Amf0Error::Truncated)?;
    read_utf8(input, len)
}

/// Split off `n` bytes, or fail without consuming if fewer remain.
fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], Amf0Error> {
    if input.len() < n {
        return Err(Amf0Error::Truncated);
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn read_array<const N: usize>(input: &mut &[u8]) -> Result<[u8; N], Amf0Error> {
    let (head, rest) = input.split_first_chunk::<N>().ok_or(Amf0Error::Truncated)?;
    *input = rest;
    Ok(*head)
}

fn read_u8(input: &mut &[u8]) -> Result<u8, Amf0Error> {
    let (&b, rest) = input.split_first().ok_or(Amf0Error::Truncated)?;
    *input = rest;
    Ok(b)
}

fn read_u16(input: &mut &[u8]) -> Result<u16, Amf0Error> {
    Ok(u16::from_be_bytes(read_array(input)?))
}

fn read_u32(input: &mut &[u8]) -> Result<u32, Amf0Error> {
    Ok(u32::from_be_bytes(read_array(input)?))
}

/// A u32 length; one that does not even fit in `usize` cannot be present.
fn read_u32_len(input: &mut &[u8]) -> Result<usize, Amf0Error> {
    usize::try_from(read_u32(input)?).map_err(|_| Amf0Error::Truncated)
}

fn read_f64(input: &mut &[u8]) -> Result<f64, Amf0Error> {
    Ok(f64::from_be_bytes(read_array(input)?))
}

/// Read `len` bytes as text. The bytes are checked to be present before any
/// allocation; invalid UTF-8 is replaced, not rejected, since peers send it.
fn read_utf8(input: &mut &[u8], len: usize) -> Result<String, Amf0Error> {
    let bytes = take(input, len)?;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

// ---------------------------------------------------------------------------
// Encoding

fn put_properties<B: BufMut>(props: &[(String, Amf0Value)], out: &mut B) {
    for (key, value) in props {
        put_short_str(key, out);
        encode(value, out);
    }
    out.put_u16(0);
    out.put_u8(marker::OBJECT_END);
}

/// u16 length + bytes (string body, key, class name).
fn put_short_str<B: BufMut>(s: &str, out: &mut B) {
    let s = clamp_str(s, usize::from(u16::MAX));
    // Cannot fail after the clamp; the fallback only avoids a panic path.
    out.put_u16(u16::try_from(s.len()).unwrap_or(u16::MAX));
    out.put_slice(s.as_bytes());
}

/// u32 length + bytes (long string, xml document).
fn put_long_str<B: BufMut>(s: &str, out: &mut B) {
    let max = usize::try_from(u32::MAX).unwrap_or(usize::MAX);
    let s = clamp_str(s, max);
    out.put_u32(clamp_count(s.len()));
    out.put_slice(s.as_bytes());
}

fn clamp_count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn clamp_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(n: f64) -> Amf0Value {
        Amf0Value::Number(n)
    }

    fn s(text: &str) -> Amf0Value {
        Amf0Value::from(text)
    }

    fn props(list: &[(&str, Amf0Value)]) -> Vec<(String, Amf0Value)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn enc(value: &Amf0Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode(value, &mut out);
        out
    }

    /// Decode exactly one value that must span all of `bytes`.
    fn dec_one(bytes: &[u8]) -> Result<Amf0Value, Amf0Error> {
        let mut rest = bytes;
        let value = decode(&mut rest)?;
        assert!(rest.is_empty(), "{} bytes left over", rest.len());
        Ok(value)
    }

    /// Hand-built bytes of a short string, as a capture would show them.
    fn wire_str(text: &str) -> Vec<u8> {
        let mut out = vec![0x02];
        out.extend_from_slice(&(text.len() as u16).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
        out
    }

    fn wire_key(key: &str) -> Vec<u8> {
        let mut out = (key.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(key.as_bytes());
        out
    }

    fn wire_num(n: f64) -> Vec<u8> {
        let mut out = vec![0x00];
        out.extend_from_slice(&n.to_be_bytes());
        out
    }

    fn sample_values() -> Vec<Amf0Value> {
        let long = format!("{}é{}", "x".repeat(70_000), "y".repeat(10));
        vec![
            num(0.0),
            num(-1.5),
            num(f64::INFINITY),
            num(f64::MIN_POSITIVE),
            Amf0Value::Boolean(true),
            Amf0Value::Boolean(false),
            s(""),
            s("connect"),
            s("ünïcödé ✓"),
            Amf0Value::String("z".repeat(0xFFFF)),
            Amf0Value::String(long.clone()),
            Amf0Value::Object(vec![]),
            Amf0Value::object([
                ("level", s("status")),
                ("code", s("NetStream.Play.Start")),
                ("dup", num(1.0)),
                ("dup", num(2.0)),
                ("", s("empty key")),
                (
                    "nested",
                    Amf0Value::object([
                        ("deeper", Amf0Value::object([("x", Amf0Value::Null)])),
                        ("arr", Amf0Value::StrictArray(vec![num(1.0), s("two")])),
                    ]),
                ),
            ]),
            Amf0Value::Null,
            Amf0Value::Undefined,
            Amf0Value::Reference(0),
            Amf0Value::Reference(0xBEEF),
            Amf0Value::EcmaArray(vec![]),
            Amf0Value::EcmaArray(props(&[
                ("width", num(1280.0)),
                ("stereo", Amf0Value::Boolean(true)),
                ("inner", Amf0Value::EcmaArray(props(&[("a", s("b"))]))),
            ])),
            Amf0Value::StrictArray(vec![]),
            Amf0Value::StrictArray(vec![
                Amf0Value::Null,
                Amf0Value::Undefined,
                Amf0Value::StrictArray(vec![num(3.0)]),
                Amf0Value::object([("k", s("v"))]),
            ]),
            Amf0Value::Date {
                millis: 1_700_000_000_123.0,
                timezone: 0,
            },
            Amf0Value::Date {
                millis: -5.0,
                timezone: -480,
            },
            Amf0Value::Unsupported,
            Amf0Value::XmlDocument(String::new()),
            Amf0Value::XmlDocument("<a b=\"c\"/>".to_owned()),
            Amf0Value::XmlDocument(long),
            Amf0Value::TypedObject {
                class_name: "com.example.Thing".to_owned(),
                properties: props(&[
                    ("id", num(7.0)),
                    (
                        "when",
                        Amf0Value::Date {
                            millis: 1.0,
                            timezone: 60,
                        },
                    ),
                ]),
            },
            Amf0Value::TypedObject {
                class_name: String::new(),
                properties: vec![],
            },
        ]
    }

    #[test]
    fn every_variant_round_trips() {
        for value in sample_values() {
            let bytes = enc(&value);
            assert_eq!(dec_one(&bytes), Ok(value.clone()), "value {value:?}");
        }
        let all = sample_values();
        assert_eq!(decode_all(&encode_all(&all)), Ok(all));
    }

    #[test]
    fn nan_round_trips_as_nan() {
        let bytes = enc(&num(f64::NAN));
        let back = dec_one(&bytes).unwrap().as_number().unwrap();
        assert!(back.is_nan());
    }

    #[test]
    fn string_marker_depends_on_length() {
        let short = enc(&Amf0Value::String("a".repeat(0xFFFF)));
        assert_eq!(short[0], 0x02);
        assert_eq!(&short[1..3], &[0xFF, 0xFF]);
        let long = enc(&Amf0Value::String("a".repeat(0x10000)));
        assert_eq!(long[0], 0x0C);
        assert_eq!(&long[1..5], &[0x00, 0x01, 0x00, 0x00]);
        assert_eq!(long.len(), 5 + 0x10000);
        // A long-string marker with short content still decodes to a String.
        assert_eq!(dec_one(&[0x0C, 0, 0, 0, 2, b'h', b'i']), Ok(s("hi")));
    }

    #[test]
    fn overlong_key_is_clamped_at_char_boundary() {
        // 0xFFFF bytes would cut the 2-byte 'é' in half; the clamp backs off one byte.
        let key = format!("{}é", "k".repeat(0xFFFE));
        let value = Amf0Value::Object(vec![(key, Amf0Value::Null)]);
        let back = dec_one(&enc(&value)).unwrap();
        let Amf0Value::Object(props) = back else {
            panic!("not an object")
        };
        assert_eq!(props[0].0, "k".repeat(0xFFFE));
    }

    fn ffmpeg_connect_bytes() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(wire_str("connect"));
        b.extend(wire_num(1.0));
        b.push(0x03);
        b.extend(wire_key("app"));
        b.extend(wire_str("live"));
        b.extend(wire_key("type"));
        b.extend(wire_str("nonprivate"));
        b.extend(wire_key("flashVer"));
        b.extend(wire_str("FMLE/3.0 (compatible; Lavf61.7.100)"));
        b.extend(wire_key("tcUrl"));
        b.extend(wire_str("rtmp://127.0.0.1:1935/live"));
        b.extend([0x00, 0x00, 0x09]);
        b
    }

    #[test]
    fn decodes_ffmpeg_connect() {
        let bytes = ffmpeg_connect_bytes();
        // Spot-check the hand-built capture against known wire bytes.
        assert_eq!(
            &bytes[..19],
            &[
                0x02, 0x00, 0x07, b'c', b'o', b'n', b'n', b'e', b'c', b't', 0x00, 0x3F, 0xF0, 0, 0,
                0, 0, 0, 0
            ]
        );
        let values = decode_all(&bytes).unwrap();
        assert_eq!(values.len(), 3);
        assert_eq!(values[0].as_str(), Some("connect"));
        assert_eq!(values[1].as_number(), Some(1.0));
        let obj = &values[2];
        assert_eq!(obj.get("app").and_then(Amf0Value::as_str), Some("live"));
        assert_eq!(
            obj.get("type").and_then(Amf0Value::as_str),
            Some("nonprivate")
        );
        assert_eq!(
            obj.get("flashVer").and_then(Amf0Value::as_str),
            Some("FMLE/3.0 (compatible; Lavf61.7.100)")
        );
        assert_eq!(
            obj.get("tcUrl").and_then(Amf0Value::as_str),
            Some("rtmp://127.0.0.1:1935/live")
        );
        assert_eq!(obj.get("missing"), None);
        let expected = vec![
            s("connect"),
            num(1.0),
            Amf0Value::object([
                ("app", s("live")),
                ("type", s("nonprivate")),
                ("flashVer", s("FMLE/3.0 (compatible; Lavf61.7.100)")),
                ("tcUrl", s("rtmp://127.0.0.1:1935/live")),
            ]),
        ];
        assert_eq!(values, expected);
        // Our encoding is byte-identical to ffmpeg's.
        assert_eq!(&encode_all(&expected)[..], &bytes[..]);
    }

    const METADATA_FIELDS: usize = 16;

    fn on_metadata_bytes(with_end_marker: bool) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(wire_str("@setDataFrame"));
        b.extend(wire_str("onMetaData"));
        b.push(0x08);
        b.extend((METADATA_FIELDS as u32).to_be_bytes());
        let numbers = [
            ("duration", 0.0),
            ("width", 1280.0),
            ("height", 720.0),
            ("videodatarate", 2500.0),
            ("framerate", 30.0),
            ("videocodecid", 7.0),
            ("audiodatarate", 128.0),
            ("audiosamplerate", 44100.0),
            ("audiosamplesize", 16.0),
        ];
        for (k, n) in numbers {
            b.extend(wire_key(k));
            b.extend(wire_num(n));
        }
        b.extend(wire_key("stereo"));
        b.extend([0x01, 0x01]);
        b.extend(wire_key("audiocodecid"));
        b.extend(wire_num(10.0));
        b.extend(wire_key("major_brand"));
        b.extend(wire_str("isom"));
        b.extend(wire_key("minor_version"));
        b.extend(wire_str("512"));
        b.extend(wire_key("compatible_brands"));
        b.extend(wire_str("isomiso2avc1mp41"));
        b.extend(wire_key("encoder"));
        b.extend(wire_str("Lavf61.7.100"));
        b.extend(wire_key("filesize"));
        b.extend(wire_num(0.0));
        if with_end_marker {
            b.extend([0x00, 0x00, 0x09]);
        }
        b
    }

    fn check_metadata(values: &[Amf0Value]) {
        assert_eq!(values.len(), 3);
        assert_eq!(values[0].as_str(), Some("@setDataFrame"));
        assert_eq!(values[1].as_str(), Some("onMetaData"));
        let meta = &values[2];
        let Amf0Value::EcmaArray(fields) = meta else {
            panic!("third value is not an ECMA array: {meta:?}")
        };
        assert_eq!(fields.len(), METADATA_FIELDS);
        assert_eq!(fields[0].0, "duration");
        assert_eq!(fields[15].0, "filesize");
        let n = |k: &str| meta.get(k).and_then(Amf0Value::as_number);
        assert_eq!(n("width"), Some(1280.0));
        assert_eq!(n("height"), Some(720.0));
        assert_eq!(n("videocodecid"), Some(7.0));
        assert_eq!(n("audiosamplerate"), Some(44100.0));
        assert_eq!(meta.get("stereo").and_then(Amf0Value::as_bool), Some(true));
        assert_eq!(
            meta.get("encoder").and_then(Amf0Value::as_str),
            Some("Lavf61.7.100")
        );
    }

    #[test]
    fn decodes_set_data_frame_on_metadata() {
        let bytes = on_metadata_bytes(true);
        let values = decode_all(&bytes).unwrap();
        check_metadata(&values);
        assert_eq!(&encode_all(&values)[..], &bytes[..]);
    }

    #[test]
    fn ecma_array_without_end_marker_is_accepted_at_property_boundary() {
        check_metadata(&decode_all(&on_metadata_bytes(false)).unwrap());
        // Count says 2, zero properties, input ends: still fine (count is a hint).
        assert_eq!(
            dec_one(&[0x08, 0, 0, 0, 2]),
            Ok(Amf0Value::EcmaArray(vec![]))
        );
        // Inside a key, after a key, or after the empty key: truncated.
        let mut full = vec![0x08, 0, 0, 0, 1];
        full.extend(wire_key("ab"));
        full.extend(wire_num(1.0));
        for cut in 6..full.len() {
            assert_eq!(
                dec_one(&full[..cut]),
                Err(Amf0Error::Truncated),
                "cut {cut}"
            );
        }
        assert_eq!(
            dec_one(&[0x08, 0, 0, 0, 0, 0, 0]),
            Err(Amf0Error::Truncated)
        );
        // Objects do not get the leniency.
        let mut obj = vec![0x03];
        obj.extend(wire_key("ab"));
        obj.extend(wire_num(1.0));
        assert_eq!(dec_one(&obj), Err(Amf0Error::Truncated));
    }

    #[test]
    fn ecma_array_count_is_only_a_hint() {
        let mut b = vec![0x08, 0xFF, 0xFF, 0xFF, 0xFF];
        b.extend(wire_key("a"));
        b.extend(wire_num(1.0));
        b.extend([0, 0, 9]);
        assert_eq!(
            dec_one(&b),
            Ok(Amf0Value::EcmaArray(props(&[("a", num(1.0))])))
        );
    }

    #[test]
    fn decode_advances_input() {
        let mut bytes = enc(&s("first"));
        bytes.extend(enc(&num(2.0)));
        bytes.push(0x05);
        let mut rest = &bytes[..];
        assert_eq!(decode(&mut rest), Ok(s("first")));
        assert_eq!(rest.len(), 9 + 1);
        assert_eq!(decode(&mut rest), Ok(num(2.0)));
        assert_eq!(decode(&mut rest), Ok(Amf0Value::Null));
        assert!(rest.is_empty());
        assert_eq!(decode(&mut rest), Err(Amf0Error::Truncated));
    }

    #[test]
    fn empty_input() {
        assert_eq!(decode(&mut &[][..]), Err(Amf0Error::Truncated));
        assert_eq!(decode_all(&[]), Ok(vec![]));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut cases: Vec<Vec<u8>> = sample_values()
            .iter()
            // Skip the 70 kB strings: quadratic in length and covered by the short ones.
            .filter(|v| enc(v).len() < 1000)
            .map(enc)
            .collect();
        // The command object: skip "connect" (3 + 7 bytes) and the number (9 bytes).
        let object = ffmpeg_connect_bytes()[19..].to_vec();
        assert_eq!(object[0], 0x03);
        cases.push(object);
        cases.push(vec![0x11, 0x04, 0xFF, 0xFF, 0xFF, 0xFF]);
        cases.push(vec![0x11, 0x06, 0x07, b'a', b'b', b'c']);
        cases.push(vec![0x11, 0x08, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
        for bytes in &cases {
            let is_ecma = bytes[0] == 0x08;
            for cut in 0..bytes.len() {
                let mut prefix = &bytes[..cut];
                match decode(&mut prefix) {
                    Err(_) => {}
                    // A top-level ECMA array may legitimately end where the input
                    // does, but only at a property boundary: adding the missing
                    // end markers must then give the same value.
                    Ok(v) if is_ecma => {
                        assert!(prefix.is_empty());
                        let completes = (1..=MAX_DEPTH).any(|k| {
                            let mut fixed = bytes[..cut].to_vec();
                            fixed.extend([0, 0, 9].repeat(k));
                            let mut rest = &fixed[..];
                            decode(&mut rest).as_ref() == Ok(&v) && rest.is_empty()
                        });
                        assert!(completes, "prefix {cut} of {bytes:02x?} gave {v:?}");
                    }
                    Ok(v) => panic!("prefix {cut} of {bytes:02x?} decoded to {v:?}"),
                }
            }
        }
    }

    #[test]
    fn unknown_and_misplaced_markers() {
        assert_eq!(dec_one(&[0x12]), Err(Amf0Error::UnknownMarker(0x12)));
        assert_eq!(dec_one(&[0xFF]), Err(Amf0Error::UnknownMarker(0xFF)));
        assert_eq!(dec_one(&[0x09]), Err(Amf0Error::UnexpectedObjectEnd));
        // Object-end as a value after a non-empty key.
        let mut b = vec![0x03];
        b.extend(wire_key("a"));
        b.push(0x09);
        assert_eq!(dec_one(&b), Err(Amf0Error::UnexpectedObjectEnd));
        assert_eq!(
            decode_all(&[0x05, 0x05, 0x42]),
            Err(Amf0Error::UnknownMarker(0x42))
        );
        assert!(Amf0Error::UnknownMarker(0x12).to_string().contains("0x12"));
    }

    #[test]
    fn reserved_markers_are_errors() {
        assert_eq!(dec_one(&[0x04]), Err(Amf0Error::ReservedMarker(0x04)));
        assert_eq!(dec_one(&[0x0E]), Err(Amf0Error::ReservedMarker(0x0E)));
        let msg = Amf0Error::ReservedMarker(0x04).to_string();
        assert!(msg.contains("reserved") && msg.contains("0x04"), "{msg}");
    }

    fn nested(open: &[u8], levels: usize) -> Vec<u8> {
        open.iter()
            .copied()
            .cycle()
            .take(open.len() * levels)
            .collect()
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let too_deep = Err(Amf0Error::TooDeep(MAX_DEPTH));
        // Strict arrays of one element each.
        assert_eq!(dec_one(&nested(&[0x0A, 0, 0, 0, 1], 10_000)), too_deep);
        // Objects whose single property "a" holds the next object.
        assert_eq!(dec_one(&nested(&[0x03, 0, 1, b'a'], 10_000)), too_deep);
        assert_eq!(
            dec_one(&nested(&[0x08, 0, 0, 0, 1, 0, 1, b'a'], 10_000)),
            too_deep
        );
        assert_eq!(
            dec_one(&nested(&[0x10, 0, 1, b'C', 0, 1, b'a'], 10_000)),
            too_deep
        );
        // Raw 0x03 bytes: keys eat most of it, whatever happens it is an error.
        assert!(dec_one(&[0x03; 10_000]).is_err());
        assert!(decode_all(&[0x0A; 10_000]).is_err());
        // Exactly MAX_DEPTH levels are fine, one more is not.
        let mut ok = nested(&[0x0A, 0, 0, 0, 1], MAX_DEPTH - 1);
        ok.extend([0x0A, 0, 0, 0, 0]);
        assert!(dec_one(&ok).is_ok());
        let mut bad = nested(&[0x0A, 0, 0, 0, 1], MAX_DEPTH);
        bad.extend([0x0A, 0, 0, 0, 0]);
        assert_eq!(dec_one(&bad), too_deep);
        assert_eq!(
            Amf0Error::TooDeep(MAX_DEPTH).to_string(),
            "AMF nesting deeper than 32"
        );
    }

    #[test]
    fn lying_lengths_and_counts() {
        assert_eq!(
            dec_one(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(Amf0Error::Truncated)
        );
        assert_eq!(
            dec_one(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05, 0x05]),
            Err(Amf0Error::Truncated)
        );
        assert_eq!(
            dec_one(&[0x02, 0xFF, 0xFF, b'a', b'b', b'c']),
            Err(Amf0Error::Truncated)
        );
        assert_eq!(
            dec_one(&[0x0C, 0xFF, 0xFF, 0xFF, 0xFF, b'a']),
            Err(Amf0Error::Truncated)
        );
        assert_eq!(
            dec_one(&[0x0F, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(Amf0Error::Truncated)
        );
        assert_eq!(
            dec_one(&[0x10, 0xFF, 0xFF, b'C']),
            Err(Amf0Error::Truncated)
        );
        assert_eq!(
            dec_one(&[0x03, 0xFF, 0xFF, b'k']),
            Err(Amf0Error::Truncated)
        );
    }

    #[test]
    fn the_value_budget_counts_nested_values_before_building_them() {
        // 8 MiB of null markers was ~400 MiB of `Amf0Value`s: refused at the budget instead.
        let nulls = vec![0x05u8; 100_000];
        assert_eq!(
            decode_all(&nulls),
            Err(Amf0Error::TooManyValues(MAX_VALUES))
        );
        assert_eq!(
            decode_all_limited(&nulls[..10], 10).map(|v| v.len()),
            Ok(10)
        );
        assert_eq!(
            decode_all_limited(&nulls[..11], 10),
            Err(Amf0Error::TooManyValues(10))
        );
        // Nested values count too: an object holding 3 nulls is 4 values.
        let mut obj = vec![0x03];
        for key in ["a", "b", "c"] {
            obj.extend(wire_key(key));
            obj.push(0x05);
        }
        obj.extend([0x00, 0x00, 0x09]);
        assert!(decode_all_limited(&obj, 4).is_ok());
        assert_eq!(
            decode_all_limited(&obj, 3),
            Err(Amf0Error::TooManyValues(3))
        );
        // A strict array claiming 2^32 elements of nulls stops at the budget.
        let mut arr = vec![0x0A, 0xFF, 0xFF, 0xFF, 0xFF];
        arr.extend(vec![0x05u8; 5000]);
        let mut rest = &arr[..];
        assert_eq!(decode(&mut rest), Err(Amf0Error::TooManyValues(MAX_VALUES)));
    }

    #[test]
    fn invalid_utf8_is_lossy() {
        let mut b = vec![0x03, 0x00, 0x02, 0xC3, 0x28];
        b.extend([0x02, 0x00, 0x03, b'a', 0xFF, b'b']);
        b.extend([0, 0, 9]);
        assert_eq!(
            dec_one(&b),
            Ok(Amf0Value::Object(vec![(
                "\u{FFFD}(".to_owned(),
                s("a\u{FFFD}b")
            )]))
        );
    }

    #[test]
    fn amf3_values_map_to_amf0() {
        let cases: Vec<(Vec<u8>, Amf0Value)> = vec![
            (vec![0x00], Amf0Value::Undefined),
            (vec![0x01], Amf0Value::Null),
            (vec![0x02], Amf0Value::Boolean(false)),
            (vec![0x03], Amf0Value::Boolean(true)),
            (vec![0x04, 0x05], num(5.0)),
            (vec![0x04, 0x7F], num(127.0)),
            (vec![0x04, 0x81, 0x00], num(128.0)),
            (vec![0x04, 0xFF, 0x7F], num(16383.0)),
            (vec![0x04, 0x81, 0x80, 0x00], num(16384.0)),
            (vec![0x04, 0xBF, 0xFF, 0xFF, 0xFF], num(268_435_455.0)),
            (vec![0x04, 0xFF, 0xFF, 0xFF, 0xFF], num(-1.0)),
            (vec![0x04, 0xC0, 0x80, 0x80, 0x00], num(-268_435_456.0)),
            ([&[0x05][..], &2.5f64.to_be_bytes()].concat(), num(2.5)),
            (vec![0x06, 0x01], s("")),
            (vec![0x06, 0x07, b'a', b'b', b'c'], s("abc")),
            (
                vec![0x07, 0x09, b'<', b'a', b'/', b'>'],
                Amf0Value::XmlDocument("<a/>".to_owned()),
            ),
            (
                vec![0x0B, 0x05, b'<', b'b'],
                Amf0Value::XmlDocument("<b".to_owned()),
            ),
            (
                [&[0x08, 0x01][..], &1000f64.to_be_bytes()].concat(),
                Amf0Value::Date {
                    millis: 1000.0,
                    timezone: 0,
                },
            ),
        ];
        for (body, expected) in cases {
            let bytes = [&[0x11][..], &body].concat();
            assert_eq!(dec_one(&bytes), Ok(expected), "bytes {bytes:02x?}");
        }
        // Inside an AMF0 container, as some encoders send it.
        let mut obj = vec![0x03];
        obj.extend(wire_key("n"));
        obj.extend([0x11, 0x04, 0x2A, 0, 0, 9]);
        assert_eq!(dec_one(&obj), Ok(Amf0Value::object([("n", num(42.0))])));
    }

    #[test]
    fn amf3_errors() {
        for m in [0x09, 0x0A, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12, 0xFF] {
            assert_eq!(
                dec_one(&[0x11, m]),
                Err(Amf0Error::UnsupportedAmf3Marker(m))
            );
        }
        assert_eq!(dec_one(&[0x11]), Err(Amf0Error::Truncated));
        assert_eq!(
            dec_one(&[0x11, 0x06, 0x02]),
            Err(Amf0Error::Amf3Reference(1))
        );
        assert_eq!(
            dec_one(&[0x11, 0x08, 0x00]),
            Err(Amf0Error::Amf3Reference(0))
        );
        assert_eq!(
            dec_one(&[0x11, 0x06, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(Amf0Error::Truncated)
        );
        assert_eq!(
            Amf0Error::UnsupportedAmf3Marker(0x0a).to_string(),
            "unsupported AMF3 marker 0x0a"
        );
    }

    #[test]
    fn accessors_and_builders() {
        let v = Amf0Value::object([
            ("level", "status".into()),
            ("code", String::from("NetConnection.Connect.Success").into()),
            ("objectEncoding", 0.0.into()),
            ("ok", true.into()),
            ("ok", false.into()),
        ]);
        assert_eq!(v.get("level").and_then(Amf0Value::as_str), Some("status"));
        assert_eq!(
            v.get("objectEncoding").and_then(Amf0Value::as_number),
            Some(0.0)
        );
        assert_eq!(v.get("ok").and_then(Amf0Value::as_bool), Some(true));
        assert_eq!(v.get("level").and_then(Amf0Value::as_number), None);
        assert_eq!(v.as_str(), None);
        assert_eq!(num(1.0).as_bool(), None);
        assert_eq!(s("x").get("x"), None);
        let typed = Amf0Value::TypedObject {
            class_name: "C".into(),
            properties: props(&[("k", s("v"))]),
        };
        assert_eq!(typed.get("k"), Some(&s("v")));
        let ecma = Amf0Value::EcmaArray(props(&[("k", num(1.0))]));
        assert_eq!(ecma.get("k"), Some(&num(1.0)));
    }

    /// xorshift64: enough randomness to shake the decoder, no dependencies.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        /// Bytes biased towards markers and small lengths, which reach deeper.
        fn byte(&mut self) -> u8 {
            match self.below(4) {
                0 | 1 => self.below(0x13) as u8,
                _ => self.next() as u8,
            }
        }
    }

    fn mutate(rng: &mut XorShift, mut bytes: Vec<u8>) -> Vec<u8> {
        for _ in 0..1 + rng.below(4) {
            let len = bytes.len();
            match rng.below(6) {
                0 if len > 0 => {
                    let i = rng.below(len);
                    bytes[i] ^= 1 << rng.below(8);
                }
                1 if len > 0 => {
                    let i = rng.below(len);
                    bytes[i] = rng.byte();
                }
                2 => bytes.truncate(rng.below(len + 1)),
                3 => {
                    let i = rng.below(len + 1);
                    let b = rng.byte();
                    bytes.insert(i, b);
                }
                4 if len > 0 => {
                    bytes.remove(rng.below(len));
                }
                5 if len > 0 => {
                    let start = rng.below(len);
                    let end = start + rng.below(len - start + 1);
                    let chunk = bytes[start..end].to_vec();
                    let at = rng.below(len + 1);
                    bytes.splice(at..at, chunk);
                }
                _ => {}
            }
        }
        bytes
    }

    /// Anything that decodes re-encodes to bytes that decode to the same encoding.
    fn check_no_panic(bytes: &[u8]) {
        if let Ok(values) = decode_all(bytes) {
            let once = encode_all(&values);
            let again = encode_all(&decode_all(&once).expect("re-decode of our own encoding"));
            assert_eq!(once, again, "input {bytes:02x?}");
        }
        let mut rest = bytes;
        let _ = decode(&mut rest);
    }

    #[test]
    fn random_inputs_never_panic() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut corpus: Vec<Vec<u8>> = sample_values()
            .iter()
            .map(enc)
            .filter(|b| b.len() < 256)
            .collect();
        corpus.push(ffmpeg_connect_bytes());
        corpus.push(on_metadata_bytes(true));
        corpus.push(vec![0x11, 0x04, 0xFF, 0xFF, 0xFF, 0xFF]);
        corpus.push(nested(&[0x0A, 0, 0, 0, 1], 40));
        for i in 0..100_000 {
            let bytes = if i % 2 == 0 {
                let len = rng.below(64);
                (0..len).map(|_| rng.byte()).collect()
            } else {
                let base = corpus[rng.below(corpus.len())].clone();
                mutate(&mut rng, base)
            };
            check_no_panic(&bytes);
        }
    }
}
