//! The image size a compressed frame's own header declares, read before any decoder runs.
//!
//! A decoder sizes its output from the codestream, not from the DICOM header: a JPEG 2000
//! fragment declaring 60,000 × 60,000 samples would make it allocate gigabytes however small the
//! DICOM Rows and Columns (which the volume budgets bound). So each codestream's declared size
//! must equal the instance's Rows × Columns before decoding ([`super::volume`]).

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
    fn other_fragments_and_truncated_headers_declare_nothing() {
        assert_eq!(declared_size(&[0, 1, 2, 3]), None);
        assert_eq!(declared_size(&[0xFF, 0xD8, 0xFF]), None);
        assert_eq!(declared_size(&[0xFF, 0x4F, 0xFF, 0x51, 0, 41]), None);
    }
}
