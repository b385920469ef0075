//! The image size a compressed frame's own header declares, read before any decoder runs.
//!
//! A decoder sizes its output from the codestream, not from the DICOM header: a JPEG 2000
//! fragment declaring 60,000 × 60,000 samples would make it allocate gigabytes however small the
//! DICOM Rows and Columns (which the volume budgets bound). So each codestream's declared size
//! must equal the instance's Rows × Columns before decoding ([`super::volume`]).
//!
//! RLE frames carry no size of their own; the decoder trusts their header's segment count and
//! offsets, and indexes past a segment that unpacks short (a panic). [`check_rle`] reads the
//! header and the PackBits run lengths, without unpacking, so only a frame the decoder can
//! fill exactly reaches it.

/// `(width, height)` from the start of a JPEG (SOFn, including JPEG-LS SOF55) or JPEG 2000
/// (SIZ) codestream; `None` for anything else (a continuation fragment, RLE, an unknown
/// format), which is left to the decoder.
pub fn declared_size(fragment: &[u8]) -> Option<(u32, u32)> {
    match fragment {
        [0xFF, 0x4F, 0xFF, 0x51, ..] => jpeg2000(fragment),
        [0xFF, 0xD8, ..] => jpeg(fragment),
        _ => None,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?)))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// SIZ follows SOC: marker (2), Lsiz (2), Rsiz (2), Xsiz, Ysiz, XOsiz, YOsiz (4 each).
fn jpeg2000(b: &[u8]) -> Option<(u32, u32)> {
    let (x, y, x0, y0) = (be32(b, 8)?, be32(b, 12)?, be32(b, 16)?, be32(b, 20)?);
    Some((x.checked_sub(x0)?, y.checked_sub(y0)?))
}

/// Walks the marker segments after SOI to the first start-of-frame: length (2), precision (1),
/// height (2), width (2).
fn jpeg(b: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2;
    loop {
        if *b.get(at)? != 0xFF {
            return None;
        }
        let marker = *b.get(at + 1)?;
        match marker {
            0xFF => at += 1,
            0x01 | 0xD0..=0xD7 => at += 2,
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xF7 => return Some((be16(b, at + 7)?, be16(b, at + 5)?)),
            0xD9 | 0xDA => return None,
            _ => at += 2 + be16(b, at + 2)? as usize,
        }
    }
}

/// The RLE Lossless transfer syntax (PS3.5 annex G).
pub const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// The fixed RLE header: the segment count and fifteen offsets, each a little-endian u32.
const RLE_HEADER: usize = 64;

/// The shape an RLE frame must decode to: one segment per byte of each sample.
#[derive(Debug, Clone, Copy)]
pub struct RleFrame {
    pub rows: u32,
    pub columns: u32,
    pub bits_allocated: u16,
    pub samples_per_pixel: u16,
}

/// Checks one RLE frame (a fragment) against the image it must decode to: a whole header, one
/// segment per sample byte, offsets inside the frame and in order, and every segment unpacking
/// to at least Rows × Columns bytes and at most twice that (so a few bytes cannot unpack to
/// gigabytes). The reason names what is wrong.
pub fn check_rle(fragment: &[u8], frame: RleFrame) -> Result<(), String> {
    if !matches!(frame.bits_allocated, 8 | 16) {
        return Err(format!("RLE takes 8 or 16 bits allocated, not {}", frame.bits_allocated));
    }
    if fragment.len() < RLE_HEADER {
        return Err(format!("{} bytes, shorter than the {RLE_HEADER}-byte RLE header", fragment.len()));
    }
    let le32 = |at: usize| u32::from_le_bytes([fragment[at], fragment[at + 1], fragment[at + 2], fragment[at + 3]]) as usize;
    let segments = le32(0);
    let needed = usize::from(frame.samples_per_pixel) * usize::from(frame.bits_allocated / 8);
    if segments != needed {
        return Err(format!("the RLE header declares {segments} segments where the image needs {needed}"));
    }
    let mut bounds: Vec<usize> = (0..segments).map(|k| le32(4 + 4 * k)).collect();
    bounds.push(fragment.len());
    if bounds[0] != RLE_HEADER || bounds.windows(2).any(|w| w[0] > w[1]) {
        return Err(format!("RLE segment offsets {:?} do not lie inside the frame ({} bytes) in order", &bounds[..segments], fragment.len()));
    }
    let pixels = frame.rows as usize * frame.columns as usize;
    for (k, range) in bounds.windows(2).enumerate() {
        let unpacked = packbits_len(&fragment[range[0]..range[1]]);
        if unpacked < pixels || unpacked > 2 * pixels {
            return Err(format!("RLE segment {k} unpacks to {unpacked} bytes where the frame has {pixels} pixels"));
        }
    }
    Ok(())
}

