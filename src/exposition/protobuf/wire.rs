//! The protobuf wire format (protobuf.dev, "Encoding"), as far as the
//! `io.prometheus.client` messages need it: varints, tags, length-delimited
//! fields, and skipping a field of any wire type. Decoding never panics and
//! reports the absolute position in the body where the bytes went wrong;
//! encoding appends to a caller's buffer. The error type of a body, its
//! wire faults and the client_model rules the reader checks, is here so
//! that the reader depends on this module and not the other way round.

use std::fmt;

/// Why a protobuf body was rejected, and at which byte of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtoError {
    pub offset: u64,
    pub kind: ProtoErrorKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoErrorKind {
    TooLarge,
    Truncated,
    Varint,
    WireType,
    FieldNumber,
    Nesting,
    MetricName,
    LabelName,
    DuplicateLabel,
    ReservedLabel,
    InvalidUtf8,
    MetricType,
    Schema,
    SpanOffset,
    BucketCount,
    TooManyMetrics,
    FamilyType,
    ReservedLabelName,
    NegativeTimestamp,
}

impl ProtoErrorKind {
    pub fn message(self) -> &'static str {
        match self {
            ProtoErrorKind::TooLarge => "expected a body smaller than 4 GiB",
            ProtoErrorKind::Truncated => "expected a length or value that ends inside its message",
            ProtoErrorKind::Varint => "expected a varint of at most 10 bytes",
            ProtoErrorKind::WireType => "expected the wire type the field is declared with",
            ProtoErrorKind::FieldNumber => "expected a field number from 1 to 2^29-1",
            ProtoErrorKind::Nesting => "expected groups nested at most 16 deep",
            ProtoErrorKind::MetricName => "expected a metric name [a-zA-Z_:][a-zA-Z0-9_:]*",
            ProtoErrorKind::LabelName => "expected a label name [a-zA-Z_][a-zA-Z0-9_]*",
            ProtoErrorKind::DuplicateLabel => "expected each label name at most once per metric",
            ProtoErrorKind::ReservedLabel => {
                "expected no le label on a histogram's metric nor quantile on a summary's"
            }
            ProtoErrorKind::InvalidUtf8 => "expected a UTF-8 string",
            ProtoErrorKind::MetricType => {
                "expected a metric type from 0 (counter) to 5 (gauge histogram)"
            }
            ProtoErrorKind::Schema => "expected a native histogram schema from -4 to 8",
            ProtoErrorKind::SpanOffset => {
                "expected a non-negative offset for every span after the first"
            }
            ProtoErrorKind::BucketCount => {
                "expected as many bucket deltas or counts as the spans announce, not both"
            }
            ProtoErrorKind::TooManyMetrics => "expected fewer metrics for the body's size",
            ProtoErrorKind::FamilyType => "expected a family name that comes back to keep its type",
            ProtoErrorKind::ReservedLabelName => {
                "expected a label name that does not start with __"
            }
            ProtoErrorKind::NegativeTimestamp => "expected a timestamp of 0 or more milliseconds",
        }
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {}: {}", self.offset, self.kind.message())
    }
}

impl std::error::Error for ProtoError {}

/// The wire types of the encoding spec (3 and 4 are the deprecated groups),
/// numbered as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::exposition) enum WireType {
    Varint = 0,
    Fixed64 = 1,
    Len = 2,
    GroupStart = 3,
    GroupEnd = 4,
    Fixed32 = 5,
}

/// A field's key as it is on the wire (number << 3 | wire type). Readers
/// match a decoded key against these constants, so that a known field with
/// its declared wire type costs one comparison, and hand any other key to
/// [`Fields::other`].
pub(in crate::exposition) const fn key(number: u32, wire: WireType) -> u64 {
    (number as u64) << 3 | wire as u64
}

/// Groups nested deeper than this in an unknown field are refused: skipping
/// one needs a depth counter, and no producer of these messages sends any.
pub(in crate::exposition) const MAX_GROUP_DEPTH: u32 = 16;

/// A varint is at most 10 bytes (64 bits, 7 per byte).
const MAX_VARINT_BYTES: usize = 10;

/// A field tag: number and wire type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::exposition) struct Tag {
    pub(in crate::exposition) number: u32,
    pub(in crate::exposition) wire: WireType,
}

impl Tag {
    /// Decodes a key read at `at`.
    #[inline]
    fn from_key(key: u64, at: usize) -> Result<Tag, ProtoError> {
        let wire = match key & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            3 => WireType::GroupStart,
            4 => WireType::GroupEnd,
            5 => WireType::Fixed32,
            _ => return fail(ProtoErrorKind::WireType, at),
        };
        let number = key >> 3;
        // Field numbers are 1 to 2^29 - 1.
        if number == 0 || number >= 1 << 29 {
            return fail(ProtoErrorKind::FieldNumber, at);
        }
        Ok(Tag {
            number: number as u32,
            wire,
        })
    }
}

