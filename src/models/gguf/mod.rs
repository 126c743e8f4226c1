//! GGUF files (llama.cpp's format) as checkpoints: the header, the metadata, the tensor
//! table, and what the rest of the loader needs from them (`checkpoint`: a Hugging Face
//! config and tensor names; `tokenizer`: a `tokenizer.json` equivalent; `quants`: the ggml
//! types and their dequantization).
//!
//! # Invariants
//!
//! * The file is mapped, never read whole; everything the header claims is checked against the
//!   file's size before it is used, so a truncated or corrupt file fails at open with its path,
//!   the tensor or key concerned and what was expected, never a panic or a huge allocation.
//! * Versions 2 and 3 (64-bit counts) are read; version 1 and big-endian files are refused.
//! * Every tensor's type is one we read (`GgmlType`), its rows are whole blocks, and its bytes
//!   lie inside the data section, or `open` fails naming it.

pub mod checkpoint;
pub mod quants;
pub mod tokenizer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use self::quants::GgmlType;
use super::error::ModelError;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    /// u64 values above `i64::MAX` (none that we read are).
    Uint(u64),
    Float(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::Int(v) => u64::try_from(v).ok(),
            Self::Uint(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::Float(v) => Some(v),
            Self::Int(v) => Some(v as f64),
            Self::Uint(v) => Some(v as f64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Self::Array(values) => Some(values),
            _ => None,
        }
    }
}

/// One tensor of the file, as its table lists it.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the contiguous one (a matrix's input features).
    pub dims: Vec<usize>,
    pub ty: GgmlType,
    /// Byte range inside the file (not the data section).
    pub start: usize,
    pub end: usize,
}

