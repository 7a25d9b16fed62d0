//! Metadata value types: their GGUF ids, minimum encoded sizes and decoding.

use super::cursor::Cursor;
use super::{Array, StringArray, Value};
use crate::error::{Error, Result};

/// Deepest nesting of arrays inside arrays that [`read_value`] accepts.
///
/// The limit keeps the recursion of a hostile file from overflowing the
/// stack. Real models use at most one level of nesting, and the GGUF format
/// itself sets no limit, so 16 is a generous guess, not a format rule.
pub(crate) const MAX_ARRAY_DEPTH: usize = 16;

/// A metadata value type, numbered as in the GGUF format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    pub(crate) fn from_id(id: u32) -> Option<ValueType> {
        let ty = match id {
            0 => ValueType::U8,
            1 => ValueType::I8,
            2 => ValueType::U16,
            3 => ValueType::I16,
            4 => ValueType::U32,
            5 => ValueType::I32,
            6 => ValueType::F32,
            7 => ValueType::Bool,
            8 => ValueType::String,
            9 => ValueType::Array,
            10 => ValueType::U64,
            11 => ValueType::I64,
            12 => ValueType::F64,
            _ => return None,
        };
        Some(ty)
    }

    /// Returns the size of the smallest encoding of one value: the whole
    /// value for fixed-size types, the u64 length for a string, the element
    /// type and count for an array.
    pub(crate) fn min_size(self) -> u64 {
        match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => 1,
            ValueType::U16 | ValueType::I16 => 2,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 4,
            ValueType::U64 | ValueType::I64 | ValueType::F64 => 8,
            ValueType::String => 8,
            ValueType::Array => 12,
        }
    }

    /// Returns the name used in the GGUF specification, for example `UINT32`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ValueType::U8 => "UINT8",
            ValueType::I8 => "INT8",
            ValueType::U16 => "UINT16",
            ValueType::I16 => "INT16",
            ValueType::U32 => "UINT32",
            ValueType::I32 => "INT32",
            ValueType::F32 => "FLOAT32",
            ValueType::Bool => "BOOL",
            ValueType::String => "STRING",
            ValueType::Array => "ARRAY",
            ValueType::U64 => "UINT64",
            ValueType::I64 => "INT64",
            ValueType::F64 => "FLOAT64",
        }
    }
}

impl Value {
    /// Returns the GGUF type name, for example `UINT32` or `ARRAY[STRING]`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "UINT8",
            Value::I8(_) => "INT8",
            Value::U16(_) => "UINT16",
            Value::I16(_) => "INT16",
            Value::U32(_) => "UINT32",
            Value::I32(_) => "INT32",
            Value::U64(_) => "UINT64",
            Value::I64(_) => "INT64",
            Value::F32(_) => "FLOAT32",
            Value::F64(_) => "FLOAT64",
            Value::Bool(_) => "BOOL",
            Value::String(_) => "STRING",
            Value::Array(array) => array.type_name(),
        }
    }
}

