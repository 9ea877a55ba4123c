//! Georeferencing of a raster grid: the affine transform from pixels to map coordinates,
//! the CRS of those coordinates, and what follows from both (ground sample distance in
//! metres, extent in longitude/latitude).

use crate::crs::{Crs, CrsTransform};
use crate::error::{GeoError, Result};
use serde::Serialize;

/// GDAL-order affine transform: `x = c[0] + col*c[1] + row*c[2]`,
/// `y = c[3] + col*c[4] + row*c[5]`, with (col, row) at the pixel's top-left corner.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct GeoTransform(pub [f64; 6]);

impl GeoTransform {
    /// North-up grid with square or rectangular pixels.
    pub fn north_up(origin_x: f64, origin_y: f64, pixel_w: f64, pixel_h: f64) -> Self {
        GeoTransform([origin_x, pixel_w, 0.0, origin_y, 0.0, -pixel_h])
    }

    /// The identity: map coordinates are pixel coordinates (x right, y down).
    pub fn pixels() -> Self {
        GeoTransform([0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    }

    pub fn pixel_to_map(&self, col: f64, row: f64) -> (f64, f64) {
        let c = &self.0;
        (
            c[0] + col * c[1] + row * c[2],
            c[3] + col * c[4] + row * c[5],
        )
    }

    pub fn map_to_pixel(&self, x: f64, y: f64) -> Option<(f64, f64)> {
        let c = &self.0;
        let det = c[1] * c[5] - c[2] * c[4];
        if det.abs() < f64::MIN_POSITIVE {
            return None;
        }
        let dx = x - c[0];
        let dy = y - c[3];
        Some(((dx * c[5] - dy * c[2]) / det, (dy * c[1] - dx * c[4]) / det))
    }

    /// Size of one pixel along its column and row directions, in map units.
    pub fn pixel_size(&self) -> (f64, f64) {
        let c = &self.0;
        (c[1].hypot(c[4]), c[2].hypot(c[5]))
    }

    /// The transform of an overview or resampled grid that covers the same extent with
    /// `factor_x`× / `factor_y`× larger pixels.
    pub fn scaled(&self, factor_x: f64, factor_y: f64) -> Self {
        let c = &self.0;
        GeoTransform([
            c[0],
            c[1] * factor_x,
            c[2] * factor_y,
            c[3],
            c[4] * factor_x,
            c[5] * factor_y,
        ])
    }
}

/// Where a grid lies on the Earth: its transform and, when known, its CRS.
#[derive(Clone, Debug, Serialize)]
pub struct Georef {
    pub transform: GeoTransform,
    /// `None` when the grid has a transform but no declared CRS (world file without `.prj`).
    pub crs: Option<Crs>,
}

/// Mean Earth radius (IUGG), used to turn degrees into metres for geographic CRSs.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

impl Georef {
    /// Ground sample distance in metres along x and y. Geographic CRSs are measured at
    /// `centre_lat_deg`; CRSs in feet are converted. `None` when the CRS is unknown and
    /// the units cannot be told.
    pub fn gsd_xy_m(&self, centre_lat_deg: f64) -> Option<(f64, f64)> {
        let (px, py) = self.transform.pixel_size();
        let crs = self.crs.as_ref()?;
        if crs.is_geographic() {
            let m_per_deg = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;
            Some((
                px * m_per_deg * centre_lat_deg.to_radians().cos(),
                py * m_per_deg,
            ))
        } else {
            let unit = crs.linear_unit_m()?;
            Some((px * unit, py * unit))
        }
    }

    /// Extent of a `width`×`height` grid in longitude/latitude degrees:
    /// `[min_lon, min_lat, max_lon, max_lat]`, from points along all four edges so that
    /// curved edges of projected grids are covered.
    pub fn extent_lonlat(&self, width: u32, height: u32) -> Result<[f64; 4]> {
        let crs = self
            .crs
            .as_ref()
            .ok_or_else(|| GeoError::Crs("the raster declares no CRS".into()))?;
        let to_ll = CrsTransform::new(crs, &Crs::wgs84())?;
        let steps = 8;
        let mut ext = [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        for i in 0..=steps {
            let t = i as f64 / steps as f64;
            let (w, h) = (width as f64, height as f64);
            for (c, r) in [(t * w, 0.0), (t * w, h), (0.0, t * h), (w, t * h)] {
                let (x, y) = self.transform.pixel_to_map(c, r);
                let (lon, lat) = to_ll.apply(x, y)?;
                ext[0] = ext[0].min(lon);
                ext[1] = ext[1].min(lat);
                ext[2] = ext[2].max(lon);
                ext[3] = ext[3].max(lat);
            }
        }
        Ok(ext)
    }

    /// Map-coordinate bounds `[min_x, min_y, max_x, max_y]` of a `width`×`height` grid.
    pub fn bounds(&self, width: u32, height: u32) -> [f64; 4] {
        let mut b = [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        for (c, r) in [
            (0.0, 0.0),
            (width as f64, 0.0),
            (0.0, height as f64),
            (width as f64, height as f64),
        ] {
            let (x, y) = self.transform.pixel_to_map(c, r);
            b[0] = b[0].min(x);
            b[1] = b[1].min(y);
            b[2] = b[2].max(x);
            b[3] = b[3].max(y);
        }
        b
    }
}

/// Parses an ESRI world file (`.wld`, `.pgw`, `.jgw`, `.tfw`): six lines A, D, B, E, C, F
/// giving the map position of the *centre* of the top-left pixel.
pub fn parse_world_file(text: &str) -> Option<GeoTransform> {
    let v: Vec<f64> = text
        .split_whitespace()
        .filter_map(|s| s.parse::<f64>().ok())
        .collect();
    if v.len() < 6 {
        return None;
    }
    let (a, d, b, e, c, f) = (v[0], v[1], v[2], v[3], v[4], v[5]);
    // Shift from pixel centre to pixel corner, as GDAL does.
    Some(GeoTransform([
        c - 0.5 * a - 0.5 * b,
        a,
        b,
        f - 0.5 * d - 0.5 * e,
        d,
        e,
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_file_refers_to_pixel_centre() {
        let gt = parse_world_file("1.0\n0.0\n0.0\n-1.0\n635615.9278659122\n853362.1430851521\n")
            .unwrap();
        assert_eq!(
            gt.0,
            [635615.4278659122, 1.0, 0.0, 853362.6430851521, 0.0, -1.0]
        );
        assert!(parse_world_file("1\n2\n").is_none());
    }

    #[test]
    fn pixel_and_map_coordinates_invert_each_other() {
        let gt = GeoTransform([100.0, 0.5, 0.1, 200.0, 0.05, -0.5]);
        let (x, y) = gt.pixel_to_map(13.0, 7.0);
        let (c, r) = gt.map_to_pixel(x, y).unwrap();
        assert!((c - 13.0).abs() < 1e-9 && (r - 7.0).abs() < 1e-9);
    }

    #[test]
    fn gsd_in_metres_for_feet_and_degrees() {
        let ft = Georef {
            transform: GeoTransform::north_up(0.0, 0.0, 1.0, 1.0),
            crs: Some(Crs::from_epsg(2994).unwrap()),
        };
        let (gx, _) = ft.gsd_xy_m(44.0).unwrap();
        assert!((gx - 0.3048).abs() < 1e-6);
        let deg = Georef {
            transform: GeoTransform::north_up(0.0, 0.0, 1e-5, 1e-5),
            crs: Some(Crs::wgs84()),
        };
        let (gx, gy) = deg.gsd_xy_m(60.0).unwrap();
        assert!((gy - 1.1119).abs() < 1e-3, "{gy}");
        assert!((gx - gy * 0.5).abs() < 1e-3, "{gx}");
    }
}
