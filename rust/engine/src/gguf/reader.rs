//! Parsing and validation of the GGUF header, metadata and tensor infos.
//!
//! The layout is little-endian. The header is the magic `GGUF`, a u32
//! version, a u64 tensor count and a u64 metadata count. The metadata entries
//! follow (string key, u32 value type, value), then the tensor infos (string
//! name, u32 n_dims, n_dims u64 dims, u32 type id, u64 offset relative to the
//! data section). The data section starts at the next multiple of the
//! alignment.

use std::collections::HashMap;

use super::cursor::Cursor;
use super::value::{read_value, read_value_type};
use super::{TensorInfo, Value};
use crate::error::{Error, Result};
use turbokv_kernels::quants::GgmlType;

const MAGIC: [u8; 4] = *b"GGUF";
const SUPPORTED_VERSIONS: [u32; 2] = [2, 3];

/// Metadata key of the data section alignment.
pub(crate) const ALIGNMENT_KEY: &str = "general.alignment";
pub(crate) const DEFAULT_ALIGNMENT: u64 = 32;

/// Most dimensions a tensor may have (GGML_MAX_DIMS in ggml).
pub(crate) const MAX_DIMS: u32 = 4;

/// Smallest metadata entry: an empty key (8), a value type (4), a UINT8 (1).
const MIN_KV_BYTES: u64 = 8 + 4 + 1;

/// Smallest tensor info: an empty name (8), n_dims (4), one dim (8), type
/// id (4), offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;

/// Everything the header, metadata and tensor infos describe.
pub(crate) struct Parsed {
    pub(crate) version: u32,
    pub(crate) alignment: u64,
    pub(crate) metadata: Vec<(String, Value)>,
    pub(crate) key_index: HashMap<String, usize>,
    pub(crate) tensors: Vec<TensorInfo>,
    pub(crate) tensor_index: HashMap<String, usize>,
}

struct Header {
    version: u32,
    tensor_count: u64,
    kv_count: u64,
}

/// A tensor info as stored, before its offset is placed in the file.
struct RawTensorInfo {
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    /// Offset from the start of the data section.
    offset: u64,
}

/// Parses and validates a whole GGUF file held in `bytes`.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed> {
    let mut cur = Cursor::new(bytes);
    let header = read_header(&mut cur)?;
    let (metadata, key_index) = read_metadata(&mut cur, header.kv_count)?;
    let alignment = read_alignment(&metadata, &key_index)?;
    let (raw_tensors, tensor_index) = read_tensor_infos(&mut cur, header.tensor_count)?;

    let data_start = align_up(cur.pos() as u64, alignment).ok_or_else(|| {
        Error::Format(format!(
            "data section: offset {} aligned up to {alignment} overflows",
            cur.pos()
        ))
    })?;
    let tensors = place_tensors(raw_tensors, data_start, alignment, bytes.len() as u64)?;
    check_overlaps(&tensors)?;

    Ok(Parsed {
        version: header.version,
        alignment,
        metadata,
        key_index,
        tensors,
        tensor_index,
    })
}

fn read_header(cur: &mut Cursor) -> Result<Header> {
    let magic: [u8; 4] = cur.array(|| "header magic".to_string())?;
    if magic != MAGIC {
        return Err(Error::Format(format!(
            "invalid magic bytes \"{}\" (expected \"GGUF\"); this is not a GGUF file",
            magic.escape_ascii()
        )));
    }

    let version = cur.u32(|| "header version".to_string())?;
    check_version(version)?;

    let tensor_count = cur.u64(|| "header tensor_count".to_string())?;
    let kv_count = cur.u64(|| "header kv_count".to_string())?;
    check_counts_fit(cur, tensor_count, kv_count)?;

    Ok(Header {
        version,
        tensor_count,
        kv_count,
    })
}

fn check_version(version: u32) -> Result<()> {
    if SUPPORTED_VERSIONS.contains(&version) {
        return Ok(());
    }

    // A big-endian file stores the version 3 as bytes 00 00 00 03, which
    // read little-endian as 0x03000000.
    let swapped = version.swap_bytes();
    if (1..=3).contains(&swapped) {
        return Err(Error::Format(format!(
            "version field reads {version:#010x}, so this is a big-endian GGUF file \
             (version {swapped}); big-endian GGUF is not supported, convert the model \
             to a little-endian GGUF file"
        )));
    }
    Err(Error::Format(format!(
        "unsupported GGUF version {version}; supported versions are 2 and 3 \
         (re-convert the model with a current llama.cpp)"
    )))
}

