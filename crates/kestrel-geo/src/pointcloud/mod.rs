//! LAS/LAZ point clouds (LAS 1.0–1.4, every point format, through `las` + `laz`): a summary
//! for `kestrel info`, chunked streaming of points, and rasterization into height models.

mod objects;
mod rasterize;
pub mod synthetic;

pub use objects::{objects_by_class, objects_by_dimension, tree_tops, CloudObject};
pub use rasterize::{fill_holes, rasterize, write_layers, HeightGrid, HeightKind, RasterizeOptions};

use crate::crs::Crs;
use crate::error::{GeoError, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Points read per chunk: bounded memory whatever the size of the cloud.
pub const CHUNK_POINTS: u64 = 1 << 20;

/// What `kestrel info` reports for a point cloud.
#[derive(Clone, Debug, Serialize)]
pub struct PointCloudInfo {
    pub path: String,
    /// "1.4" etc.
    pub las_version: String,
    pub point_format: u8,
    pub compressed: bool,
    pub points: u64,
    /// `[min_x, min_y, min_z, max_x, max_y, max_z]` from the header, in CRS units.
    pub bounds: [f64; 6],
    pub crs: Option<Crs>,
    /// Point count per ASPRS classification code (counted by reading every point).
    pub class_counts: BTreeMap<u8, u64>,
    /// Names of the extra-bytes dimensions (e.g. `treeID`).
    pub extra_dims: Vec<String>,
    pub has_rgb: bool,
    pub has_nir: bool,
}

impl PointCloudInfo {
    /// The summary `kestrel info --json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "point_cloud",
            "path": self.path,
            "las_version": self.las_version,
            "point_format": self.point_format,
            "compressed": self.compressed,
            "points": self.points,
            "bounds": self.bounds,
            "epsg": self.crs.as_ref().and_then(|c| c.epsg),
            "crs": self.crs.as_ref().map(|c| c.label()),
            "crs_name": self.crs.as_ref().map(|c| c.name.clone()),
            "class_counts": self.class_counts.iter().map(|(k, n)| (k.to_string(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
            "extra_dims": self.extra_dims,
            "has_rgb": self.has_rgb,
            "has_nir": self.has_nir,
        })
    }
}

/// A LAS/LAZ file opened for streaming.
pub struct PointCloud {
    path: PathBuf,
    reader: las::Reader,
}

/// One chunk of points, column by column (coordinates already scaled and offset).
#[derive(Default, Debug)]
pub struct PointChunk {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    pub z: Vec<f64>,
    pub intensity: Vec<u16>,
    pub class: Vec<u8>,
    pub return_number: Vec<u8>,
    pub number_of_returns: Vec<u8>,
    /// Red, green, blue per point when the format carries colour (else empty).
    pub rgb: Vec<[u16; 3]>,
}

impl PointChunk {
    pub fn len(&self) -> usize {
        self.x.len()
    }
    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }
}

