//! A decoded window of pixels in the raster's own sample type.

use serde::Serialize;

/// Sample type of a raster band, named as GDAL names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DataType {
    Byte,
    Int8,
    UInt16,
    Int16,
    UInt32,
    Int32,
    Float32,
    Float64,
}

impl DataType {
    /// From TIFF's SampleFormat (1 unsigned, 2 signed, 3 float) and BitsPerSample.
    pub fn from_tiff(sample_format: u16, bits: u16) -> Option<Self> {
        Some(match (sample_format, bits) {
            (1, 8) => DataType::Byte,
            (2, 8) => DataType::Int8,
            (1, 16) => DataType::UInt16,
            (2, 16) => DataType::Int16,
            (1, 32) => DataType::UInt32,
            (2, 32) => DataType::Int32,
            (3, 32) => DataType::Float32,
            (3, 64) => DataType::Float64,
            _ => return None,
        })
    }

    pub fn size_bytes(self) -> usize {
        match self {
            DataType::Byte | DataType::Int8 => 1,
            DataType::UInt16 | DataType::Int16 => 2,
            DataType::UInt32 | DataType::Int32 | DataType::Float32 => 4,
            DataType::Float64 => 8,
        }
    }

    /// Rust's name of the sample type, e.g. "u16".
    pub fn name(self) -> &'static str {
        match self {
            DataType::Byte => "u8",
            DataType::Int8 => "i8",
            DataType::UInt16 => "u16",
            DataType::Int16 => "i16",
            DataType::UInt32 => "u32",
            DataType::Int32 => "i32",
            DataType::Float32 => "f32",
            DataType::Float64 => "f64",
        }
    }

    /// GDAL's name, e.g. "UInt16".
    pub fn gdal_name(self) -> &'static str {
        match self {
            DataType::Byte => "Byte",
            DataType::Int8 => "Int8",
            DataType::UInt16 => "UInt16",
            DataType::Int16 => "Int16",
            DataType::UInt32 => "UInt32",
            DataType::Int32 => "Int32",
            DataType::Float32 => "Float32",
            DataType::Float64 => "Float64",
        }
    }
}

/// Typed samples, pixel-interleaved (band fastest, then column, then row).
#[derive(Clone, Debug, PartialEq)]
pub enum Samples {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

macro_rules! each_samples {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            Samples::U8($v) => $body,
            Samples::I8($v) => $body,
            Samples::U16($v) => $body,
            Samples::I16($v) => $body,
            Samples::U32($v) => $body,
            Samples::I32($v) => $body,
            Samples::F32($v) => $body,
            Samples::F64($v) => $body,
        }
    };
}

impl Samples {
    /// Decodes native-endian bytes of `data_type`.
    pub fn from_ne_bytes(data_type: DataType, bytes: &[u8]) -> Samples {
        macro_rules! decode {
            ($t:ty, $n:expr) => {
                bytes
                    .chunks_exact($n)
                    .map(|c| <$t>::from_ne_bytes(c.try_into().expect("chunk size")))
                    .collect()
            };
        }
        match data_type {
            DataType::Byte => Samples::U8(bytes.to_vec()),
            DataType::Int8 => Samples::I8(bytes.iter().map(|&b| b as i8).collect()),
            DataType::UInt16 => Samples::U16(decode!(u16, 2)),
            DataType::Int16 => Samples::I16(decode!(i16, 2)),
            DataType::UInt32 => Samples::U32(decode!(u32, 4)),
            DataType::Int32 => Samples::I32(decode!(i32, 4)),
            DataType::Float32 => Samples::F32(decode!(f32, 4)),
            DataType::Float64 => Samples::F64(decode!(f64, 8)),
        }
    }

    pub fn len(&self) -> usize {
        each_samples!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn data_type(&self) -> DataType {
        match self {
            Samples::U8(_) => DataType::Byte,
            Samples::I8(_) => DataType::Int8,
            Samples::U16(_) => DataType::UInt16,
            Samples::I16(_) => DataType::Int16,
            Samples::U32(_) => DataType::UInt32,
            Samples::I32(_) => DataType::Int32,
            Samples::F32(_) => DataType::Float32,
            Samples::F64(_) => DataType::Float64,
        }
    }

    /// Sample `i` as f64 (exact for every type but u64-range values, which TIFF lacks here).
    pub fn get_f64(&self, i: usize) -> f64 {
        each_samples!(self, v => v[i] as f64)
    }

    /// All samples as f32, the working type of normalization and the network.
    pub fn to_f32(&self) -> Vec<f32> {
        each_samples!(self, v => v.iter().map(|&x| x as f32).collect())
    }
}

/// A decoded window: `width`×`height` pixels of `bands` samples each.
#[derive(Clone, Debug, PartialEq)]
pub struct RasterBuffer {
    pub width: usize,
    pub height: usize,
    pub bands: usize,
    pub samples: Samples,
}

impl RasterBuffer {
    /// Sample of band `band` at (`col`, `row`) of the window.
    pub fn get(&self, col: usize, row: usize, band: usize) -> f64 {
        self.samples
            .get_f64((row * self.width + col) * self.bands + band)
    }

    pub fn data_type(&self) -> DataType {
        self.samples.data_type()
    }
}
