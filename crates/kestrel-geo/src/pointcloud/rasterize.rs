//! Streaming rasterization of a point cloud into height models on a regular grid: DSM
//! (highest return), DTM (ground class, holes filled), nDSM (height above ground), mean
//! intensity, and a per-class mask. Memory grows with the grid's area, never with the number
//! of points: points pass through in fixed-size chunks.

use super::{PointChunk, PointCloud};
use crate::error::{GeoError, Result};
use crate::georef::{GeoTransform, Georef};
use crate::raster::{CogWriter, CogWriterOptions};
use std::path::Path;

/// Which layer to derive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeightKind {
    /// Highest return per cell (noise classes 7 and 18 excluded).
    Dsm,
    /// Lowest ground point (class 2) per cell, holes filled by interpolation.
    Dtm,
    /// DSM minus DTM, clamped at 0: the height of objects above the ground.
    Ndsm,
    /// Mean intensity per cell.
    Intensity,
    /// Mean brightness of the points' colour, (R + G + B) / 3 on 0–255 (clouds colourized
    /// from imagery; what co-registration with that imagery is checked on).
    Luminance,
    /// 1 where a cell holds a point of this ASPRS class, else 0.
    ClassMask(u8),
}

impl std::str::FromStr for HeightKind {
    type Err = GeoError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "dsm" => HeightKind::Dsm,
            "dtm" => HeightKind::Dtm,
            "ndsm" | "chm" => HeightKind::Ndsm,
            "intensity" => HeightKind::Intensity,
            "luminance" => HeightKind::Luminance,
            other => match other.strip_prefix("class:").and_then(|c| c.parse().ok()) {
                Some(c) => HeightKind::ClassMask(c),
                None => {
                    return Err(GeoError::Invalid(format!(
                        "unknown layer '{s}': expected dsm, dtm, ndsm, intensity, luminance or class:N"
                    )))
                }
            },
        })
    }
}

#[derive(Clone, Debug)]
pub struct RasterizeOptions {
    /// Cell size in metres (converted to the CRS's units, e.g. feet).
    pub cell_m: f64,
    pub kind: HeightKind,
    /// Fill empty DSM cells too (the DTM is always filled).
    pub fill_dsm_holes: bool,
    /// Only this part, `[min_x, min_y, max_x, max_y]` in the cloud's CRS (default: the
    /// cloud's bounds); its top-left corner is the grid's origin.
    pub area: Option<[f64; 4]>,
}

/// A single-band grid of f32 values; NaN marks cells without data.
#[derive(Clone, Debug)]
pub struct HeightGrid {
    pub width: u32,
    pub height: u32,
    pub georef: Georef,
    pub values: Vec<f32>,
}

/// Value written for NaN cells in GeoTIFF output.
pub const NODATA: f32 = -9999.0;

impl HeightGrid {
    pub fn get(&self, col: u32, row: u32) -> f32 {
        self.values[row as usize * self.width as usize + col as usize]
    }

    /// Writes the grid as a tiled, deflate-compressed COG, tile by tile.
    pub fn write_cog(&self, path: impl AsRef<Path>) -> Result<()> {
        write_layers(path, std::slice::from_ref(self))
    }
}

/// Writes grids of one size and georeferencing as the bands of one COG (e.g. nDSM and
/// intensity, for a model that reads both).
pub fn write_layers(path: impl AsRef<Path>, layers: &[HeightGrid]) -> Result<()> {
    let first = layers.first().ok_or_else(|| GeoError::Invalid("no layer to write".into()))?;
    if layers.iter().any(|l| l.width != first.width || l.height != first.height) {
        return Err(GeoError::Invalid("layers of different sizes cannot share a file".into()));
    }
    let opts = CogWriterOptions { nodata: Some(NODATA as f64), ..Default::default() };
    let bands = layers.len();
    let mut w = CogWriter::<f32>::create(&path, first.width, first.height, bands as u32, Some(&first.georef), &opts)?;
    let ts = w.tile_size;
    let mut tile = Vec::with_capacity((ts * ts) as usize * bands);
    for row_off in (0..first.height).step_by(ts as usize) {
        for col_off in (0..first.width).step_by(ts as usize) {
            let rows = ts.min(first.height - row_off) as usize;
            let cols = ts.min(first.width - col_off) as usize;
            tile.clear();
            for r in 0..rows {
                let start = (row_off as usize + r) * first.width as usize + col_off as usize;
                for c in 0..cols {
                    for l in layers {
                        let v = l.values[start + c];
                        tile.push(if v.is_nan() { NODATA } else { v });
                    }
                }
            }
            w.write_tile(col_off, row_off, cols, rows, &tile)?;
        }
    }
    w.finish()
}

struct Grid {
    origin_x: f64,
    origin_y: f64,
    cell: f64,
    width: usize,
    height: usize,
    /// Points beyond the last cell are dropped (an area was asked for) rather than put in it.
    strict: bool,
}