impl PointCloud {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // `las` opens files of any extension; check the signature first for a clear message.
        let mut magic = [0u8; 4];
        {
            use std::io::Read;
            let mut f = std::fs::File::open(path).map_err(|e| GeoError::io(path, e))?;
            f.read_exact(&mut magic)
                .map_err(|_| GeoError::point_cloud(path, "file is too short to be LAS/LAZ"))?;
        }
        if &magic != b"LASF" {
            return Err(GeoError::point_cloud(
                path,
                "missing the LASF file signature",
            ));
        }
        let mut file = std::fs::File::open(path).map_err(|e| GeoError::io(path, e))?;
        check_laz_chunk_table(&mut file).map_err(|p| GeoError::point_cloud(path, p))?;
        let reader = guard(path, || las::Reader::from_path(path))?;
        Ok(PointCloud {
            path: path.to_path_buf(),
            reader,
        })
    }

    /// A LAS/LAZ file held in memory (fuzzing, downloaded bytes); `name` is used in errors.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Self> {
        if !bytes.starts_with(b"LASF") {
            return Err(GeoError::point_cloud(
                name,
                "missing the LASF file signature",
            ));
        }
        let mut cursor = std::io::Cursor::new(bytes);
        check_laz_chunk_table(&mut cursor).map_err(|p| GeoError::point_cloud(name, p))?;
        cursor.set_position(0);
        let reader = guard(Path::new(name), move || las::Reader::new(cursor))?;
        Ok(PointCloud {
            path: PathBuf::from(name),
            reader,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &las::Header {
        self.reader.header()
    }

    pub fn point_count(&self) -> u64 {
        self.reader.header().number_of_points()
    }

    /// The CRS from the WKT VLR, or from the GeoTIFF-key VLRs' EPSG codes.
    pub fn crs(&self) -> Result<Option<Crs>> {
        let h = self.reader.header();
        if let Some(bytes) = h.get_wkt_crs_bytes() {
            let wkt = String::from_utf8_lossy(bytes);
            if !wkt.trim_matches(char::from(0)).trim().is_empty() {
                return Crs::from_wkt(&wkt)
                    .map(Some)
                    .map_err(|e| GeoError::point_cloud(&self.path, e));
            }
        }
        let keys = h
            .get_geotiff_crs()
            .map_err(|e| GeoError::point_cloud(&self.path, format!("GeoTIFF CRS VLR: {e}")))?;
        let registered = |c: &u16| (1024..=32766).contains(c);
        let code = keys.and_then(|k| {
            k.get_projected_crs_geo_key_value()
                .filter(registered)
                .or_else(|| k.get_geodetic_crs_geo_key_value().filter(registered))
        });
        match code {
            Some(c) => Crs::from_epsg(u32::from(c))
                .map(Some)
                .map_err(|e| GeoError::point_cloud(&self.path, e)),
            None => Ok(None),
        }
    }

    /// Reads the next chunk of at most `max_points` into `chunk` (replacing its contents);
    /// returns the number read, 0 at the end.
    pub fn read_chunk(
        &mut self,
        max_points: u64,
        data: &mut las::PointData,
        chunk: &mut PointChunk,
    ) -> Result<usize> {
        let reader = &mut self.reader;
        let n = guard(&self.path, || reader.fill_points(max_points, data))? as usize;
        chunk.x.clear();
        chunk.x.extend(data.x());
        chunk.y.clear();
        chunk.y.extend(data.y());
        chunk.z.clear();
        chunk.z.extend(data.z());
        chunk.intensity.clear();
        chunk.intensity.extend(data.intensity());
        chunk.class.clear();
        chunk.class.extend(data.classification());
        chunk.return_number.clear();
        chunk.return_number.extend(data.return_number());
        chunk.number_of_returns.clear();
        chunk.number_of_returns.extend(data.number_of_returns());
        chunk.rgb.clear();
        if let Some(rgb) = data.rgb() {
            chunk.rgb.extend(rgb.map(|(r, g, b)| [r, g, b]));
        }
        Ok(n)
    }

    /// Streams every point through `visit`, one chunk at a time; `progress` gets the number
    /// of points read so far.
    pub fn for_each_chunk(
        &mut self,
        mut visit: impl FnMut(&PointChunk) -> Result<()>,
        mut progress: impl FnMut(u64),
    ) -> Result<()> {
        let mut data = las::PointDataBuilder::new()
            .for_header(self.reader.header())
            .build();
        let mut chunk = PointChunk::default();
        let mut done = 0u64;
        loop {
            let n = self.read_chunk(CHUNK_POINTS, &mut data, &mut chunk)?;
            if n == 0 {
                break;
            }
            visit(&chunk)?;
            done += n as u64;
            progress(done);
        }
        let expected = self.point_count();
        if done != expected {
            return Err(GeoError::point_cloud(
                &self.path,
                format!("header declares {expected} points but {done} could be read"),
            ));
        }
        Ok(())
    }

    /// [`for_each_chunk`](Self::for_each_chunk) with the values of the extra-bytes dimension
    /// `name` (e.g. `treeID`) decoded per point (scale and offset applied; its no-data value
    /// and non-finite values are NaN).
    pub fn for_each_chunk_with_extra(
        &mut self,
        name: &str,
        mut visit: impl FnMut(&PointChunk, &[f64]) -> Result<()>,
        progress: impl FnMut(u64),
    ) -> Result<()> {
        let dims = extra_dimensions(self.reader.header());
        let dim = dims.iter().find(|d| d.name == name).cloned().ok_or_else(|| {
            GeoError::point_cloud(
                &self.path,
                format!("has no extra dimension '{name}' (it has: {})", dims.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")),
            )
        })?;
        let mut data = las::PointDataBuilder::new().for_header(self.reader.header()).build();
        let extra_len = usize::from(self.reader.header().point_format().extra_bytes);
        let mut chunk = PointChunk::default();
        let mut values = Vec::new();
        let mut done = 0u64;
        let mut progress = progress;
        loop {
            let n = self.read_chunk(CHUNK_POINTS, &mut data, &mut chunk)?;
            if n == 0 {
                break;
            }
            let record = data.record_len();
            let base = record - extra_len;
            values.clear();
            values.extend(data.raw_bytes().chunks_exact(record).take(n).map(|r| dim.decode(&r[base + dim.offset..])));
            visit(&chunk, &values)?;
            done += n as u64;
            progress(done);
        }
        Ok(())
    }

    /// Summary for `kestrel info`: reads every point once to count classes.
    pub fn summarize(&mut self, progress: impl FnMut(u64)) -> Result<PointCloudInfo> {
        let h = self.reader.header();
        let b = h.bounds();
        let format = h.point_format();
        let mut info = PointCloudInfo {
            path: self.path.display().to_string(),
            las_version: format!("{}.{}", h.version().major, h.version().minor),
            point_format: format.to_u8().unwrap_or(255),
            compressed: format.is_compressed,
            points: h.number_of_points(),
            bounds: [b.min.x, b.min.y, b.min.z, b.max.x, b.max.y, b.max.z],
            crs: None,
            class_counts: BTreeMap::new(),
            extra_dims: extra_dimension_names(h),
            has_rgb: format.has_color,
            has_nir: format.has_nir,
        };
        info.crs = self.crs()?;
        let mut counts = [0u64; 256];
        self.for_each_chunk(
            |c| {
                for &k in &c.class {
                    counts[k as usize] += 1;
                }
                Ok(())
            },
            progress,
        )?;
        info.class_counts = counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(k, &n)| (k as u8, n))
            .collect();
        Ok(info)
    }
}

/// Runs a `las`/`laz` call, turning both its errors and its panics into an error naming the
/// file: the LAZ decoder asserts on some malformed inputs (found by fuzzing) instead of
/// returning an error, and a corrupt file must not bring the program down.
fn guard<T>(path: &Path, f: impl FnOnce() -> las::Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(GeoError::point_cloud(path, e)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown failure".into());
            Err(GeoError::point_cloud(
                path,
                format!("the LAS/LAZ decoder failed on malformed data: {msg}"),
            ))
        }
    }
}

