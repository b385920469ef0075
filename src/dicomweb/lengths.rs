//! Declared lengths checked against the bytes there are, before a Part-10 file is parsed.
//!
//! dicom-object sizes each value's buffer from the length its element header declares and fills
//! it before reading: an 8 KiB part whose header claims a 4 GiB value makes the process touch
//! 4 GiB (the fuzzer found this; `tests/fixtures/fuzz/`). A part held in memory cannot hold a value
//! longer than the bytes left after its header, so every declared length, in the data set and in
//! nested sequence items, is checked against that first; a part that lies is refused with the
//! element it lies in, and the parser never sees it.
//!
//! Values the parser would read differently from this walk are refused too, since from there
//! the two disagree on where every later header stands: an undefined length on anything but a
//! sequence or encapsulated Pixel Data, and a binary value (US, UL, FD, OW…; in implicit VR, by
//! the dictionary's VR) that is not a whole number of values.
//!
//! The walk reads headers only (tag, VR, length) and never allocates. A deflated data set is
//! inflated first, counting against a budget and refused as soon as it passes it (a deflate
//! bomb), and the inflated bytes are walked the same way.

use dicom_core::dictionary::{DataDictionary, VirtualVr};
use dicom_dictionary_std::StandardDataDictionary;

/// Deepest sequence nesting walked; real objects stay in single digits.
const MAX_DEPTH: usize = 32;

const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQUENCE_END: (u16, u16) = (0xFFFE, 0xE0DD);
const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);
const UNDEFINED: u32 = 0xFFFF_FFFF;

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    ExplicitLittle,
    ImplicitLittle,
    ExplicitBig,
}

/// Refuses a Part-10 file in which any element or item declares more bytes than follow it, or
/// whose deflated data set inflates past `inflate_budget`. Returns the inflated size of a
/// deflated data set (0 otherwise). Headers are read as the parser reads them (an unknown VR as
/// UN); a buffer with no `DICM` passes, for the parser to say what is wrong with it.
pub fn check_declared_lengths(buf: &[u8], inflate_budget: u64) -> Result<u64, String> {
    let start = match (buf.get(128..132), buf.get(..4)) {
        (Some(b"DICM"), _) => 132,
        (_, Some(b"DICM")) => 4,
        _ => return Ok(0),
    };
    let mut walker = Walker { buf, encoding: Encoding::ExplicitLittle, transfer_syntax: None };
    let data_set = walker.meta_group(start)?;
    walker.encoding = match walker.transfer_syntax.as_deref() {
        Some("1.2.840.10008.1.2") => Encoding::ImplicitLittle,
        Some("1.2.840.10008.1.2.2") => Encoding::ExplicitBig,
        Some(DEFLATED_EXPLICIT_VR_LE) => {
            let inflated = inflate(&buf[data_set..], inflate_budget)?;
            let inflated_walker = Walker { buf: &inflated, encoding: Encoding::ExplicitLittle, transfer_syntax: None };
            inflated_walker.data_set(0, inflated.len())?;
            return Ok(inflated.len() as u64);
        }
        _ => Encoding::ExplicitLittle,
    };
    walker.data_set(data_set, buf.len()).map(|_| 0)
}

/// A VR for a message (empty when the element has none).
fn vr_text(vr: Option<[u8; 2]>) -> String {
    vr.map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or_default()
}

/// The VR the standard dictionary gives `tag`, when it gives exactly one.
fn dictionary_vr(tag: (u16, u16)) -> Option<[u8; 2]> {
    match StandardDataDictionary.by_tag(dicom_core::Tag(tag.0, tag.1))?.vr {
        VirtualVr::Exact(vr) => vr.to_string().as_bytes().try_into().ok(),
        _ => None,
    }
}

