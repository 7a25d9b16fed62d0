//! GGUF files (versions 2 and 3) read over mmap.
//!
//! Every count, length, dimension and offset is checked against the file
//! size before it is used, so a malformed file yields [`Error::Format`]
//! naming the field, never a panic or an allocation sized by the header.

mod cursor;
mod reader;
mod strings;
mod value;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs::File;

use memmap2::{Mmap, MmapOptions};

use crate::error::{Error, Result};
use turbokv_kernels::quants::GgmlType;

pub use strings::StringArray;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Array),
}

/// A metadata array; typed so that large vocabularies stay compact.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    String(StringArray),
    Array(Vec<Array>),
}

/// One tensor's header entry.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions, innermost first (GGML order: `dims[0]` is the row length).
    pub dims: Vec<u64>,
    /// The raw GGUF type id.
    pub type_id: u32,
    /// The type, if turbokv supports it.
    pub ty: Option<GgmlType>,
    /// Offset of the data from the start of the file (already validated).
    pub offset: u64,
    /// Size of the data in bytes (0 when the type is unknown).
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Returns the tensor's type, or [`Error::Unsupported`] naming the
    /// tensor and its type id when turbokv does not support that type.
    pub fn ggml_type(&self) -> Result<GgmlType> {
        self.ty.ok_or_else(|| {
            Error::Unsupported(format!(
                "tensor {} has unsupported type id {}",
                self.name, self.type_id
            ))
        })
    }

    /// Number of elements: the product of `dims`, which open checked for
    /// overflow. It saturates at `u64::MAX` for an info built by hand.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |n, &d| n.saturating_mul(d))
    }
}

/// An open GGUF file.
pub struct GgufFile {
    pub version: u32,
    pub alignment: u64,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    storage: Storage,
    /// Position of each key in `metadata`.
    key_index: HashMap<String, usize>,
    /// Position of each tensor name in `tensors`.
    tensor_index: HashMap<String, usize>,
}

/// The file's bytes: mapped from disk, or owned when parsed from memory.
enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(map) => map,
            Storage::Owned(bytes) => bytes,
        }
    }
}

impl GgufFile {
    /// Opens and validates `path`.
    pub fn open(path: &str) -> Result<GgufFile> {
        let io_err = |source| Error::Io {
            path: path.to_string(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();

        // Mapping zero bytes fails on some platforms; an empty file is
        // parsed from memory and rejected with the usual truncation error.
        if len == 0 {
            return GgufFile::from_storage(Storage::Owned(Vec::new()));
        }

        // The map is populated (MAP_POPULATE on Linux, as llama.cpp's
        // default). Otherwise the page faults of a first forward pass stall
        // workers mid-task, and the pool takes that for an overloaded
        // machine and runs later dispatches on one thread.
        //
        // SAFETY: the map is read-only. Like other mmap-based model loaders,
        // this assumes that no other process truncates or rewrites the file
        // while it is open, because that is undefined behaviour (typically
        // SIGBUS).
        let map = unsafe { MmapOptions::new().populate().map(&file) }.map_err(io_err)?;
        log::debug!("mapped {path} ({len} bytes)");
        GgufFile::from_storage(Storage::Mapped(map))
    }

    /// Validates a GGUF file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile> {
        GgufFile::from_storage(Storage::Owned(bytes))
    }

    fn from_storage(storage: Storage) -> Result<GgufFile> {
        let parsed = reader::parse(storage.bytes())?;
        Ok(GgufFile {
            version: parsed.version,
            alignment: parsed.alignment,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            storage,
            key_index: parsed.key_index,
            tensor_index: parsed.tensor_index,
        })
    }

    /// The metadata value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let &i = self.key_index.get(key)?;
        Some(&self.metadata[i].1)
    }

