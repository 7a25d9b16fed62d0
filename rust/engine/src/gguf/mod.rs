//! GGUF files (versions 2 and 3) read over mmap.
//!
//! Every count, length, dimension and offset is checked against the file
//! size before it is used, so a malformed file yields [`Error::Format`]
//! naming the field, never a panic or an allocation sized by the header.

use crate::error::{Error, Result};
use turbokv_kernels::quants::GgmlType;

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
    String(Vec<String>),
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

/// An open GGUF file.
pub struct GgufFile {
    pub version: u32,
    pub alignment: u64,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    // the mmap and lookup indices are private
}

impl GgufFile {
    /// Opens and validates `path`.
    pub fn open(path: &str) -> Result<GgufFile> {
        todo!()
    }

    /// The metadata value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        todo!()
    }

    /// An unsigned integer value of any integer type; a negative value or a
    /// non-integer type is an [`Error::Format`] naming the key.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        todo!()
    }

    /// A float value (F32 or F64, integers converted); other types are an error.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        todo!()
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        todo!()
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        todo!()
    }

    /// A string array.
    pub fn get_str_array(&self, key: &str) -> Result<Option<&[String]>> {
        todo!()
    }

    /// A float array.
    pub fn get_f32_array(&self, key: &str) -> Result<Option<&[f32]>> {
        todo!()
    }

    /// An integer array converted to i32 (I32, U32 in range, I8, ...).
    pub fn get_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>> {
        todo!()
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        todo!()
    }

    /// The bytes of `info`'s data (bounds already validated at open).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        todo!()
    }

    /// The whole file's size in bytes.
    pub fn file_size(&self) -> u64 {
        todo!()
    }
}