/// Rejects counts whose smallest possible entries already exceed the file.
fn check_counts_fit(cur: &Cursor, tensor_count: u64, kv_count: u64) -> Result<()> {
    let remaining = cur.remaining() as u64;
    let kv_bytes = kv_count.checked_mul(MIN_KV_BYTES);
    let tensor_bytes = tensor_count.checked_mul(MIN_TENSOR_INFO_BYTES);

    match kv_bytes {
        Some(n) if n <= remaining => {}
        _ => {
            return Err(Error::Format(format!(
                "header kv_count {kv_count}: {kv_count} entries of at least \
                 {MIN_KV_BYTES} bytes do not fit in the {remaining} bytes after the header; \
                 the count is corrupt or the file is truncated"
            )))
        }
    }
    match tensor_bytes {
        Some(n) if n <= remaining => {}
        _ => {
            return Err(Error::Format(format!(
                "header tensor_count {tensor_count}: {tensor_count} tensor infos of at \
                 least {MIN_TENSOR_INFO_BYTES} bytes do not fit in the {remaining} bytes \
                 after the header; the count is corrupt or the file is truncated"
            )))
        }
    }
    match kv_bytes
        .zip(tensor_bytes)
        .and_then(|(a, b)| a.checked_add(b))
    {
        Some(n) if n <= remaining => Ok(()),
        _ => Err(Error::Format(format!(
            "header kv_count {kv_count} and tensor_count {tensor_count}: their entries \
             do not fit together in the {remaining} bytes after the header; a count is \
             corrupt or the file is truncated"
        ))),
    }
}

type Metadata = (Vec<(String, Value)>, HashMap<String, usize>);

fn read_metadata(cur: &mut Cursor, kv_count: u64) -> Result<Metadata> {
    // kv_count was checked against the file size, so these allocations are
    // bounded by the file.
    let mut metadata = Vec::with_capacity(kv_count as usize);
    let mut key_index = HashMap::with_capacity(kv_count as usize);

    for i in 0..kv_count as usize {
        let key = cur.string(|| format!("key #{i} (name)"))?;
        if let Some(&first) = key_index.get(&key) {
            return Err(Error::Format(format!(
                "duplicate key '{key}' (entries #{first} and #{i})"
            )));
        }

        let ty = read_value_type(cur, &|| format!("key #{i} '{key}'"), "value type")?;
        let value = read_value(cur, ty, &key)?;
        key_index.insert(key.clone(), i);
        metadata.push((key, value));
    }
    Ok((metadata, key_index))
}

/// Reads `general.alignment`: any unsigned integer type, a nonzero power of
/// two, 32 when absent.
fn read_alignment(metadata: &[(String, Value)], key_index: &HashMap<String, usize>) -> Result<u64> {
    let value = match key_index.get(ALIGNMENT_KEY) {
        Some(&i) => &metadata[i].1,
        None => return Ok(DEFAULT_ALIGNMENT),
    };
    let alignment = match *value {
        Value::U8(v) => u64::from(v),
        Value::U16(v) => u64::from(v),
        Value::U32(v) => u64::from(v),
        Value::U64(v) => v,
        _ => {
            return Err(Error::Format(format!(
                "key '{ALIGNMENT_KEY}' has type {}, expected an unsigned integer (UINT32)",
                value.type_name()
            )))
        }
    };
    if !alignment.is_power_of_two() {
        return Err(Error::Format(format!(
            "key '{ALIGNMENT_KEY}': alignment {alignment} is not a nonzero power of two"
        )));
    }
    Ok(alignment)
}

/// Reads the tensor infos and indexes their names.
fn read_tensor_infos(
    cur: &mut Cursor,
    tensor_count: u64,
) -> Result<(Vec<RawTensorInfo>, HashMap<String, usize>)> {
    // Bounded by the file size, as checked in `check_counts_fit`.
    let mut tensors = Vec::with_capacity(tensor_count as usize);
    let mut index = HashMap::with_capacity(tensor_count as usize);
    for i in 0..tensor_count as usize {
        let info = read_tensor_info(cur, i)?;
        if let Some(first) = index.insert(info.name.clone(), i) {
            return Err(Error::Format(format!(
                "duplicate tensor name '{}' (tensors #{first} and #{i})",
                info.name
            )));
        }
        tensors.push(info);
    }
    Ok((tensors, index))
}

fn read_tensor_info(cur: &mut Cursor, i: usize) -> Result<RawTensorInfo> {
    let name = cur.string(|| format!("tensor #{i} (name)"))?;
    let field = || format!("tensor #{i} '{name}'");

    let n_dims = cur.u32(|| format!("{} (n_dims)", field()))?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(Error::Format(format!(
            "{}: n_dims {n_dims} is out of range (1 to {MAX_DIMS} dims)",
            field()
        )));
    }

    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        let dim = cur.u64(|| format!("{} (dims[{d}])", field()))?;
        if dim == 0 {
            return Err(Error::Format(format!(
                "{}: dims[{d}] is 0; every dimension must be positive",
                field()
            )));
        }
        dims.push(dim);
    }

    let type_id = cur.u32(|| format!("{} (type id)", field()))?;
    let offset = cur.u64(|| format!("{} (offset)", field()))?;
    Ok(RawTensorInfo {
        name,
        dims,
        type_id,
        offset,
    })
}

