//! GeoPackage (OGC 12-128r18, version 1.3) writing with SQLite, and summarizing.

use super::{closed_ccw_ring, Feature, LayerInfo, VectorInfo};
use crate::crs::Crs;
use crate::error::{GeoError, Result};
use rusqlite::{params, Connection};
use std::path::Path;

/// SRS id used for a CRS that has no EPSG code (organization "NONE").
const CUSTOM_SRS_ID: i64 = 100_000;

/// Writes `features` as layer `layer` of a new GeoPackage at `path` (replacing any file
/// there), in `crs` (`None`: undefined Cartesian coordinates, e.g. pixels).
pub fn write_geopackage(
    path: impl AsRef<Path>,
    layer: &str,
    features: &[Feature],
    crs: Option<&Crs>,
) -> Result<()> {
    let path = path.as_ref();
    let err = |e: rusqlite::Error| GeoError::write(path, e);
    if path.exists() {
        std::fs::remove_file(path).map_err(|e| GeoError::io(path, e))?;
    }
    let mut db = Connection::open(path).map_err(err)?;
    db.execute_batch(
        "PRAGMA application_id = 1196444487; PRAGMA user_version = 10300;
         CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY,
           organization TEXT NOT NULL, organization_coordsys_id INTEGER NOT NULL,
           definition TEXT NOT NULL, description TEXT);
         CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL,
           identifier TEXT UNIQUE, description TEXT DEFAULT '',
           last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
           min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
           CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id));
         CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL, column_name TEXT NOT NULL,
           geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
           CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
           CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
           CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id));
         INSERT INTO gpkg_spatial_ref_sys VALUES
           ('Undefined cartesian SRS', -1, 'NONE', -1, 'undefined', 'undefined cartesian coordinate reference system'),
           ('Undefined geographic SRS', 0, 'NONE', 0, 'undefined', 'undefined geographic coordinate reference system');",
    )
    .map_err(err)?;
    let wgs84_wkt = Crs::wgs84().to_wkt().unwrap_or_default();
    db.execute(
        "INSERT INTO gpkg_spatial_ref_sys VALUES ('WGS 84 geodetic', 4326, 'EPSG', 4326, ?1, 'longitude/latitude')",
        params![wgs84_wkt],
    )
    .map_err(err)?;
    let srs_id = match crs {
        None => -1,
        Some(c) => {
            let (id, org, org_id) = match c.epsg {
                Some(code) => (i64::from(code), "EPSG", i64::from(code)),
                None => (CUSTOM_SRS_ID, "NONE", CUSTOM_SRS_ID),
            };
            if id != 4326 {
                db.execute(
                    "INSERT INTO gpkg_spatial_ref_sys VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
                    params![
                        c.name,
                        id,
                        org,
                        org_id,
                        c.to_wkt().unwrap_or_else(|| "undefined".into())
                    ],
                )
                .map_err(err)?;
            }
            id
        }
    };

    // Attribute columns from the union of all features' properties, typed by first value.
    let mut columns: Vec<(String, &'static str)> = Vec::new();
    for f in features {
        for (k, v) in &f.properties {
            if k.eq_ignore_ascii_case("fid")
                || k.eq_ignore_ascii_case("geom")
                || columns.iter().any(|(c, _)| c == k)
            {
                continue;
            }
            let t = match v {
                serde_json::Value::Bool(_) => "BOOLEAN",
                serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => "INTEGER",
                serde_json::Value::Number(_) => "REAL",
                _ => "TEXT",
            };
            columns.push((k.clone(), t));
        }
    }
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let col_defs: String = columns
        .iter()
        .map(|(c, t)| format!(", {} {t}", quote(c)))
        .collect();
    let tx = db.transaction().map_err(err)?;
    tx.execute_batch(&format!(
        "CREATE TABLE {} (fid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, geom POLYGON{col_defs});",
        quote(layer)
    ))
    .map_err(err)?;
    let placeholders: String = (0..columns.len())
        .map(|i| format!(", ?{}", i + 2))
        .collect();
    let names: String = columns
        .iter()
        .map(|(c, _)| format!(", {}", quote(c)))
        .collect();
    let mut bounds = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    {
        let mut stmt = tx
            .prepare(&format!(
                "INSERT INTO {} (geom{names}) VALUES (?1{placeholders})",
                quote(layer)
            ))
            .map_err(err)?;
        for f in features {
            let ring = closed_ccw_ring(&f.ring);
            for &(x, y) in &ring {
                bounds[0] = bounds[0].min(x);
                bounds[1] = bounds[1].min(y);
                bounds[2] = bounds[2].max(x);
                bounds[3] = bounds[3].max(y);
            }
            let mut values: Vec<rusqlite::types::Value> =
                vec![polygon_blob(&ring, srs_id as i32).into()];
            for (c, _) in &columns {
                values.push(match f.properties.get(c) {
                    None | Some(serde_json::Value::Null) => rusqlite::types::Value::Null,
                    Some(serde_json::Value::Bool(b)) => i64::from(*b).into(),
                    Some(serde_json::Value::Number(n)) => match n.as_i64() {
                        Some(i) => i.into(),
                        None => n.as_f64().unwrap_or(f64::NAN).into(),
                    },
                    Some(serde_json::Value::String(s)) => s.clone().into(),
                    Some(other) => other.to_string().into(),
                });
            }
            stmt.execute(rusqlite::params_from_iter(values))
                .map_err(err)?;
        }
    }
    let (min_x, min_y, max_x, max_y) = if bounds[0].is_finite() {
        (
            Some(bounds[0]),
            Some(bounds[1]),
            Some(bounds[2]),
            Some(bounds[3]),
        )
    } else {
        (None, None, None, None)
    };
    tx.execute(
        "INSERT INTO gpkg_contents (table_name, data_type, identifier, min_x, min_y, max_x, max_y, srs_id)
         VALUES (?1, 'features', ?1, ?2, ?3, ?4, ?5, ?6)",
        params![layer, min_x, min_y, max_x, max_y, srs_id],
    )
    .map_err(err)?;
    tx.execute(
        "INSERT INTO gpkg_geometry_columns VALUES (?1, 'geom', 'POLYGON', ?2, 0, 0)",
        params![layer, srs_id],
    )
    .map_err(err)?;
    tx.commit().map_err(err)
}