impl Grid {
    fn cell_of(&self, x: f64, y: f64) -> Option<usize> {
        let c = ((x - self.origin_x) / self.cell).floor();
        let r = ((self.origin_y - y) / self.cell).floor();
        if c < 0.0 || r < 0.0 || (self.strict && (c >= self.width as f64 || r >= self.height as f64)) {
            return None;
        }
        // Points exactly on the max edge belong to the last cell.
        let c = (c as usize).min(self.width - 1);
        let r = (r as usize).min(self.height - 1);
        Some(r * self.width + c)
    }
}

fn is_noise(class: u8) -> bool {
    class == 7 || class == 18
}

/// Rasterizes `cloud` in one streaming pass. `progress` gets the number of points read.
pub fn rasterize(
    cloud: &mut PointCloud,
    options: &RasterizeOptions,
    progress: impl FnMut(u64),
) -> Result<HeightGrid> {
    if !(options.cell_m > 0.0 && options.cell_m.is_finite()) {
        return Err(GeoError::Invalid(format!(
            "cell size must be positive, got {}",
            options.cell_m
        )));
    }
    if cloud.point_count() == 0 {
        return Err(GeoError::point_cloud(cloud.path(), "holds no points"));
    }
    let crs = cloud.crs()?;
    let unit_m = match &crs {
        Some(c) if c.is_geographic() => return Err(GeoError::point_cloud(
            cloud.path(),
            "point cloud is in a geographic CRS (degrees); reproject it to a projected CRS first",
        )),
        Some(c) => c.linear_unit_m().unwrap_or(1.0),
        None => 1.0,
    };
    let cell = options.cell_m / unit_m;
    let b = cloud.header().bounds();
    let (origin_x, origin_y, width, height) = match options.area {
        None => {
            let origin_x = (b.min.x / cell).floor() * cell;
            let origin_y = (b.max.y / cell).ceil() * cell;
            (origin_x, origin_y, (((b.max.x - origin_x) / cell).floor() as usize + 1).max(1), (((origin_y - b.min.y) / cell).floor() as usize + 1).max(1))
        }
        Some(a) => {
            if !(a.iter().all(|v| v.is_finite()) && a[2] > a[0] && a[3] > a[1]) {
                return Err(GeoError::Invalid(format!("area {a:?}: give min_x, min_y, max_x, max_y with max > min")));
            }
            if a[2] <= b.min.x || a[0] >= b.max.x || a[3] <= b.min.y || a[1] >= b.max.y {
                return Err(GeoError::point_cloud(cloud.path(), format!("the area {a:?} lies outside the cloud's bounds")));
            }
            // The area's corner is the grid's: an area taken from an image's extent and pixel
            // size gives a layer on that image's own grid.
            (a[0], a[3], (((a[2] - a[0]) / cell - 1e-6).ceil() as usize).max(1), (((a[3] - a[1]) / cell - 1e-6).ceil() as usize).max(1))
        }
    };
    let cells = width
        .checked_mul(height)
        .filter(|&n| n <= 1 << 30)
        .ok_or_else(|| {
            GeoError::Invalid(format!(
                "a {width}x{height} grid is too large; choose a larger cell"
            ))
        })?;
    let grid = Grid {
        origin_x,
        origin_y,
        cell,
        width,
        height,
        strict: options.area.is_some(),
    };
    let kind = options.kind;
    let need_dsm = matches!(kind, HeightKind::Dsm | HeightKind::Ndsm);
    let need_dtm = matches!(kind, HeightKind::Dtm | HeightKind::Ndsm);
    let mut top = if need_dsm {
        vec![f32::NAN; cells]
    } else {
        Vec::new()
    };
    let mut ground = if need_dtm {
        vec![f32::NAN; cells]
    } else {
        Vec::new()
    };
    let averaged = matches!(kind, HeightKind::Intensity | HeightKind::Luminance);
    if kind == HeightKind::Luminance && cloud.header().point_format().has_color == false {
        return Err(GeoError::point_cloud(cloud.path(), "has no colour (point formats 2, 3, 5, 7, 8 and 10 carry RGB)"));
    }
    let mut sum = if averaged {
        vec![0f64; cells]
    } else {
        Vec::new()
    };
    let mut count = if averaged {
        vec![0u32; cells]
    } else {
        Vec::new()
    };
    let mut mask = if let HeightKind::ClassMask(_) = kind {
        vec![0f32; cells]
    } else {
        Vec::new()
    };

    cloud.for_each_chunk(
        |c: &PointChunk| {
            for i in 0..c.len() {
                let Some(k) = grid.cell_of(c.x[i], c.y[i]) else {
                    continue;
                };
                let z = c.z[i] as f32;
                let class = c.class[i];
                if need_dsm && !is_noise(class) && !(top[k] >= z) {
                    top[k] = z;
                }
                if need_dtm && class == 2 && !(ground[k] <= z) {
                    ground[k] = z;
                }
                match kind {
                    HeightKind::Intensity if !is_noise(class) => {
                        sum[k] += f64::from(c.intensity[i]);
                        count[k] += 1;
                    }
                    HeightKind::Luminance if !is_noise(class) && i < c.rgb.len() => {
                        let [r, g, b] = c.rgb[i];
                        // LAS colour is 16-bit by the spec, but many writers store 8-bit values.
                        let scale = if r.max(g).max(b) > 255 { 257.0 } else { 1.0 };
                        sum[k] += (f64::from(r) + f64::from(g) + f64::from(b)) / 3.0 / scale;
                        count[k] += 1;
                    }
                    HeightKind::ClassMask(m) if class == m => mask[k] = 1.0,
                    _ => {}
                }
            }
            Ok(())
        },
        progress,
    )?;

    let values = match kind {
        HeightKind::Dsm => {
            if options.fill_dsm_holes {
                fill_holes(&mut top, width, height);
            }
            top
        }
        HeightKind::Dtm => {
            fill_holes(&mut ground, width, height);
            ground
        }
        HeightKind::Ndsm => {
            fill_holes(&mut ground, width, height);
            fill_holes(&mut top, width, height);
            top.iter()
                .zip(&ground)
                .map(|(&t, &g)| ((t - g) * unit_m as f32).max(0.0))
                .collect()
        }
        HeightKind::Intensity | HeightKind::Luminance => sum
            .iter()
            .zip(&count)
            .map(|(&s, &n)| {
                if n == 0 {
                    f32::NAN
                } else {
                    (s / f64::from(n)) as f32
                }
            })
            .collect(),
        HeightKind::ClassMask(_) => mask,
    };
    Ok(HeightGrid {
        width: width as u32,
        height: height as u32,
        georef: Georef {
            transform: GeoTransform::north_up(origin_x, origin_y, cell, cell),
            crs,
        },
        values,
    })
}

