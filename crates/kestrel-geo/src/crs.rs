//! Coordinate reference systems: identify them (EPSG code or WKT), and transform
//! coordinates between them, in pure Rust (`proj4rs`), with degrees on the outside.

use crate::error::{GeoError, Result};
use proj4rs::proj::Proj;
use serde::Serialize;

/// A coordinate reference system, known by an EPSG code, a WKT text, or both.
#[derive(Clone, Debug, Serialize)]
pub struct Crs {
    /// EPSG code, when the CRS is (or declares itself) a registered one.
    pub epsg: Option<u32>,
    /// Human-readable name, e.g. "WGS 84 / UTM zone 17N".
    pub name: String,
    /// The WKT the CRS came from, when it came from one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wkt: Option<String>,
    /// PROJ.4 definition used for transformations.
    pub proj4: String,
}

/// EPSG:4326, longitude/latitude in degrees on WGS84.
pub const WGS84_EPSG: u32 = 4326;

impl Crs {
    /// The CRS registered under this EPSG code.
    pub fn from_epsg(code: u32) -> Result<Self> {
        let def = u16::try_from(code)
            .ok()
            .and_then(crs_definitions::from_code)
            .ok_or_else(|| GeoError::Crs(format!("unknown EPSG code {code}")))?;
        Ok(Crs {
            epsg: Some(code),
            name: wkt_name(def.wkt).unwrap_or_else(|| format!("EPSG:{code}")),
            wkt: None,
            proj4: def.proj4.to_string(),
        })
    }

    pub fn wgs84() -> Self {
        Self::from_epsg(WGS84_EPSG).expect("EPSG:4326 is always defined")
    }

    /// A CRS from WKT (version 1 or 2). The EPSG code is taken from the WKT's top-level
    /// AUTHORITY/ID when present; otherwise the WKT is converted to a PROJ definition.
    pub fn from_wkt(wkt: &str) -> Result<Self> {
        let wkt = wkt.trim().trim_end_matches('\0').trim();
        if wkt.is_empty() {
            return Err(GeoError::Crs("empty WKT".into()));
        }
        let name = wkt_name(wkt).unwrap_or_else(|| "unnamed CRS".into());
        if let Some(code) = wkt_top_level_epsg(wkt) {
            if let Ok(mut crs) = Self::from_epsg(code) {
                crs.wkt = Some(wkt.to_string());
                crs.name = name;
                return Ok(crs);
            }
        }
        let proj4 = proj4wkt::wkt_to_projstring(wkt)
            .map_err(|e| GeoError::Crs(format!("cannot interpret WKT \"{name}\": {e}")))?;
        // Validate now so that a CRS we cannot use fails where it is read, not later.
        Proj::from_proj_string(&proj4)
            .map_err(|e| GeoError::Crs(format!("unsupported CRS \"{name}\" ({proj4}): {e}")))?;
        Ok(Crs {
            epsg: None,
            name,
            wkt: Some(wkt.to_string()),
            proj4,
        })
    }

    /// Parses "EPSG:1234", a bare code, a PROJ string ("+proj=…") or WKT.
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim();
        if let Some(code) = t
            .strip_prefix("EPSG:")
            .or_else(|| t.strip_prefix("epsg:"))
            .or(Some(t))
            .and_then(|c| c.parse::<u32>().ok())
        {
            return Self::from_epsg(code);
        }
        if t.starts_with('+') {
            Proj::from_proj_string(t).map_err(|e| GeoError::Crs(format!("{t}: {e}")))?;
            return Ok(Crs {
                epsg: None,
                name: t.to_string(),
                wkt: None,
                proj4: t.to_string(),
            });
        }
        Self::from_wkt(t)
    }

    fn proj(&self) -> Result<Proj> {
        Proj::from_proj_string(&self.proj4)
            .map_err(|e| GeoError::Crs(format!("{}: {e}", self.name)))
    }

    /// True when coordinates are longitude/latitude in degrees.
    pub fn is_geographic(&self) -> bool {
        self.proj().map(|p| p.is_latlong()).unwrap_or(false)
    }

    /// Metres per unit of the horizontal axes (1 for metres, 0.3048 for feet); `None` for
    /// geographic CRSs, whose units (degrees) have no fixed length.
    pub fn linear_unit_m(&self) -> Option<f64> {
        let p = self.proj().ok()?;
        if p.is_latlong() {
            None
        } else {
            Some(p.to_meter())
        }
    }

    /// "EPSG:32617" when the code is known, else the name.
    pub fn label(&self) -> String {
        match self.epsg {
            Some(c) => format!("EPSG:{c}"),
            None => self.name.clone(),
        }
    }

    /// WKT for writers that need one (GeoPackage, `.prj`): the original WKT, or the
    /// registry's WKT for the EPSG code.
    pub fn to_wkt(&self) -> Option<String> {
        self.wkt.clone().or_else(|| {
            self.epsg
                .and_then(|c| u16::try_from(c).ok())
                .and_then(crs_definitions::from_code)
                .map(|d| d.wkt.to_string())
        })
    }
}