    /// An unsigned integer value of any integer type; a negative value or a
    /// non-integer type is an [`Error::Format`] naming the key.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        let value = match self.get(key) {
            Some(value) => value,
            None => return Ok(None),
        };
        let signed = match *value {
            Value::U8(v) => return Ok(Some(u64::from(v))),
            Value::U16(v) => return Ok(Some(u64::from(v))),
            Value::U32(v) => return Ok(Some(u64::from(v))),
            Value::U64(v) => return Ok(Some(v)),
            Value::I8(v) => i64::from(v),
            Value::I16(v) => i64::from(v),
            Value::I32(v) => i64::from(v),
            Value::I64(v) => v,
            _ => return Err(type_mismatch(key, value, "an unsigned integer")),
        };
        match u64::try_from(signed) {
            Ok(v) => Ok(Some(v)),
            Err(_) => Err(Error::Format(format!(
                "key '{key}' is {signed}, expected a non-negative integer"
            ))),
        }
    }

    /// A float value (F32 or F64, integers converted); other types are an error.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        let value = match self.get(key) {
            Some(value) => value,
            None => return Ok(None),
        };
        let converted = match *value {
            Value::F32(v) => v,
            Value::F64(v) => v as f32,
            Value::U8(v) => f32::from(v),
            Value::I8(v) => f32::from(v),
            Value::U16(v) => f32::from(v),
            Value::I16(v) => f32::from(v),
            Value::U32(v) => v as f32,
            Value::I32(v) => v as f32,
            Value::U64(v) => v as f32,
            Value::I64(v) => v as f32,
            _ => return Err(type_mismatch(key, value, "a number")),
        };
        Ok(Some(converted))
    }

    /// A BOOL value; other types are an error.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(v)) => Ok(Some(*v)),
            Some(value) => Err(type_mismatch(key, value, "BOOL")),
        }
    }

    /// A STRING value; other types are an error.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(v)) => Ok(Some(v)),
            Some(value) => Err(type_mismatch(key, value, "STRING")),
        }
    }

    /// A string array.
    pub fn get_str_array(&self, key: &str) -> Result<Option<&StringArray>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(Array::String(v))) => Ok(Some(v)),
            Some(value) => Err(type_mismatch(key, value, "ARRAY[STRING]")),
        }
    }

    /// A float array.
    pub fn get_f32_array(&self, key: &str) -> Result<Option<&[f32]>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(Array::F32(v))) => Ok(Some(v)),
            Some(value) => Err(type_mismatch(key, value, "ARRAY[FLOAT32]")),
        }
    }

    /// An integer array converted to i32 (I32, U32 in range, I8, ...).
    pub fn get_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>> {
        let array = match self.get(key) {
            None => return Ok(None),
            Some(Value::Array(array)) => array,
            Some(value) => return Err(type_mismatch(key, value, "an integer array")),
        };
        let converted = match array {
            Array::I32(v) => v.clone(),
            Array::I8(v) => v.iter().map(|&x| i32::from(x)).collect(),
            Array::U8(v) => v.iter().map(|&x| i32::from(x)).collect(),
            Array::I16(v) => v.iter().map(|&x| i32::from(x)).collect(),
            Array::U16(v) => v.iter().map(|&x| i32::from(x)).collect(),
            Array::U32(v) => convert_i32(key, v)?,
            Array::U64(v) => convert_i32(key, v)?,
            Array::I64(v) => convert_i32(key, v)?,
            _ => {
                return Err(type_mismatch(
                    key,
                    &Value::Array(array.clone()),
                    "an integer array",
                ))
            }
        };
        Ok(Some(converted))
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        let &i = self.tensor_index.get(name)?;
        Some(&self.tensors[i])
    }

    /// The bytes of `info`'s data (bounds already validated at open).
    ///
    /// `info` must come from this file; for a foreign `info` whose range lies
    /// outside this file the result is empty.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let bytes = self.storage.bytes();
        let range = usize::try_from(info.offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(usize::try_from(info.n_bytes).ok()?)?));
        range.and_then(|r| bytes.get(r)).unwrap_or(&[])
    }

    /// Returns the bytes of the whole file.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// The whole file's size in bytes.
    pub fn file_size(&self) -> u64 {
        self.storage.bytes().len() as u64
    }
}

fn type_mismatch(key: &str, value: &Value, expected: &str) -> Error {
    Error::Format(format!(
        "key '{key}' has type {}, expected {expected}",
        value.type_name()
    ))
}

fn convert_i32<T>(key: &str, values: &[T]) -> Result<Vec<i32>>
where
    T: Copy + std::fmt::Display + TryInto<i32>,
{
    let mut out = Vec::with_capacity(values.len());
    for (i, &v) in values.iter().enumerate() {
        match v.try_into() {
            Ok(x) => out.push(x),
            Err(_) => {
                return Err(Error::Format(format!(
                    "key '{key}' element {i} is {v}, which does not fit in a 32-bit signed integer"
                )))
            }
        }
    }
    Ok(out)
}