/// Fills NaN cells by pull-push interpolation: average the known cells into ever coarser
/// grids until none is empty, then fill each empty cell bilinearly from the next coarser
/// level. Linear in the number of cells; known cells are never changed.
pub fn fill_holes(values: &mut [f32], width: usize, height: usize) {
    if !values.iter().any(|v| v.is_nan()) || values.iter().all(|v| v.is_nan()) {
        return;
    }
    let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
    let mut coarse = vec![f32::NAN; cw * ch];
    for r in 0..ch {
        for c in 0..cw {
            let (mut s, mut n) = (0f32, 0u32);
            for (rr, cc) in [
                (2 * r, 2 * c),
                (2 * r, 2 * c + 1),
                (2 * r + 1, 2 * c),
                (2 * r + 1, 2 * c + 1),
            ] {
                if rr < height && cc < width {
                    let v = values[rr * width + cc];
                    if !v.is_nan() {
                        s += v;
                        n += 1;
                    }
                }
            }
            if n > 0 {
                coarse[r * cw + c] = s / n as f32;
            }
        }
    }
    fill_holes(&mut coarse, cw, ch);
    for r in 0..height {
        for c in 0..width {
            let i = r * width + c;
            if !values[i].is_nan() {
                continue;
            }
            // Centre of fine cell (c, r) in coarse cell coordinates.
            let fx = ((c as f32 + 0.5) / 2.0 - 0.5).clamp(0.0, (cw - 1) as f32);
            let fy = ((r as f32 + 0.5) / 2.0 - 0.5).clamp(0.0, (ch - 1) as f32);
            let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(cw - 1), (y0 + 1).min(ch - 1));
            let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
            let at = |x: usize, y: usize| coarse[y * cw + x];
            values[i] = (1.0 - ty) * ((1.0 - tx) * at(x0, y0) + tx * at(x1, y0))
                + ty * ((1.0 - tx) * at(x0, y1) + tx * at(x1, y1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hole_filling_keeps_known_cells_and_interpolates_gaps() {
        let w = 9;
        let h = 5;
        // A plane z = 2x + y with a hole in the middle.
        let mut v: Vec<f32> = (0..w * h).map(|i| (2 * (i % w) + i / w) as f32).collect();
        let original = v.clone();
        for r in 1..4 {
            for c in 3..6 {
                v[r * w + c] = f32::NAN;
            }
        }
        fill_holes(&mut v, w, h);
        for i in 0..w * h {
            assert!(!v[i].is_nan());
            let (r, c) = (i / w, i % w);
            if !(1..4).contains(&r) || !(3..6).contains(&c) {
                assert_eq!(v[i], original[i]);
            } else {
                assert!(
                    (v[i] - original[i]).abs() < 2.5,
                    "cell {c},{r}: {} vs {}",
                    v[i],
                    original[i]
                );
            }
        }
    }

    #[test]
    fn all_empty_grid_stays_empty() {
        let mut v = vec![f32::NAN; 12];
        fill_holes(&mut v, 4, 3);
        assert!(v.iter().all(|x| x.is_nan()));
    }

    #[test]
    fn layer_names_parse() {
        assert_eq!("ndsm".parse::<HeightKind>().unwrap(), HeightKind::Ndsm);
        assert_eq!(
            "class:6".parse::<HeightKind>().unwrap(),
            HeightKind::ClassMask(6)
        );
        assert!("height".parse::<HeightKind>().is_err());
    }
}