/// Transforms coordinates from one CRS to another. Geographic coordinates are in degrees
/// (x = longitude, y = latitude) on both sides.
pub struct CrsTransform {
    src: Proj,
    dst: Proj,
    identity: bool,
}

impl CrsTransform {
    pub fn new(src: &Crs, dst: &Crs) -> Result<Self> {
        Ok(CrsTransform {
            identity: src.proj4 == dst.proj4,
            src: src.proj()?,
            dst: dst.proj()?,
        })
    }

    /// Transform one point.
    pub fn apply(&self, x: f64, y: f64) -> Result<(f64, f64)> {
        if self.identity {
            return Ok((x, y));
        }
        let mut p = if self.src.is_latlong() {
            (x.to_radians(), y.to_radians(), 0.0)
        } else {
            (x, y, 0.0)
        };
        proj4rs::transform::transform(&self.src, &self.dst, &mut p)
            .map_err(|e| GeoError::Crs(format!("cannot transform ({x}, {y}): {e}")))?;
        if self.dst.is_latlong() {
            Ok((p.0.to_degrees(), p.1.to_degrees()))
        } else {
            Ok((p.0, p.1))
        }
    }

    /// Transform points in place.
    pub fn apply_all(&self, points: &mut [(f64, f64)]) -> Result<()> {
        for p in points.iter_mut() {
            *p = self.apply(p.0, p.1)?;
        }
        Ok(())
    }
}

/// The name of the WKT's root node: `PROJCS["name", …]` → name.
fn wkt_name(wkt: &str) -> Option<String> {
    let start = wkt.find('"')? + 1;
    let end = start + wkt[start..].find('"')?;
    Some(wkt[start..end].to_string())
}