/// Reads one message's fields: `at..end` of the body, positions absolute.
pub(in crate::exposition) struct Fields<'a> {
    /// The body up to the message's end: what is past it cannot be read.
    message: &'a [u8],
    pub(in crate::exposition) at: usize,
}

pub(in crate::exposition) fn fail<T>(kind: ProtoErrorKind, at: usize) -> Result<T, ProtoError> {
    Err(ProtoError {
        offset: at as u64,
        kind,
    })
}

impl<'a> Fields<'a> {
    pub(in crate::exposition) fn new(body: &'a [u8], start: usize, end: usize) -> Fields<'a> {
        Fields {
            message: &body[..end.min(body.len())],
            at: start,
        }
    }

    pub(in crate::exposition) fn is_done(&self) -> bool {
        self.at >= self.message.len()
    }

    /// The next varint, which must end inside the message. One and two bytes
    /// (tags, lengths, small counts: nearly every varint of a body) are
    /// decoded inline; longer ones by `varint_slow`.
    #[inline(always)]
    pub(in crate::exposition) fn varint(&mut self) -> Result<u64, ProtoError> {
        let at = self.at;
        if let Some(&first) = self.message.get(at) {
            if first < 0x80 {
                self.at = at + 1;
                return Ok(u64::from(first));
            }
            if let Some(&second) = self.message.get(at + 1) {
                if second < 0x80 {
                    self.at = at + 2;
                    return Ok(u64::from(first & 0x7f) | u64::from(second) << 7);
                }
            }
        }
        self.varint_slow()
    }

    #[cold]
    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, ProtoError> {
        let start = self.at;
        let mut value = 0u64;
        for i in 0..MAX_VARINT_BYTES {
            let Some(&byte) = self.message.get(self.at) else {
                return fail(ProtoErrorKind::Truncated, start);
            };
            self.at += 1;
            // The tenth byte may carry only the 64th bit.
            if i == MAX_VARINT_BYTES - 1 && byte > 1 {
                return fail(ProtoErrorKind::Varint, start);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        fail(ProtoErrorKind::Varint, start)
    }

    #[inline]
    pub(in crate::exposition) fn tag(&mut self) -> Result<Tag, ProtoError> {
        let at = self.at;
        let key = self.varint()?;
        Tag::from_key(key, at)
    }

    /// A field whose key (read at `at`) matched none the caller knows with
    /// its declared wire type: a bad key, or one of fields 1 to `known`
    /// with another wire type, is refused; any other field is skipped.
    #[inline(never)]
    pub(in crate::exposition) fn other(
        &mut self,
        key: u64,
        at: usize,
        known: u32,
    ) -> Result<(), ProtoError> {
        let tag = Tag::from_key(key, at)?;
        if tag.number <= known {
            return fail(ProtoErrorKind::WireType, at);
        }
        self.skip(tag)
    }

    /// A length-delimited field's content: returns its range and moves past it.
    #[inline]
    pub(in crate::exposition) fn len_delimited(&mut self) -> Result<(usize, usize), ProtoError> {
        let at = self.at;
        let len = self.varint()?;
        let start = self.at;
        if len > (self.message.len() - start) as u64 {
            return fail(ProtoErrorKind::Truncated, at);
        }
        self.at = start + len as usize;
        Ok((start, self.at))
    }

    #[inline]
    pub(in crate::exposition) fn fixed64(&mut self) -> Result<u64, ProtoError> {
        let start = self.at;
        match self.message.get(start..start + 8) {
            Some(bytes) => {
                self.at += 8;
                let mut word = [0u8; 8];
                word.copy_from_slice(bytes);
                Ok(u64::from_le_bytes(word))
            }
            _ => fail(ProtoErrorKind::Truncated, start),
        }
    }

    pub(in crate::exposition) fn double(&mut self) -> Result<f64, ProtoError> {
        self.fixed64().map(f64::from_bits)
    }

    /// Skips the value of a field of unknown number. A group is skipped to
    /// its matching end, at most `MAX_GROUP_DEPTH` deep.
    pub(in crate::exposition) fn skip(&mut self, tag: Tag) -> Result<(), ProtoError> {
        let mut depth = 0u32;
        let mut tag = tag;
        loop {
            let at = self.at;
            match tag.wire {
                WireType::Varint => {
                    self.varint()?;
                }
                WireType::Fixed64 => {
                    self.fixed64()?;
                }
                WireType::Fixed32 => {
                    if self.message.len() - self.at < 4 {
                        return fail(ProtoErrorKind::Truncated, at);
                    }
                    self.at += 4;
                }
                WireType::Len => {
                    self.len_delimited()?;
                }
                WireType::GroupStart => {
                    depth += 1;
                    if depth > MAX_GROUP_DEPTH {
                        return fail(ProtoErrorKind::Nesting, at);
                    }
                }
                WireType::GroupEnd => {
                    if depth == 0 {
                        return fail(ProtoErrorKind::WireType, at);
                    }
                    depth -= 1;
                }
            }
            if depth == 0 {
                return Ok(());
            }
            if self.is_done() {
                return fail(ProtoErrorKind::Truncated, self.at);
            }
            tag = self.tag()?;
        }
    }
}

/// Decodes a zigzag-encoded sint64.
pub(in crate::exposition) fn zigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

#[cfg(test)]
pub(in crate::exposition) fn zigzag_encode(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// The bytes a varint of `value` takes.
#[inline]
pub(in crate::exposition) fn varint_len(value: u64) -> usize {
    // Seven bits a byte: ceil(bits / 7), with bits at least 1.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[inline]
pub(in crate::exposition) fn put_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[inline]
pub(in crate::exposition) fn put_tag(number: u32, wire: WireType, out: &mut Vec<u8>) {
    put_varint(key(number, wire), out);
}

/// Tag, length and content of a length-delimited field.
pub(in crate::exposition) fn put_bytes(number: u32, bytes: &[u8], out: &mut Vec<u8>) {
    put_tag(number, WireType::Len, out);
    put_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

pub(in crate::exposition) fn put_double(number: u32, value: f64, out: &mut Vec<u8>) {
    put_tag(number, WireType::Fixed64, out);
    out.extend_from_slice(&value.to_bits().to_le_bytes());
}

pub(in crate::exposition) fn put_uint(number: u32, value: u64, out: &mut Vec<u8>) {
    put_tag(number, WireType::Varint, out);
    put_varint(value, out);
}

/// Bytes of a length-delimited field with a one-byte tag (numbers below 16).
pub(in crate::exposition) fn len_field_size(content: usize) -> usize {
    1 + varint_len(content as u64) + content
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_width() {
        let values = [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            1 << 56,
            u64::MAX,
        ];
        for value in values {
            let mut out = Vec::new();
            put_varint(value, &mut out);
            assert_eq!(out.len(), varint_len(value), "{value}");
            let mut fields = Fields::new(&out, 0, out.len());
            assert_eq!(fields.varint(), Ok(value));
            assert!(fields.is_done());
        }
    }

    #[test]
    fn bad_varints_give_their_position() {
        // (bytes, start, expected error kind at offset)
        let table: &[(&[u8], usize, ProtoErrorKind, u64)] = &[
            (&[0x80], 0, ProtoErrorKind::Truncated, 0),
            (&[0x00, 0xff, 0xff], 1, ProtoErrorKind::Truncated, 1),
            (&[0xff; 11], 0, ProtoErrorKind::Varint, 0),
            // Ten bytes whose last carries more than bit 63.
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                0,
                ProtoErrorKind::Varint,
                0,
            ),
        ];
        for &(bytes, start, kind, offset) in table {
            let mut fields = Fields::new(bytes, start, bytes.len());
            assert_eq!(
                fields.varint(),
                Err(ProtoError { offset, kind }),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn zigzag_matches_the_spec_table() {
        for (value, encoded) in [
            (0i64, 0u64),
            (-1, 1),
            (1, 2),
            (-2, 3),
            (i64::MAX, u64::MAX - 1),
            (i64::MIN, u64::MAX),
        ] {
            assert_eq!(zigzag_encode(value), encoded);
            assert_eq!(zigzag(encoded), value);
        }
    }

    #[test]
    fn unknown_fields_are_skipped_by_wire_type() {
        // varint 150, fixed64, fixed32, len "ab", group{varint 1}, then field 1 = 7.
        let body = [
            0x08 | (9 << 3),
            0x96,
            0x01,
            0x01 | (9 << 3),
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8,
            0x05 | (9 << 3),
            1,
            2,
            3,
            4,
            0x02 | (9 << 3),
            2,
            b'a',
            b'b',
            0x03 | (9 << 3),
            0x08,
            0x01,
            0x04 | (9 << 3),
            0x08,
            7,
        ];
        let mut fields = Fields::new(&body, 0, body.len());
        for _ in 0..5 {
            let tag = fields.tag().unwrap();
            assert_eq!(tag.number, 9);
            fields.skip(tag).unwrap();
        }
        assert_eq!(
            fields.tag().unwrap(),
            Tag {
                number: 1,
                wire: WireType::Varint
            }
        );
        assert_eq!(fields.varint(), Ok(7));
        assert!(fields.is_done());
    }

    #[test]
    fn nested_groups_are_bounded() {
        let mut body = vec![0x03 | (9 << 3); MAX_GROUP_DEPTH as usize + 1];
        body.extend(vec![0x04 | (9 << 3); MAX_GROUP_DEPTH as usize + 1]);
        let mut fields = Fields::new(&body, 0, body.len());
        let tag = fields.tag().unwrap();
        assert_eq!(
            fields.skip(tag).map_err(|e| e.kind),
            Err(ProtoErrorKind::Nesting)
        );
    }
}
