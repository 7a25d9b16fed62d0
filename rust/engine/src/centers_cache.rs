//! Key centers kept on disk between loads of the same model file.
//!
//! Calibrating the centers (see [`crate::centering`]) runs a short text
//! through the model, which costs about as much as a prompt of that length:
//! about 190 ms for Gemma 3 270M on two Zen 2 cores. The result depends only on
//! the file and on how turbokv calibrates, so it is stored under a name made
//! from both, and a later load of the same file reads it back.
//!
//! A cache file holds, little-endian: the magic `TKVCENT1`, the fingerprint
//! (u64), the layer count and the key width `n_kv_heads * head_dim` (u32
//! each), then per layer the center and the divisors (`kv_dim` f32 each),
//! then a checksum (u64) of everything before it. A file that does not
//! match the loaded model in every one of these is ignored and rewritten.
//! Reading one never allocates more than the loaded model's config implies.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::centering::{rope_pairs, LayerCenter};
use crate::config::Config;
use crate::gguf::GgufFile;

const MAGIC: &[u8; 8] = b"TKVCENT1";
const HEADER_BYTES: usize = 8 + 8 + 4 + 4;

/// Bytes hashed from the start of the file (the header and the start of
/// the metadata) and from each of the samples spread over the rest.
const HEAD_BYTES: usize = 1 << 20;
const SAMPLE_BYTES: usize = 4096;
/// Equal gaps between the samples, which start at the end of the head and
/// at the end of each gap: `SAMPLE_GAPS + 1` samples in all.
const SAMPLE_GAPS: usize = 64;

/// Identifies a model file's content together with the calibration that
/// produced the centers: `calibration` must change whenever the text, the
/// token count or the way centers are computed changes.
///
/// The file is sampled, not read whole: its size, its first MiB and 65
/// spread 4 KiB pieces. Two files that agree on all of those but differ
/// elsewhere would share centers. Centers only steer quantization, so the
/// worst outcome is a less accurate cache, never a wrong shape.
pub fn fingerprint(file: &GgufFile, calibration: &[u8]) -> u64 {
    let bytes = file.bytes();
    let mut h = Hasher::new();
    h.write(calibration);
    h.write(&(bytes.len() as u64).to_le_bytes());
    h.write(&bytes[..bytes.len().min(HEAD_BYTES)]);
    if bytes.len() > HEAD_BYTES {
        let span = bytes.len() - HEAD_BYTES;
        for i in 0..=SAMPLE_GAPS {
            let start = HEAD_BYTES + span / SAMPLE_GAPS * i;
            let end = (start + SAMPLE_BYTES).min(bytes.len());
            h.write(&bytes[start.min(end)..end]);
        }
    }
    h.finish()
}

/// Returns the path in `dir` of the centers file for `fingerprint`.
pub fn path_in(dir: &Path, fingerprint: u64) -> PathBuf {
    dir.join(format!("centers-{fingerprint:016x}.bin"))
}