/// The number of bytes a PackBits segment unpacks to, counted from its run headers.
fn packbits_len(segment: &[u8]) -> usize {
    let (mut at, mut out) = (0, 0usize);
    while let Some(&header) = segment.get(at) {
        match header as i8 {
            // A literal run of header + 1 bytes, as many as are there.
            n @ 0..=127 => {
                let run = (n as usize + 1).min(segment.len() - at - 1);
                out += run;
                at += 1 + run;
            }
            -128 => at += 1,
            // One byte repeated 1 - header times, if the byte is there.
            n => {
                if at + 1 < segment.len() {
                    out += (1 - n as isize) as usize;
                }
                at += 2;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jpeg2000_size_is_the_reference_grid_less_its_offset() {
        let mut siz = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        for v in [600u32, 500, 88, 0] {
            siz.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(declared_size(&siz), Some((512, 500)));
    }

    #[test]
    fn a_jpeg_size_comes_from_its_first_start_of_frame_after_other_segments() {
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB];
        j.extend_from_slice(&[0xFF, 0xC3, 0x00, 0x0B, 16, 0x01, 0x00, 0x02, 0x00, 1, 1]);
        assert_eq!(declared_size(&j), Some((512, 256)));
        let mut ls = vec![0xFF, 0xD8, 0xFF, 0xF7, 0x00, 0x0B, 16, 0x00, 0x40, 0x00, 0x80, 1];
        ls.extend_from_slice(&[1, 0x11, 0]);
        assert_eq!(declared_size(&ls), Some((128, 64)));
    }

    #[test]
    fn packbits_lengths_count_literals_repeats_and_no_ops_without_unpacking() {
        // A literal of 3, a repeat of 5, a no-op, a literal cut short by the end.
        assert_eq!(packbits_len(&[2, 1, 2, 3, 0xFC, 9, 0x80, 4, 1]), 3 + 5 + 1);
        assert_eq!(packbits_len(&[]), 0);
        assert_eq!(packbits_len(&[0x81]), 0);
    }

    #[test]
    fn an_rle_frame_is_refused_by_what_is_wrong_with_it() {
        let shape = RleFrame { rows: 2, columns: 2, bits_allocated: 16, samples_per_pixel: 1 };
        let mut frame = vec![0u8; RLE_HEADER];
        frame[0] = 2;
        frame[4] = 64;
        frame[8] = 66;
        frame.extend_from_slice(&[0xFD, 7, 0xFD, 8]);
        assert_eq!(check_rle(&frame, shape), Ok(()));
        assert!(check_rle(&frame, RleFrame { bits_allocated: 12, ..shape }).unwrap_err().contains("8 or 16"));
        assert!(check_rle(&frame, RleFrame { samples_per_pixel: 3, ..shape }).unwrap_err().contains("2 segments where the image needs 6"));
        assert!(check_rle(&frame, RleFrame { rows: 3, ..shape }).unwrap_err().contains("unpacks to 4 bytes"));
        assert!(check_rle(&frame, RleFrame { rows: 1, columns: 1, ..shape }).unwrap_err().contains("unpacks to 4 bytes"));
        assert!(check_rle(&frame[..RLE_HEADER - 1], shape).unwrap_err().contains("header"));
        let mut disordered = frame.clone();
        disordered[8] = 63;
        assert!(check_rle(&disordered, shape).unwrap_err().contains("in order"));
    }

    #[test]
    fn other_fragments_and_truncated_headers_declare_nothing() {
        assert_eq!(declared_size(&[0, 1, 2, 3]), None);
        assert_eq!(declared_size(&[0xFF, 0xD8, 0xFF]), None);
        assert_eq!(declared_size(&[0xFF, 0x4F, 0xFF, 0x51, 0, 41]), None);
    }
}