/// The size of one value of a binary VR (PS3.5 6.2); `None` for text, sequences, OB and UN.
fn value_size(vr: &[u8; 2]) -> Option<u32> {
    match vr {
        b"US" | b"SS" | b"OW" => Some(2),
        b"UL" | b"SL" | b"FL" | b"AT" | b"OL" | b"OF" => Some(4),
        b"FD" | b"SV" | b"UV" | b"OD" | b"OV" => Some(8),
        _ => None,
    }
}

/// Deflated Explicit VR Little Endian: the data set after the meta group is one deflate stream.
pub const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";

/// Inflates `stream`, refusing it as soon as it passes `budget` bytes.
fn inflate(stream: &[u8], budget: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut inflated = Vec::new();
    flate2::read::DeflateDecoder::new(stream)
        .take(budget.saturating_add(1))
        .read_to_end(&mut inflated)
        .map_err(|e| format!("deflated data set: {e}"))?;
    if inflated.len() as u64 > budget {
        return Err(format!("the deflated data set inflates to more than {budget} bytes (the series byte limit)"));
    }
    Ok(inflated)
}

struct Walker<'a> {
    buf: &'a [u8],
    encoding: Encoding,
    transfer_syntax: Option<String>,
}

/// What one element header says.
struct Header {
    tag: (u16, u16),
    vr: Option<[u8; 2]>,
    length: u32,
    /// Where the value starts.
    value_at: usize,
}

/// Where a walk of elements stopped.
enum Stop {
    /// At the end of the range.
    End,
    /// After an item or sequence delimiter, at this offset.
    Delimiter(usize),
}