/// Rejects a LAZ file whose chunk table declares more chunks than the file has bytes: the
/// `laz` decoder would otherwise try to allocate a table of that size and abort the process
/// (found by fuzzing). Plain LAS files and files without a chunk table pass unchecked.
fn check_laz_chunk_table<R: std::io::Read + std::io::Seek>(
    src: &mut R,
) -> std::result::Result<(), String> {
    use std::io::SeekFrom;
    let len = src.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    let mut header = [0u8; 107];
    src.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    if src.read_exact(&mut header).is_err() {
        return Err("file is too short for a LAS header".into());
    }
    // Point data record format, bit 7 set for LAZ (LASzip's convention).
    let compressed = header[104] & 0x80 != 0;
    if !compressed {
        return Ok(());
    }
    let data_start = u64::from(u32::from_le_bytes(
        header[96..100].try_into().expect("4 bytes"),
    ));
    let mut buf8 = [0u8; 8];
    src.seek(SeekFrom::Start(data_start))
        .map_err(|e| e.to_string())?;
    if src.read_exact(&mut buf8).is_err() {
        return Err(format!(
            "point data offset {data_start} lies past the end of the file ({len} bytes)"
        ));
    }
    let mut table = i64::from_le_bytes(buf8);
    if table == -1 {
        // Written by a streaming encoder: the offset is in the file's last 8 bytes.
        if len < 8 {
            return Err("missing LAZ chunk table offset".into());
        }
        src.seek(SeekFrom::End(-8)).map_err(|e| e.to_string())?;
        src.read_exact(&mut buf8).map_err(|e| e.to_string())?;
        table = i64::from_le_bytes(buf8);
    }
    if table < 0 || table as u64 + 8 > len {
        // No usable chunk table: `laz` reports that itself without large allocations.
        return Ok(());
    }
    let mut buf = [0u8; 8];
    src.seek(SeekFrom::Start(table as u64))
        .map_err(|e| e.to_string())?;
    src.read_exact(&mut buf).map_err(|e| e.to_string())?;
    let chunks = u64::from(u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes")));
    if chunks > len {
        return Err(format!(
            "corrupt LAZ chunk table: {chunks} chunks declared in a file of {len} bytes"
        ));
    }
    Ok(())
}

/// One extra-bytes dimension: where it lies in the extra bytes and how it is encoded.
#[derive(Clone, Debug)]
struct ExtraDimension {
    name: String,
    /// Byte offset within the record's extra bytes.
    offset: usize,
    data_type: u8,
    scale: f64,
    add: f64,
    no_data: Option<f64>,
}

impl ExtraDimension {
    /// Size in bytes of a LAS extra-bytes data type (1–10; 0 is "undocumented bytes", whose
    /// count is in the options field).
    fn size(data_type: u8, options: u8) -> usize {
        match data_type {
            1 | 2 => 1,
            3 | 4 => 2,
            5 | 6 | 9 => 4,
            7 | 8 | 10 => 8,
            _ => usize::from(options),
        }
    }

    fn raw(&self, b: &[u8]) -> f64 {
        let a = |n: usize| -> [u8; 8] {
            let mut v = [0u8; 8];
            v[..n].copy_from_slice(&b[..n]);
            v
        };
        match self.data_type {
            1 => f64::from(b[0]),
            2 => f64::from(b[0] as i8),
            3 => f64::from(u16::from_le_bytes([b[0], b[1]])),
            4 => f64::from(i16::from_le_bytes([b[0], b[1]])),
            5 => f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            6 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            7 => u64::from_le_bytes(a(8)) as f64,
            8 => i64::from_le_bytes(a(8)) as f64,
            9 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            10 => f64::from_le_bytes(a(8)),
            _ => f64::NAN,
        }
    }

    /// The value at the start of `b` (the dimension's bytes in a record).
    fn decode(&self, b: &[u8]) -> f64 {
        let raw = self.raw(b);
        if self.no_data == Some(raw) || !raw.is_finite() || raw.abs() >= 1e300 {
            return f64::NAN;
        }
        raw * self.scale + self.add
    }
}

/// The Extra Bytes VLR (LASF_Spec, record 4): 192-byte descriptors — data type at byte 2,
/// options at 3 (bit 0 no-data, bit 3 scale, bit 4 offset), name at 4..36, no-data at 40,
/// scale at 112, offset at 136 (each the first of three little-endian 8-byte values).
fn extra_dimensions(header: &las::Header) -> Vec<ExtraDimension> {
    let mut out = Vec::new();
    let mut offset = 0;
    for v in header.all_vlrs().filter(|v| v.user_id == "LASF_Spec" && v.record_id == 4) {
        for d in v.data.chunks_exact(192) {
            let (data_type, options) = (d[2], d[3]);
            let f = |at: usize| f64::from_le_bytes(d[at..at + 8].try_into().unwrap_or([0; 8]));
            let raw_no_data = if matches!(data_type, 9 | 10) { f(40) } else if matches!(data_type, 2 | 4 | 6 | 8) { i64::from_le_bytes(d[40..48].try_into().unwrap_or([0; 8])) as f64 } else { u64::from_le_bytes(d[40..48].try_into().unwrap_or([0; 8])) as f64 };
            out.push(ExtraDimension {
                name: String::from_utf8_lossy(&d[4..36]).trim_end_matches('\0').to_string(),
                offset,
                data_type,
                scale: if options & 8 != 0 && f(112) != 0.0 { f(112) } else { 1.0 },
                add: if options & 16 != 0 { f(136) } else { 0.0 },
                no_data: (options & 1 != 0).then_some(raw_no_data),
            });
            offset += ExtraDimension::size(data_type, options);
        }
    }
    out
}

/// Names from the Extra Bytes VLR (LASF_Spec, record 4): 192-byte descriptors whose
/// bytes 4..36 hold the name.
fn extra_dimension_names(header: &las::Header) -> Vec<String> {
    header
        .all_vlrs()
        .filter(|v| v.user_id == "LASF_Spec" && v.record_id == 4)
        .flat_map(|v| {
            v.data
                .chunks_exact(192)
                .map(|d| {
                    String::from_utf8_lossy(&d[4..36])
                        .trim_end_matches('\0')
                        .to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Name of an ASPRS classification code (LAS 1.4 table).
pub fn class_name(code: u8) -> &'static str {
    match code {
        0 => "never classified",
        1 => "unclassified",
        2 => "ground",
        3 => "low vegetation",
        4 => "medium vegetation",
        5 => "high vegetation",
        6 => "building",
        7 => "low noise",
        8 => "model key-point",
        9 => "water",
        10 => "rail",
        11 => "road surface",
        12 => "overlap",
        13 => "wire guard",
        14 => "wire conductor",
        15 => "transmission tower",
        16 => "wire connector",
        17 => "bridge deck",
        18 => "high noise",
        _ => "user defined",
    }
}