impl TensorInfo {
    /// The shape in Hugging Face (row-major) order: ggml's dims reversed.
    pub fn hf_shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

/// An opened GGUF file.
pub struct GgufFile {
    path: PathBuf,
    pub(crate) bytes: memmap2::Mmap,
    metadata: BTreeMap<String, Value>,
    tensors: Vec<TensorInfo>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

const MAGIC: &[u8; 4] = b"GGUF";
/// `general.alignment` when the file sets none.
const DEFAULT_ALIGNMENT: usize = 32;

impl GgufFile {
    /// Maps and parses `path`: header, metadata and tensor table, all checked (module docs).
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: read-only mapping that lives as long as `self`; as with safetensors, a file
        // rewritten while it loads is beyond what a loader can guard against.
        let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let invalid = |reason: String| ModelError::InvalidGguf {
            path: path.to_path_buf(),
            reason,
        };
        let mut r = Reader {
            bytes: &bytes,
            at: 0,
        };
        let magic = r.take(4, "the magic number").map_err(&invalid)?;
        if magic != MAGIC {
            return Err(invalid(format!(
                "bad magic {magic:02x?}: expected \"GGUF\" (is it a GGUF file?)"
            )));
        }
        let version = r.u32("the version").map_err(&invalid)?;
        if !(2..=3).contains(&version) {
            let hint = if version.swap_bytes() <= 3 {
                " (a big-endian file; only little-endian ones are read)"
            } else {
                ""
            };
            return Err(invalid(format!(
                "GGUF version {version}: versions 2 and 3 are read{hint}"
            )));
        }
        let tensor_count = r.u64("the tensor count").map_err(&invalid)?;
        let kv_count = r.u64("the metadata count").map_err(&invalid)?;
        let mut metadata = BTreeMap::new();
        for i in 0..kv_count {
            let key = r
                .string(&format!("metadata key {i} of {kv_count}"))
                .map_err(&invalid)?;
            let ty = r.u32(&format!("the type of {key:?}")).map_err(&invalid)?;
            let value = r.value(ty, &key, 0).map_err(&invalid)?;
            metadata.insert(key, value);
        }
        let mut listed = Vec::new();
        for i in 0..tensor_count {
            let name = r
                .string(&format!("tensor name {i} of {tensor_count}"))
                .map_err(&invalid)?;
            let what = format!("tensor {name:?}'s entry");
            let n_dims = r.u32(&what).map_err(&invalid)?;
            if n_dims == 0 || n_dims > 4 {
                return Err(invalid(format!("tensor {name:?} has {n_dims} dimensions")));
            }
            let dims = (0..n_dims)
                .map(|_| r.u64(&what).map(|d| d as usize))
                .collect::<Result<Vec<_>, _>>()
                .map_err(&invalid)?;
            let ty_id = r.u32(&what).map_err(&invalid)?;
            let offset = r.u64(&what).map_err(&invalid)? as usize;
            listed.push((name, dims, ty_id, offset));
        }
        let alignment =
            match metadata.get("general.alignment") {
                None => DEFAULT_ALIGNMENT,
                Some(v) => v.as_u64().filter(|a| a.is_power_of_two()).ok_or_else(|| {
                    invalid(format!("general.alignment {v:?} is not a power of two"))
                })? as usize,
            };
        let data_start = r.at.next_multiple_of(alignment);
        let mut tensors = Vec::with_capacity(listed.len());
        for (name, dims, ty_id, offset) in listed {
            let ty = GgmlType::from_id(ty_id).ok_or_else(|| ModelError::UnsupportedDtype {
                path: path.to_path_buf(),
                tensor: name.clone(),
                dtype: format!("ggml type {ty_id}"),
                expected: GgmlType::supported(),
            })?;
            let elements = dims
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .ok_or_else(|| invalid(format!("tensor {name:?} dims {dims:?} overflow")))?;
            let size = ty.bytes_of(dims[0], elements).ok_or_else(|| {
                invalid(format!(
                    "tensor {name:?} ({}) has rows of {} weights, not whole blocks of {}",
                    ty.name(),
                    dims[0],
                    ty.block_len()
                ))
            })?;
            if !offset.is_multiple_of(alignment) {
                return Err(invalid(format!(
                    "tensor {name:?} starts at data offset {offset}, not a multiple of the alignment {alignment}"
                )));
            }
            let start = data_start.saturating_add(offset);
            let end = start.saturating_add(size);
            if end > bytes.len() {
                return Err(invalid(format!(
                    "file truncated: tensor {name:?} ({}, dims {dims:?}) needs bytes up to {end}, \
                     but the file has {}",
                    ty.name(),
                    bytes.len()
                )));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                start,
                end,
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            metadata,
            tensors,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// A tensor's bytes.
    pub fn data(&self, tensor: &TensorInfo) -> &[u8] {
        &self.bytes[tensor.start..tensor.end]
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str, ModelError> {
        self.get("general.architecture")
            .and_then(Value::as_str)
            .ok_or_else(|| ModelError::InvalidGguf {
                path: self.path.clone(),
                reason: "no general.architecture key".into(),
            })
    }
}

/// A bounds-checked cursor over the header. Errors say what was being read and where.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// Nesting deeper than this is refused (GGUF arrays hold scalars or strings; a deep nest is
/// a corrupt file, and unbounded recursion would overflow the stack).
const MAX_NESTING: usize = 4;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let out = &self.bytes[self.at..end];
                self.at = end;
                Ok(out)
            }
            None => Err(format!(
                "file truncated at byte {} while reading {what} ({n} bytes more needed, the file has {})",
                self.at,
                self.bytes.len()
            )),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        Ok(self.take(N, what)?.try_into().expect("took N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let len = self.u64(what)? as usize;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }

    /// A value of GGUF type `ty`, the value of `key`.
    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<Value, String> {
        let what = || format!("the value of {key:?}");
        Ok(match ty {
            0 => Value::Int(self.array::<1>(&what())?[0] as i64),
            1 => Value::Int(self.array::<1>(&what())?[0] as i8 as i64),
            2 => Value::Int(u16::from_le_bytes(self.array(&what())?) as i64),
            3 => Value::Int(i16::from_le_bytes(self.array(&what())?) as i64),
            4 => Value::Int(u32::from_le_bytes(self.array(&what())?) as i64),
            5 => Value::Int(i32::from_le_bytes(self.array(&what())?) as i64),
            6 => Value::Float(f32::from_le_bytes(self.array(&what())?) as f64),
            7 => Value::Bool(self.array::<1>(&what())?[0] != 0),
            8 => Value::String(self.string(&what())?),
            9 => {
                if depth >= MAX_NESTING {
                    return Err(format!("{key:?} nests arrays too deep"));
                }
                let elem = self.u32(&what())?;
                let count = self.u64(&what())? as usize;
                // Every element takes at least one byte: a count past the file's end is corrupt
                // (and must not become a huge allocation).
                if count > self.bytes.len() - self.at {
                    return Err(format!(
                        "file truncated: {key:?} claims {count} elements past byte {}",
                        self.at
                    ));
                }
                let mut values = Vec::with_capacity(count);
                for _ in 0..count {
                    values.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(values)
            }
            10 => {
                let v = u64::from_le_bytes(self.array(&what())?);
                i64::try_from(v).map_or(Value::Uint(v), Value::Int)
            }
            11 => Value::Int(i64::from_le_bytes(self.array(&what())?)),
            12 => Value::Float(f64::from_le_bytes(self.array(&what())?)),
            other => return Err(format!("{key:?} has unknown value type {other}")),
        })
    }
}