/// GeoPackage geometry blob: "GP" header with an xy envelope, then little-endian WKB.
fn polygon_blob(ring: &[(f64, f64)], srs_id: i32) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + 32 + 13 + ring.len() * 16);
    b.extend_from_slice(b"GP");
    b.push(0); // version 1
    b.push(0b0000_0011); // envelope [minx, maxx, miny, maxy], little endian
    b.extend_from_slice(&srs_id.to_le_bytes());
    let (mut minx, mut miny, mut maxx, mut maxy) = (
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in ring {
        minx = minx.min(x);
        miny = miny.min(y);
        maxx = maxx.max(x);
        maxy = maxy.max(y);
    }
    for v in [minx, maxx, miny, maxy] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.push(1); // WKB little endian
    b.extend_from_slice(&3u32.to_le_bytes()); // Polygon
    b.extend_from_slice(&1u32.to_le_bytes()); // one ring
    b.extend_from_slice(&(ring.len() as u32).to_le_bytes());
    for &(x, y) in ring {
        b.extend_from_slice(&x.to_le_bytes());
        b.extend_from_slice(&y.to_le_bytes());
    }
    b
}

/// Layers, feature counts, geometry types, CRS and bounds of a GeoPackage.
pub fn describe_geopackage(path: impl AsRef<Path>) -> Result<VectorInfo> {
    let path = path.as_ref();
    let bad = |e: rusqlite::Error| GeoError::Unsupported {
        path: path.display().to_string(),
        problem: format!("not a readable GeoPackage: {e}"),
    };
    let db = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(bad)?;
    let mut stmt = db
        .prepare(
            "SELECT c.table_name, g.geometry_type_name, s.organization, s.organization_coordsys_id, s.srs_name,
                    c.min_x, c.min_y, c.max_x, c.max_y
             FROM gpkg_contents c JOIN gpkg_geometry_columns g ON g.table_name = c.table_name
             LEFT JOIN gpkg_spatial_ref_sys s ON s.srs_id = g.srs_id WHERE c.data_type = 'features'",
        )
        .map_err(bad)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<String>>(4)?,
                [r.get::<_, Option<f64>>(5)?, r.get(6)?, r.get(7)?, r.get(8)?],
            ))
        })
        .map_err(bad)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(bad)?;
    let mut layers = Vec::new();
    for (name, gtype, org, org_id, srs_name, b) in rows {
        let features: i64 = db
            .query_row(
                &format!("SELECT count(*) FROM \"{}\"", name.replace('"', "\"\"")),
                [],
                |r| r.get(0),
            )
            .map_err(bad)?;
        let crs = match (org.as_deref(), org_id) {
            (Some(o), Some(id)) if o.eq_ignore_ascii_case("EPSG") => Some(format!("EPSG:{id}")),
            _ => srs_name,
        };
        layers.push(LayerInfo {
            name,
            features: features.max(0) as u64,
            geometry_types: vec![gtype],
            crs,
            bounds: match b {
                [Some(a), Some(c), Some(d), Some(e)] => Some([a, c, d, e]),
                _ => None,
            },
        });
    }
    Ok(VectorInfo {
        path: path.display().to_string(),
        format: "GeoPackage",
        layers,
    })
}