/// Reads the centers stored at `path` for a model with config `c`, or
/// `None` (logged) if there are none or they do not match.
pub fn read(path: &Path, fingerprint: u64, c: &Config, freq_factors: Option<&[f32]>) -> Option<Vec<LayerCenter>> {
    let kv_dim = c.n_kv_heads * c.head_dim;
    let expected_len = HEADER_BYTES + c.n_layer * 2 * kv_dim * 4 + 8;

    let bytes = match fs::metadata(path) {
        Ok(meta) if meta.len() == expected_len as u64 => fs::read(path).ok()?,
        Ok(meta) => {
            log::debug!("ignoring {}: {} bytes, expected {expected_len}", path.display(), meta.len());
            return None;
        }
        Err(_) => return None,
    };
    if bytes.len() != expected_len {
        return None;
    }

    let (body, checksum) = bytes.split_at(expected_len - 8);
    let header_ok = &body[..8] == MAGIC
        && u64_at(body, 8) == fingerprint
        && u32_at(body, 16) as usize == c.n_layer
        && u32_at(body, 20) as usize == kv_dim;
    if !header_ok || u64_at(checksum, 0) != checksum_of(body) {
        log::debug!("ignoring {}: it belongs to another model or is damaged", path.display());
        return None;
    }

    let to_f32 = |b: &[u8]| f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let floats: Vec<f32> = body[HEADER_BYTES..].chunks_exact(4).map(to_f32).collect();
    let plausible = floats.iter().all(|x| x.is_finite())
        && floats.chunks_exact(kv_dim).skip(1).step_by(2).all(|scales| scales.iter().all(|&s| s > 0.0));
    if !plausible {
        log::debug!("ignoring {}: non-finite centers or divisors", path.display());
        return None;
    }

    let centers = floats
        .chunks_exact(2 * kv_dim)
        .enumerate()
        .map(|(il, layer)| LayerCenter {
            key: layer[..kv_dim].to_vec(),
            key_scale: layer[kv_dim..].to_vec(),
            pairs: rope_pairs(c, &c.layers[il], freq_factors),
        })
        .collect();
    log::debug!("read key centers from {}", path.display());
    Some(centers)
}

/// Stores `centers` at `path`, through a temporary file renamed into place
/// so that a concurrent reader sees the old file or the whole new one.
pub fn write(path: &Path, fingerprint: u64, centers: &[LayerCenter]) -> std::io::Result<()> {
    let kv_dim = centers.first().map_or(0, |l| l.key.len());
    let mut body = Vec::with_capacity(HEADER_BYTES + centers.len() * 2 * kv_dim * 4 + 8);
    body.extend_from_slice(MAGIC);
    body.extend_from_slice(&fingerprint.to_le_bytes());
    body.extend_from_slice(&(centers.len() as u32).to_le_bytes());
    body.extend_from_slice(&(kv_dim as u32).to_le_bytes());
    for layer in centers {
        for x in layer.key.iter().chain(&layer.key_scale) {
            body.extend_from_slice(&x.to_le_bytes());
        }
    }
    let checksum = checksum_of(&body);
    body.extend_from_slice(&checksum.to_le_bytes());

    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = fs::File::create(&tmp).and_then(|mut f| f.write_all(&body)).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn checksum_of(bytes: &[u8]) -> u64 {
    let mut h = Hasher::new();
    h.write(bytes);
    h.finish()
}

/// A fixed 64-bit hash (eight bytes per step, multiply and rotate), stable
/// across Rust releases, unlike `std`'s `DefaultHasher`. It is not keyed,
/// so it separates files but does not resist crafted collisions.
struct Hasher {
    state: u64,
    len: u64,
}

impl Hasher {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    fn new() -> Hasher {
        Hasher { state: 0x243f_6a88_85a3_08d3, len: 0 }
    }

    fn mix(&mut self, word: u64) {
        self.state = (self.state ^ word).wrapping_mul(Hasher::K).rotate_left(29);
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.mix(u64_at(w, 0));
        }
        let mut tail = [0u8; 8];
        tail[..words.remainder().len()].copy_from_slice(words.remainder());
        self.mix(u64::from_le_bytes(tail) ^ (words.remainder().len() as u64) << 56);
        self.len += bytes.len() as u64;
    }

    fn finish(&self) -> u64 {
        let mut x = self.state ^ self.len;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hasher_separates_length_and_order() {
        let hash = |parts: &[&[u8]]| {
            let mut h = Hasher::new();
            parts.iter().for_each(|p| h.write(p));
            h.finish()
        };
        assert_ne!(hash(&[&b"abc"[..]]), hash(&[&b"abc\0"[..]]));
        assert_ne!(hash(&[&b"ab"[..], &b"c"[..]]), hash(&[&b"c"[..], &b"ab"[..]]));
        assert_ne!(hash(&[&[0u8; 8]]), hash(&[&[0u8; 16]]));
        assert_eq!(hash(&[&b"same bytes"[..]]), hash(&[&b"same bytes"[..]]));
    }
}