/// The EPSG code of the WKT's root (AUTHORITY["EPSG","n"] or ID["EPSG",n] directly inside
/// the outermost brackets), ignoring those of nested datums, units and axes.
fn wkt_top_level_epsg(wkt: &str) -> Option<u32> {
    let bytes = wkt.as_bytes();
    let mut depth = 0usize;
    let mut in_quotes = false;
    let mut found = None;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'[' | b'(' if !in_quotes => {
                if depth == 1 {
                    let head = wkt[..i].trim_end();
                    // Byte position after the last non-keyword character (which may be
                    // multi-byte in malformed WKT).
                    let kw_start = head
                        .char_indices()
                        .rev()
                        .find(|&(_, c)| !c.is_ascii_alphanumeric() && c != '_')
                        .map(|(p, c)| p + c.len_utf8())
                        .unwrap_or(0);
                    let kw = &head[kw_start..];
                    if kw.eq_ignore_ascii_case("AUTHORITY") || kw.eq_ignore_ascii_case("ID") {
                        let rest = &wkt[i + 1..];
                        let end = rest.find([']', ')'])?;
                        let mut parts = rest[..end].split(',').map(|s| s.trim().trim_matches('"'));
                        if parts.next()?.eq_ignore_ascii_case("EPSG") {
                            found = parts.next().and_then(|c| c.parse().ok());
                        }
                    }
                }
                depth += 1;
            }
            b']' | b')' if !in_quotes => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utm_17n_round_trips_through_wgs84() {
        let utm = Crs::from_epsg(32617).unwrap();
        let to_ll = CrsTransform::new(&utm, &Crs::wgs84()).unwrap();
        let (lon, lat) = to_ll.apply(500_000.0, 0.0).unwrap();
        assert!(
            (lon - -81.0).abs() < 1e-9,
            "central meridian of zone 17 is 81°W, got {lon}"
        );
        assert!(lat.abs() < 1e-9);
        let back = CrsTransform::new(&Crs::wgs84(), &utm).unwrap();
        let (x, y) = back.apply(-80.5, 29.7).unwrap();
        let (lon2, lat2) = to_ll.apply(x, y).unwrap();
        assert!((lon2 + 80.5).abs() < 1e-9 && (lat2 - 29.7).abs() < 1e-9);
    }

    #[test]
    fn web_mercator_matches_closed_form() {
        let t = CrsTransform::new(&Crs::wgs84(), &Crs::from_epsg(3857).unwrap()).unwrap();
        let (x, y) = t.apply(10.0, 45.0).unwrap();
        let r = 6378137.0_f64;
        assert!((x - r * 10f64.to_radians()).abs() < 1e-3);
        let y_expected = r
            * (std::f64::consts::FRAC_PI_4 + 45f64.to_radians() / 2.0)
                .tan()
                .ln();
        assert!((y - y_expected).abs() < 1e-3);
    }

    #[test]
    fn top_level_authority_is_not_confused_with_nested_ones() {
        let wkt = r#"PROJCS["X",GEOGCS["G",AUTHORITY["EPSG","4326"]],UNIT["foot",0.3048,AUTHORITY["EPSG","9002"]]]"#;
        assert_eq!(wkt_top_level_epsg(wkt), None);
        let wkt = r#"PROJCS["RGF93 / Lambert-93",GEOGCS["RGF93",AUTHORITY["EPSG","4171"]],AUTHORITY["EPSG","2154"]]"#;
        assert_eq!(wkt_top_level_epsg(wkt), Some(2154));
        let wkt2 = r#"PROJCRS["RGF93 v1 / Lambert-93",BASEGEOGCRS["RGF93 v1",ID["EPSG",4171]],ID["EPSG",2154]]"#;
        assert_eq!(wkt_top_level_epsg(wkt2), Some(2154));
    }

    #[test]
    fn wkt_without_code_in_feet_is_converted() {
        let wkt = r#"PROJCS["NAD_1983_HARN_Lambert_Conformal_Conic",GEOGCS["GCS_North_American_1983_HARN",DATUM["NAD83_High_Accuracy_Regional_Network",SPHEROID["GRS_1980",6378137,298.257222101,AUTHORITY["EPSG","7019"]],AUTHORITY["EPSG","6152"]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Lambert_Conformal_Conic_2SP"],PARAMETER["standard_parallel_1",43],PARAMETER["standard_parallel_2",45.5],PARAMETER["latitude_of_origin",41.75],PARAMETER["central_meridian",-120.5],PARAMETER["false_easting",1312335.958005249],PARAMETER["false_northing",0],UNIT["foot",0.3048,AUTHORITY["EPSG","9002"]]]"#;
        let crs = Crs::from_wkt(wkt).unwrap();
        assert_eq!(crs.epsg, None);
        assert!(
            (crs.linear_unit_m().unwrap() - 0.3048).abs() < 1e-9,
            "{}",
            crs.proj4
        );
        // The same projection is registered as EPSG:2994; both must agree on Autzen (Eugene, OR).
        let a = CrsTransform::new(&crs, &Crs::wgs84()).unwrap();
        let b = CrsTransform::new(&Crs::from_epsg(2994).unwrap(), &Crs::wgs84()).unwrap();
        let (lon_a, lat_a) = a.apply(637_000.0, 850_000.0).unwrap();
        let (lon_b, lat_b) = b.apply(637_000.0, 850_000.0).unwrap();
        assert!((lon_a - lon_b).abs() < 1e-6 && (lat_a - lat_b).abs() < 1e-6);
        assert!(
            (lon_a + 123.07).abs() < 0.1 && (lat_a - 44.06).abs() < 0.1,
            "{lon_a} {lat_a}"
        );
    }

    #[test]
    fn wkt_with_multibyte_characters_does_not_panic() {
        assert_eq!(
            wkt_top_level_epsg("PROJCS[\"é\",é[1],AUTHORITY[\"EPSG\",\"2154\"]]"),
            Some(2154)
        );
        assert!(Crs::from_wkt("PROJCS[\"x\",\u{00e9}\u{00e9}[\"EPSG\",\"1\"]]").is_err());
    }

    #[test]
    fn unknown_epsg_is_an_error_not_a_panic() {
        assert!(Crs::from_epsg(99999).is_err());
        assert!(Crs::parse("not a crs").is_err());
    }
}