impl Array {
    /// Returns the GGUF type name, for example `ARRAY[INT32]`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Array::U8(_) => "ARRAY[UINT8]",
            Array::I8(_) => "ARRAY[INT8]",
            Array::U16(_) => "ARRAY[UINT16]",
            Array::I16(_) => "ARRAY[INT16]",
            Array::U32(_) => "ARRAY[UINT32]",
            Array::I32(_) => "ARRAY[INT32]",
            Array::U64(_) => "ARRAY[UINT64]",
            Array::I64(_) => "ARRAY[INT64]",
            Array::F32(_) => "ARRAY[FLOAT32]",
            Array::F64(_) => "ARRAY[FLOAT64]",
            Array::Bool(_) => "ARRAY[BOOL]",
            Array::String(_) => "ARRAY[STRING]",
            Array::Array(_) => "ARRAY[ARRAY]",
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::F64(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads a value type id. For the error, `field` names the key and `role`
/// is "value type" or "array element type".
pub(crate) fn read_value_type(
    cur: &mut Cursor,
    field: &dyn Fn() -> String,
    role: &str,
) -> Result<ValueType> {
    let offset = cur.pos();
    let id = cur.u32(|| format!("{} ({role})", field()))?;
    ValueType::from_id(id).ok_or_else(|| {
        Error::Format(format!(
            "{}: unknown {role} id {id} at offset {offset} (valid ids are 0 to 12)",
            field()
        ))
    })
}

/// Reads one value of type `ty` for the key named `key`.
pub(crate) fn read_value(cur: &mut Cursor, ty: ValueType, key: &str) -> Result<Value> {
    let field = || format!("key '{key}'");
    let value = match ty {
        ValueType::U8 => Value::U8(u8::from_le_bytes(cur.array(field)?)),
        ValueType::I8 => Value::I8(i8::from_le_bytes(cur.array(field)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(cur.array(field)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(cur.array(field)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(cur.array(field)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(cur.array(field)?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(cur.array(field)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(cur.array(field)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(cur.array(field)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(cur.array(field)?)),
        ValueType::Bool => {
            let offset = cur.pos();
            let [byte] = cur.array(field)?;
            Value::Bool(decode_bool(byte, offset, &field)?)
        }
        ValueType::String => Value::String(cur.string(field)?),
        ValueType::Array => Value::Array(read_array(cur, key, 1)?),
    };
    Ok(value)
}

fn decode_bool(byte: u8, offset: usize, field: &dyn Fn() -> String) -> Result<bool> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::Format(format!(
            "{}: invalid BOOL byte {byte} at offset {offset} (expected 0 or 1)",
            field()
        ))),
    }
}

/// Reads an array header and its elements; `depth` is 1 for a top-level array.
fn read_array(cur: &mut Cursor, key: &str, depth: usize) -> Result<Array> {
    let field = || format!("key '{key}'");
    if depth > MAX_ARRAY_DEPTH {
        return Err(Error::Format(format!(
            "{}: arrays are nested more than {MAX_ARRAY_DEPTH} deep at offset {}",
            field(),
            cur.pos()
        )));
    }

    let elem_ty = read_value_type(cur, &field, "array element type")?;
    let count = cur.u64(|| format!("{} (array length)", field()))?;
    check_array_fits(cur, key, elem_ty, count)?;

    // `count` is now at most the remaining file size, so it fits in usize
    // and every allocation below is bounded by the file, not by the header.
    let count = count as usize;
    let array = match elem_ty {
        ValueType::U8 => Array::U8(read_fixed(cur, count, key, u8::from_le_bytes)?),
        ValueType::I8 => Array::I8(read_fixed(cur, count, key, i8::from_le_bytes)?),
        ValueType::U16 => Array::U16(read_fixed(cur, count, key, u16::from_le_bytes)?),
        ValueType::I16 => Array::I16(read_fixed(cur, count, key, i16::from_le_bytes)?),
        ValueType::U32 => Array::U32(read_fixed(cur, count, key, u32::from_le_bytes)?),
        ValueType::I32 => Array::I32(read_fixed(cur, count, key, i32::from_le_bytes)?),
        ValueType::U64 => Array::U64(read_fixed(cur, count, key, u64::from_le_bytes)?),
        ValueType::I64 => Array::I64(read_fixed(cur, count, key, i64::from_le_bytes)?),
        ValueType::F32 => Array::F32(read_fixed(cur, count, key, f32::from_le_bytes)?),
        ValueType::F64 => Array::F64(read_fixed(cur, count, key, f64::from_le_bytes)?),
        ValueType::Bool => Array::Bool(read_bools(cur, count, key)?),
        ValueType::String => Array::String(read_strings(cur, count, key)?),
        ValueType::Array => {
            let mut arrays = Vec::with_capacity(count);
            for _ in 0..count {
                arrays.push(read_array(cur, key, depth + 1)?);
            }
            Array::Array(arrays)
        }
    };
    Ok(array)
}

/// Rejects an array whose elements cannot fit in the rest of the file,
/// before anything is allocated for it.
fn check_array_fits(cur: &Cursor, key: &str, elem_ty: ValueType, count: u64) -> Result<()> {
    let remaining = cur.remaining() as u64;
    let fits = match count.checked_mul(elem_ty.min_size()) {
        Some(needed) => needed <= remaining,
        None => false,
    };
    if fits {
        return Ok(());
    }
    Err(Error::Format(format!(
        "key '{key}': array of {count} {} elements needs at least {count} x {} bytes, \
         but only {remaining} bytes remain from offset {}; the length is corrupt or \
         the file is truncated",
        elem_ty.name(),
        elem_ty.min_size(),
        cur.pos()
    )))
}

/// Reads `count` fixed-size little-endian values in one bounds check.
fn read_fixed<T, const N: usize>(
    cur: &mut Cursor,
    count: usize,
    key: &str,
    decode: fn([u8; N]) -> T,
) -> Result<Vec<T>> {
    let n_bytes = (count as u64).saturating_mul(N as u64);
    let bytes = cur.take(n_bytes, || format!("key '{key}' (array data)"))?;
    let values = bytes
        .chunks_exact(N)
        .map(|chunk| {
            let mut raw = [0u8; N];
            raw.copy_from_slice(chunk);
            decode(raw)
        })
        .collect();
    Ok(values)
}

/// Reads `count` strings into one buffer. The text grows as it is read,
/// so its size is bounded by the bytes actually present in the file.
fn read_strings(cur: &mut Cursor, count: usize, key: &str) -> Result<StringArray> {
    let mut strings = StringArray::with_capacity(count, 0);
    for i in 0..count {
        strings.push(cur.str(|| format!("key '{key}' element {i}"))?);
    }
    Ok(strings)
}

fn read_bools(cur: &mut Cursor, count: usize, key: &str) -> Result<Vec<bool>> {
    let start = cur.pos();
    let bytes = cur.take(count as u64, || format!("key '{key}' (array data)"))?;
    let mut values = Vec::with_capacity(count);
    for (i, &byte) in bytes.iter().enumerate() {
        values.push(decode_bool(byte, start + i, &|| {
            format!("key '{key}' element {i}")
        })?);
    }
    Ok(values)
}