impl Walker<'_> {
    fn u16_at(&self, at: usize) -> Option<u16> {
        let b: [u8; 2] = self.buf.get(at..at + 2)?.try_into().ok()?;
        Some(if self.encoding == Encoding::ExplicitBig { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.buf.get(at..at + 4)?.try_into().ok()?;
        Some(if self.encoding == Encoding::ExplicitBig { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }

    /// The header at `at`, or `None` where the bytes end (the parser reports truncation).
    fn header(&self, at: usize) -> Option<Header> {
        let tag = (self.u16_at(at)?, self.u16_at(at + 2)?);
        if tag.0 == 0xFFFE || self.encoding == Encoding::ImplicitLittle {
            return Some(Header { tag, vr: None, length: self.u32_at(at + 4)?, value_at: at + 8 });
        }
        // As the parser reads it (PS3.5 7.1.2): these VRs have a 16-bit length; every other
        // one, an unknown VR included (read as UN), has two reserved bytes and a 32-bit length.
        let vr: [u8; 2] = self.buf.get(at + 4..at + 6)?.try_into().ok()?;
        let short = matches!(
            &vr,
            b"AE" | b"AS" | b"AT" | b"CS" | b"DA" | b"DS" | b"DT" | b"FL" | b"FD" | b"IS" | b"LO" | b"LT" | b"PN" | b"SH" | b"SL" | b"SS" | b"ST" | b"TM" | b"UI" | b"UL" | b"US"
        );
        if short {
            Some(Header { tag, vr: Some(vr), length: u32::from(self.u16_at(at + 6)?), value_at: at + 8 })
        } else {
            Some(Header { tag, vr: Some(vr), length: self.u32_at(at + 8)?, value_at: at + 12 })
        }
    }

    /// The file meta group (always explicit VR little endian): its lengths, and the transfer
    /// syntax. Returns where the data set starts, found as the parser finds it: whole elements
    /// are read until their bytes reach the group length that (0002,0000) declares, which need
    /// not be where group 0002 really ends.
    fn meta_group(&mut self, at: usize) -> Result<usize, String> {
        let Some(first) = self.header(at) else { return Ok(at) };
        let mut next = self.value_end(&first)?;
        let group_length = match (first.tag, self.u32_at(first.value_at)) {
            ((0x0002, 0x0000), Some(length)) if first.length == 4 => u64::from(length),
            _ => return Ok(at),
        };
        let mut read: u64 = 0;
        while read < group_length {
            let Some(h) = self.header(next) else { return Ok(next) };
            let end = self.value_end(&h)?;
            if h.tag == (0x0002, 0x0010) {
                let uid = String::from_utf8_lossy(&self.buf[h.value_at..end]);
                self.transfer_syntax = Some(uid.trim_end_matches(['\0', ' ']).to_owned());
            }
            read += (end - next) as u64;
            next = end;
        }
        Ok(next)
    }

    /// The end of a defined-length value, refused if it lies beyond the bytes there are.
    fn value_end(&self, h: &Header) -> Result<usize, String> {
        let remaining = self.buf.len().saturating_sub(h.value_at);
        if h.length as usize > remaining {
            return Err(format!("element ({:04X},{:04X}) declares {} bytes where {remaining} remain", h.tag.0, h.tag.1, h.length));
        }
        Ok(h.value_at + h.length as usize)
    }

    /// Walks the top-level data set from `at` to `end`. A delimiter here closes no sequence: the
    /// walk would stop at it while the parser reads on, past what was checked (fuzz finding 10: a
    /// stray sequence delimiter, then a header claiming 3.7 GB that the parser sized 2 GB for).
    fn data_set(&self, at: usize, end: usize) -> Result<(), String> {
        match self.elements(at, end, 0)? {
            Stop::End => Ok(()),
            Stop::Delimiter(after) => Err(format!("a delimiter outside any sequence, {} bytes into the data set", after.saturating_sub(at + 8))),
        }
    }

    /// Walks elements from `at` to `end` (or to a delimiter).
    fn elements(&self, mut at: usize, end: usize, depth: usize) -> Result<Stop, String> {
        if depth > MAX_DEPTH {
            return Err(format!("sequences nested deeper than {MAX_DEPTH}"));
        }
        while at < end {
            let Some(h) = self.header(at) else { return Ok(Stop::End) };
            if h.tag == ITEM_END || h.tag == SEQUENCE_END {
                return Ok(Stop::Delimiter(h.value_at));
            }
            let is_sequence = h.vr == Some(*b"SQ") || (h.vr.is_none() && h.tag != PIXEL_DATA && self.starts_an_item(h.value_at));
            at = if h.length == UNDEFINED {
                // Only a sequence (SQ; UN or no VR holding an implicit-VR one) and encapsulated
                // Pixel Data may leave their length undefined. The parser reads any other value
                // with an undefined length as a 4 GiB one, sizing its buffer first (the memory
                // benchmark found an OW element of 6 KiB that made it touch 1 GiB).
                if h.tag != PIXEL_DATA && !matches!(h.vr.as_ref(), None | Some(b"SQ" | b"UN")) {
                    let vr = vr_text(h.vr);
                    return Err(format!("element ({:04X},{:04X}) {vr} declares an undefined length, which only sequences and encapsulated Pixel Data may", h.tag.0, h.tag.1));
                }
                let fragments = h.tag == PIXEL_DATA;
                match self.items(h.value_at, end, depth + 1, !fragments)? {
                    Some(after) => after,
                    None => return Ok(Stop::End),
                }
            } else {
                // A binary value must hold whole values: the parser reads a UL of 26 bytes as
                // six, then takes the two left over for the next header, and from there reads
                // lengths this walk never saw (the memory benchmark found one touching 738 MiB).
                // In implicit VR the parser takes the VR from the dictionary; so does this check.
                let vr = h.vr.or_else(|| if self.encoding == Encoding::ImplicitLittle { dictionary_vr(h.tag) } else { None });
                if let Some(unit) = vr.as_ref().and_then(value_size) {
                    if h.length % unit != 0 {
                        let vr = vr_text(vr);
                        return Err(format!("element ({:04X},{:04X}) {vr} declares {} bytes, not a whole number of {unit}-byte values", h.tag.0, h.tag.1, h.length));
                    }
                }
                let value_end = self.value_end(&h)?.min(end);
                if is_sequence {
                    self.items(h.value_at, value_end, depth + 1, true)?;
                }
                value_end
            };
        }
        Ok(Stop::End)
    }

    fn starts_an_item(&self, at: usize) -> bool {
        matches!((self.u16_at(at), self.u16_at(at + 2)), (Some(0xFFFE), Some(0xE000)))
    }

    /// Walks the items of a sequence (or the fragments of encapsulated pixel data, which are not
    /// entered) from `at`; returns the offset after its delimiter, `None` if the bytes ran out.
    fn items(&self, mut at: usize, end: usize, depth: usize, enter: bool) -> Result<Option<usize>, String> {
        while at < end {
            let Some(h) = self.header(at) else { return Ok(None) };
            match h.tag {
                SEQUENCE_END => return Ok(Some(h.value_at)),
                ITEM if h.length == UNDEFINED => match self.elements(h.value_at, end, depth)? {
                    Stop::Delimiter(after) => at = after,
                    Stop::End => return Ok(None),
                },
                ITEM => {
                    let item_end = self.value_end(&h)?;
                    // An item of defined length ends at its length; a delimiter before that
                    // would end it early for the parser and not for this walk.
                    if enter && let Stop::Delimiter(after) = self.elements(h.value_at, item_end, depth)?
                        && after < item_end
                    {
                        return Err(format!("a delimiter {} bytes inside an item of {} bytes", after - 8 - h.value_at, h.length));
                    }
                    at = item_end;
                }
                // Only items and the delimiter may follow: anything else is not DICOM, and the
                // parser, reading it as a value, would size a buffer from its length (an
                // undefined length read as 4 GiB; the fuzzer found this).
                other => {
                    return Err(format!("({:04X},{:04X}) stands where a sequence item or delimiter must", other.0, other.1));
                }
            }
        }
        Ok(Some(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Preamble, `DICM`, a meta group naming `ts`, then `data_set`.
    fn part10(ts: &str, data_set: &[u8]) -> Vec<u8> {
        let mut uid = ts.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        let mut f = vec![0u8; 128];
        f.extend_from_slice(b"DICM");
        f.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        f.extend_from_slice(&(8 + uid.len() as u32).to_le_bytes());
        f.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        f.extend_from_slice(&(uid.len() as u16).to_le_bytes());
        f.extend_from_slice(&uid);
        f.extend_from_slice(data_set);
        f
    }

    fn explicit(group: u16, element: u16, vr: &[u8; 2], value: &[u8], claimed: Option<u32>) -> Vec<u8> {
        let mut e = [group.to_le_bytes(), element.to_le_bytes()].concat();
        e.extend_from_slice(vr);
        let length = claimed.unwrap_or(value.len() as u32);
        if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
            e.extend_from_slice(&[0, 0]);
            e.extend_from_slice(&length.to_le_bytes());
        } else {
            e.extend_from_slice(&(length as u16).to_le_bytes());
        }
        e.extend_from_slice(value);
        e
    }

    fn item(content: &[u8]) -> Vec<u8> {
        let mut i = [0xFFFEu16.to_le_bytes(), 0xE000u16.to_le_bytes()].concat();
        i.extend_from_slice(&(content.len() as u32).to_le_bytes());
        i.extend_from_slice(content);
        i
    }

    const LE: &str = "1.2.840.10008.1.2.1";

    #[test]
    fn honest_elements_sequences_and_fragments_pass() {
        let nested = explicit(0x0008, 0x0100, b"SH", b"T1", None);
        let mut sq = explicit(0x0040, 0x0260, b"SQ", &[], Some(UNDEFINED));
        sq.extend(item(&nested));
        sq.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let mut pixels = explicit(0x7FE0, 0x0010, b"OB", &[], Some(UNDEFINED));
        pixels.extend(item(&[]));
        pixels.extend(item(&[0xFF, 0xFE, 0xE0, 0x00, 0xFF, 0xFF, 0xFF, 0x7F]));
        pixels.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let file = part10(LE, &[explicit(0x0010, 0x0020, b"LO", b"p1", None), sq, pixels].concat());
        assert_eq!(check_declared_lengths(&file, 1 << 20), Ok(0));
    }

    #[test]
    fn an_element_claiming_more_than_the_file_holds_is_named() {
        let file = part10(LE, &explicit(0x0028, 0x1201, b"OW", &[1, 2, 3, 4], Some(0xFFFF_FFF0)));
        let e = check_declared_lengths(&file, 1 << 20).unwrap_err();
        assert!(e.starts_with("element (0028,1201) declares 4294967280 bytes where 4 remain"), "{e}");
    }

    #[test]
    fn an_element_nested_in_a_sequence_item_is_checked_too() {
        let lying = explicit(0x0018, 0x9117, b"UN", &[0; 4], Some(1 << 30));
        let mut sq = explicit(0x5200, 0x9230, b"SQ", &[], Some(UNDEFINED));
        sq.extend(item(&lying));
        sq.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let e = check_declared_lengths(&part10(LE, &sq), 1 << 20).unwrap_err();
        assert!(e.contains("(0018,9117) declares 1073741824"), "{e}");
    }

    #[test]
    fn an_item_longer_than_what_is_left_is_refused() {
        let mut sq = explicit(0x0040, 0x0260, b"SQ", &[], Some(UNDEFINED));
        sq.extend([0xFE, 0xFF, 0x00, 0xE0]);
        sq.extend(0x7FFF_FFFFu32.to_le_bytes());
        assert!(check_declared_lengths(&part10(LE, &sq), 1 << 20).unwrap_err().contains("(FFFE,E000)"));
    }

    #[test]
    fn implicit_vr_lengths_are_checked() {
        let mut e = [0x0010u16.to_le_bytes(), 0x0010u16.to_le_bytes()].concat();
        e.extend_from_slice(&0x1000_0000u32.to_le_bytes());
        e.extend_from_slice(b"Doe^J");
        assert!(check_declared_lengths(&part10("1.2.840.10008.1.2", &e), 1 << 20).is_err());
    }

    #[test]
    fn sequences_nested_without_end_are_refused_not_recursed_forever() {
        let mut open = Vec::new();
        for _ in 0..100 {
            open.extend(explicit(0x0040, 0x0260, b"SQ", &[], Some(UNDEFINED)));
            open.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        assert!(check_declared_lengths(&part10(LE, &open), 1 << 20).unwrap_err().contains("nested deeper"));
    }

    #[test]
    fn an_unknown_vr_is_read_as_un_with_a_32_bit_length() {
        let mut e = [0x1FCCu16.to_le_bytes(), 0xFAA6u16.to_le_bytes()].concat();
        e.extend_from_slice(b"]M");
        e.extend_from_slice(&[0, 0]);
        e.extend_from_slice(&0x8000_0000u32.to_le_bytes());
        assert!(check_declared_lengths(&part10(LE, &e), 1 << 20).unwrap_err().contains("(1FCC,FAA6) declares 2147483648"));
    }

    /// Fuzzer finding (multipart, 2026-12-06, second campaign): a deflated data set whose
    /// inflated elements claim gigabytes; the walk now covers the inflated bytes too.
    #[test]
    fn lengths_inside_a_deflated_data_set_are_checked_after_inflating() {
        use std::io::Write;
        let lying = explicit(0x0028, 0x1201, b"OW", &[0; 4], Some(0x4000_0000));
        let mut deflater = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        deflater.write_all(&lying).unwrap();
        let file = part10(DEFLATED_EXPLICIT_VR_LE, &deflater.finish().unwrap());
        assert!(check_declared_lengths(&file, 1 << 20).unwrap_err().contains("(0028,1201) declares 1073741824"));
        let honest = explicit(0x0010, 0x0020, b"LO", b"p1", None);
        let mut deflater = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        deflater.write_all(&honest).unwrap();
        assert_eq!(check_declared_lengths(&part10(DEFLATED_EXPLICIT_VR_LE, &deflater.finish().unwrap()), 1 << 20), Ok(honest.len() as u64));
    }

    /// The parser ends the meta group where (0002,0000) says, not where group 0002 ends: a
    /// group length one byte too long makes it read the first data set element as explicit VR,
    /// where an implicit-VR value's first bytes become a 32-bit length of a gigabyte. The walk
    /// follows the parser, so it sees the same header.
    #[test]
    fn the_meta_group_ends_where_its_declared_length_ends_it() {
        let mut element = [0x0008u16.to_le_bytes(), 0x0008u16.to_le_bytes()].concat();
        element.extend_from_slice(&24u32.to_le_bytes());
        element.extend_from_slice(b"ORIGINAL\\PRIMARY\\M\\ND   ");
        let mut file = part10("1.2.840.10008.1.2", &element);
        assert_eq!(check_declared_lengths(&file, 1 << 20), Ok(0), "honest group length");
        let declared = u32::from_le_bytes(file[140..144].try_into().unwrap());
        file[140..144].copy_from_slice(&(declared + 1).to_le_bytes());
        let e = check_declared_lengths(&file, 1 << 20).unwrap_err();
        assert!(e.contains("(0008,0008) declares"), "{e}");
    }

    /// Fuzzer finding (part10_volume, 2026-12-06): after an undefined-length element, an
    /// element header where an item must stand. The parser read its undefined length as a value
    /// length and sized 4 GiB; the walk used to stop there, thinking the bytes had run out.
    #[test]
    fn what_is_neither_an_item_nor_a_delimiter_inside_a_sequence_is_refused() {
        let mut e = [0x0000u16.to_le_bytes(), 0xFFFFu16.to_le_bytes()].concat();
        e.extend_from_slice(&UNDEFINED.to_le_bytes());
        e.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        e.extend_from_slice(&UNDEFINED.to_le_bytes());
        e.extend_from_slice(&[0; 16]);
        let err = check_declared_lengths(&part10("1.2.840.10008.1.2", &e), 1 << 20).unwrap_err();
        assert!(err.contains("(FFFF,FFFF) stands where a sequence item or delimiter must"), "{err}");

        let mut explicit_sq = explicit(0x0040, 0x0260, b"SQ", &[], Some(UNDEFINED));
        explicit_sq.extend(explicit(0x0010, 0x0010, b"PN", b"Doe^J ", None));
        let err = check_declared_lengths(&part10(LE, &explicit_sq), 1 << 20).unwrap_err();
        assert!(err.contains("(0010,0010) stands where"), "{err}");
    }

    /// A delimiter with no sequence to close ended the walk while the parser read on (fuzz
    /// finding 10): nothing after it was checked.
    #[test]
    fn a_delimiter_outside_any_sequence_is_refused_not_taken_for_the_end() {
        let mut stray = explicit(0x0010, 0x0010, b"PN", b"Doe^J ", None);
        stray.extend([0xFFFEu16.to_le_bytes(), 0xE0DDu16.to_le_bytes()].concat());
        stray.extend_from_slice(&0u32.to_le_bytes());
        stray.extend(explicit(0x0011, 0x0010, b"UN", &[0; 4], Some(1 << 30)));
        let err = check_declared_lengths(&part10(LE, &stray), 1 << 20).unwrap_err();
        assert!(err.contains("a delimiter outside any sequence"), "{err}");
    }

    /// An item of defined length ends at its length, not at a delimiter inside it.
    #[test]
    fn a_delimiter_inside_an_item_of_defined_length_is_refused() {
        let mut content = explicit(0x0010, 0x0010, b"PN", b"Doe^J ", None);
        content.extend([0xFFFEu16.to_le_bytes(), 0xE00Du16.to_le_bytes()].concat());
        content.extend_from_slice(&0u32.to_le_bytes());
        content.extend(explicit(0x0011, 0x0010, b"UN", &[0; 4], None));
        let mut sq = explicit(0x0040, 0x0260, b"SQ", &[], Some(UNDEFINED));
        sq.extend(item(&content));
        sq.extend([0xFFFEu16.to_le_bytes(), 0xE0DDu16.to_le_bytes()].concat());
        sq.extend_from_slice(&0u32.to_le_bytes());
        let err = check_declared_lengths(&part10(LE, &sq), 1 << 20).unwrap_err();
        assert!(err.contains("a delimiter 14 bytes inside an item of"), "{err}");
    }

    #[test]
    fn what_is_not_a_part10_file_is_left_to_the_parser() {
        assert_eq!(check_declared_lengths(b"not dicom", 0), Ok(0));
        assert_eq!(check_declared_lengths(&[], 0), Ok(0));
    }

    /// Found by `benches/multipart_memory.rs` (FUZZING.md finding 7): Pixel Data's tag spoilt
    /// into (7FE0,6D10) kept its OW VR and undefined length; the parser read that as a 4 GiB value.
    #[test]
    fn an_undefined_length_outside_sequences_and_pixel_data_is_refused() {
        let mut spoilt = explicit(0x7FE0, 0x6D10, b"OW", &[], Some(UNDEFINED));
        spoilt.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let e = check_declared_lengths(&part10("1.2.840.10008.1.2.4.90", &spoilt), 0).unwrap_err();
        assert_eq!(e, "element (7FE0,6D10) OW declares an undefined length, which only sequences and encapsulated Pixel Data may");
        // The same bytes under Pixel Data's own tag are encapsulated fragments, and pass.
        let mut pixels = explicit(0x7FE0, 0x0010, b"OB", &[], Some(UNDEFINED));
        pixels.extend_from_slice(&spoilt[12..]);
        assert_eq!(check_declared_lengths(&part10("1.2.840.10008.1.2.4.90", &pixels), 0), Ok(0));
        // A UN with an undefined length is an implicit-VR sequence (PS3.5 6.2.2), and passes.
        let mut un = explicit(0x0009, 0x1010, b"UN", &[], Some(UNDEFINED));
        un.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert_eq!(check_declared_lengths(&part10("1.2.840.10008.1.2.1", &un), 0), Ok(0));
    }

    /// FUZZING.md finding 8: SOP Class UID's VR spoilt from UI to UL, 26 bytes long.
    #[test]
    fn a_binary_value_that_is_not_a_whole_number_of_values_is_refused() {
        let spoilt = explicit(0x0008, 0x0016, b"UL", b"1.2.840.10008.5.1.4.1.1.4\0", None);
        let e = check_declared_lengths(&part10("1.2.840.10008.1.2.1", &spoilt), 0).unwrap_err();
        assert_eq!(e, "element (0008,0016) UL declares 26 bytes, not a whole number of 4-byte values");
        let whole = explicit(0x0028, 0x0010, b"US", &[0, 1], None);
        assert_eq!(check_declared_lengths(&part10("1.2.840.10008.1.2.1", &whole), 0), Ok(0));
    }

    #[test]
    fn in_implicit_vr_the_dictionary_says_what_a_whole_value_is() {
        // (0028,0010) Rows is US: three bytes are not a whole number of values.
        let mut rows = vec![0x28, 0x00, 0x10, 0x00];
        rows.extend_from_slice(&3u32.to_le_bytes());
        rows.extend_from_slice(&[1, 0, 0]);
        let e = check_declared_lengths(&part10("1.2.840.10008.1.2", &rows), 0).unwrap_err();
        assert_eq!(e, "element (0028,0010) US declares 3 bytes, not a whole number of 2-byte values");
    }
}