fn align_up(pos: u64, alignment: u64) -> Option<u64> {
    let padded = pos.checked_add(alignment - 1)?;
    Some(padded - padded % alignment)
}

/// Resolves types and sizes and places each tensor's data in the file.
fn place_tensors(
    raw: Vec<RawTensorInfo>,
    data_start: u64,
    alignment: u64,
    file_size: u64,
) -> Result<Vec<TensorInfo>> {
    let mut tensors = Vec::with_capacity(raw.len());
    for (i, info) in raw.into_iter().enumerate() {
        tensors.push(place_tensor(info, i, data_start, alignment, file_size)?);
    }
    Ok(tensors)
}

fn place_tensor(
    raw: RawTensorInfo,
    i: usize,
    data_start: u64,
    alignment: u64,
    file_size: u64,
) -> Result<TensorInfo> {
    let field = || format!("tensor #{i} '{}'", raw.name);

    let n_elements = raw.dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
    if n_elements.is_none() {
        return Err(Error::Format(format!(
            "{}: the element count of dims {:?} overflows 64 bits",
            field(),
            raw.dims
        )));
    }

    let ty = GgmlType::from_id(raw.type_id);
    let n_bytes = match ty {
        Some(ty) => {
            data_bytes(ty, &raw.dims).map_err(|msg| Error::Format(format!("{}: {msg}", field())))?
        }
        None => {
            log::debug!(
                "tensor '{}' has type id {} that turbokv does not support; it is kept \
                 without data",
                raw.name,
                raw.type_id
            );
            0
        }
    };

    if raw.offset % alignment != 0 {
        return Err(Error::Format(format!(
            "{}: offset {} is not a multiple of the alignment {alignment}",
            field(),
            raw.offset
        )));
    }
    let start = data_start.checked_add(raw.offset);
    let end = start.and_then(|s| s.checked_add(n_bytes));
    match (start, end) {
        (Some(start), Some(end)) if end <= file_size => Ok(TensorInfo {
            name: raw.name,
            dims: raw.dims,
            type_id: raw.type_id,
            ty,
            offset: start,
            n_bytes,
        }),
        _ => Err(Error::Format(format!(
            "{}: data of {n_bytes} bytes at offset {} (data section {data_start} + tensor \
             offset {}) extends past the end of the file ({file_size} bytes); the file is \
             truncated or the offset is corrupt",
            field(),
            data_start as u128 + u128::from(raw.offset),
            raw.offset
        ))),
    }
}

/// Bytes of a tensor of type `ty` and shape `dims`, or the reason it has none.
fn data_bytes(ty: GgmlType, dims: &[u64]) -> std::result::Result<u64, String> {
    let block_size = ty.block_size() as u64;
    let row_len = dims[0];
    if row_len % block_size != 0 {
        return Err(format!(
            "row length dims[0] = {row_len} is not a multiple of the {} block size {block_size}",
            ty.name()
        ));
    }

    let row_bytes = (row_len / block_size).checked_mul(ty.type_size() as u64);
    let total = dims[1..]
        .iter()
        .fold(row_bytes, |acc, &d| acc.and_then(|a| a.checked_mul(d)));
    total.ok_or_else(|| {
        format!(
            "the data size of {} dims {dims:?} overflows 64 bits",
            ty.name()
        )
    })
}

/// Rejects tensors whose data ranges share bytes.
fn check_overlaps(tensors: &[TensorInfo]) -> Result<()> {
    let mut order: Vec<usize> = (0..tensors.len())
        .filter(|&i| tensors[i].n_bytes > 0)
        .collect();
    order.sort_by_key(|&i| tensors[i].offset);

    for pair in order.windows(2) {
        let (a, b) = (&tensors[pair[0]], &tensors[pair[1]]);
        // Both ends were checked against the file size, so this cannot overflow.
        let a_end = a.offset + a.n_bytes;
        if a_end > b.offset {
            return Err(Error::Format(format!(
                "tensor #{} '{}' (bytes {}..{a_end}) and tensor #{} '{}' (bytes {}..{}) overlap",
                pair[0],
                a.name,
                a.offset,
                pair[1],
                b.name,
                b.offset,
                b.offset + b.n_bytes
            )));
        }
    }
    Ok(())
}
