//! The project store: one folder holding an SQLite database (WAL journal) of images, classes
//! and samples. Every write is one transaction, so a crash — even `kill -9` — leaves either
//! the state before it or after it, never half of it. This is the one place that speaks SQL;
//! the server and the CLI use this API.

use crate::sample::{HeadingMode, Origin, Polarity, Sample, Shape};
use kestrel_geo::{Georef, RasterInfo};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File name of the database inside a project folder.
pub const DB_FILE: &str = "kestrel.sqlite";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{0}: not a Kestrel project (no {DB_FILE}); create it with `kestrel project init`")]
    NotAProject(String),
    #[error("{path}: project schema version {found} is newer than this Kestrel understands ({supported})")]
    TooNew {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: String },
    #[error("sample {id} was changed by someone else (version {actual}, you edited version {expected}); reload it")]
    Conflict { id: i64, expected: i64, actual: i64 },
    #[error("invalid {what}: {problem}")]
    Invalid { what: &'static str, problem: String },
    #[error(transparent)]
    Geo(#[from] kestrel_geo::GeoError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: images, classes, samples.
    "CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        uri TEXT NOT NULL UNIQUE,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        bands INTEGER NOT NULL,
        data_type TEXT NOT NULL,
        crs TEXT,
        epsg INTEGER,
        geotransform TEXT,
        gsd_m REAL,
        gsd_source TEXT NOT NULL,
        band_stats TEXT,
        added_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE TABLE classes (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        heading_mode TEXT NOT NULL CHECK (heading_mode IN ('directed','axis')),
        color TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        class_id INTEGER NOT NULL REFERENCES classes(id) ON DELETE RESTRICT,
        polarity TEXT NOT NULL CHECK (polarity IN ('positive','negative')),
        shape TEXT NOT NULL,
        cx REAL NOT NULL,
        cy REAL NOT NULL,
        map_polygon TEXT,
        heading_mode TEXT NOT NULL CHECK (heading_mode IN ('directed','axis')),
        origin TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE INDEX samples_by_image ON samples(image_id);
    CREATE INDEX samples_by_class ON samples(class_id, polarity);",
    // 2: detections awaiting review, and what the review made of them.
    "CREATE TABLE detections (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        class_id INTEGER NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
        model_id TEXT NOT NULL,
        shape TEXT NOT NULL,
        score REAL NOT NULL,
        match_score REAL,
        status TEXT NOT NULL CHECK (status IN ('pending','accepted','rejected')),
        sample_id INTEGER REFERENCES samples(id) ON DELETE SET NULL,
        version INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE INDEX detections_by_image ON detections(image_id, status);",
    // 3: sample ids never come back after a delete (AUTOINCREMENT), so that a page holding
    // an old id can never edit another sample by it. SQLite's recipe: a new table, the rows
    // copied, the old one dropped (foreign keys are off while migrating).
    "CREATE TABLE samples_v3 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        class_id INTEGER NOT NULL REFERENCES classes(id) ON DELETE RESTRICT,
        polarity TEXT NOT NULL CHECK (polarity IN ('positive','negative')),
        shape TEXT NOT NULL,
        cx REAL NOT NULL,
        cy REAL NOT NULL,
        map_polygon TEXT,
        heading_mode TEXT NOT NULL CHECK (heading_mode IN ('directed','axis')),
        origin TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    INSERT INTO samples_v3 (id, image_id, class_id, polarity, shape, cx, cy, map_polygon, heading_mode, origin, version, created_at, updated_at)
        SELECT id, image_id, class_id, polarity, shape, cx, cy, map_polygon, heading_mode, origin, version, created_at, updated_at FROM samples;
    DROP TABLE samples;
    ALTER TABLE samples_v3 RENAME TO samples;
    CREATE INDEX samples_by_image ON samples(image_id);
    CREATE INDEX samples_by_class ON samples(class_id, polarity);",
    // 4: a point cloud of the same place as an image (for the 3D view and height layers).
    "CREATE TABLE clouds (
        image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
        uri TEXT NOT NULL
    );",
];

/// An image registered in a project.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: i64,
    /// Path (absolute) or URL.
    pub uri: String,
    pub width: u32,
    pub height: u32,
    pub bands: u16,
    pub data_type: String,
    /// "EPSG:32617" or the CRS's WKT/PROJ text; `None` for pixel-only images.
    pub crs: Option<String>,
    pub epsg: Option<u32>,
    pub geotransform: Option<[f64; 6]>,
    /// Ground sample distance in metres, from the georeferencing or given by the user.
    pub gsd_m: Option<f64>,
    /// "georeferencing" or "user".
    pub gsd_source: String,
    pub added_at: String,
}

impl ImageRecord {
    /// The image's georeferencing, rebuilt from the stored transform and CRS.
    pub fn georef(&self) -> Result<Option<Georef>> {
        let Some(t) = self.geotransform else {
            return Ok(None);
        };
        let crs = match &self.crs {
            Some(c) => Some(kestrel_geo::Crs::parse(c)?),
            None => None,
        };
        Ok(Some(Georef {
            transform: kestrel_geo::GeoTransform(t),
            crs,
        }))
    }
}

/// An object class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassRecord {
    pub id: i64,
    pub name: String,
    pub heading_mode: HeadingMode,
    /// CSS colour, e.g. "#e6194b".
    pub color: String,
}

/// A sample to be inserted.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSample {
    pub image_id: i64,
    pub class_id: i64,
    pub polarity: Polarity,
    pub shape: Shape,
    /// `None`: the class's heading mode.
    pub heading_mode: Option<HeadingMode>,
    pub origin: Origin,
}

/// Where a detection stands in review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    Pending,
    Accepted,
    Rejected,
}

/// A detection kept for review; accepting or rejecting it makes a sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetectionRecord {
    pub id: i64,
    pub image_id: i64,
    pub class_id: i64,
    /// The model package's id (its file stem in the project's `models/`).
    pub model_id: String,
    /// An oriented box in image pixels.
    pub shape: Shape,
    pub score: f64,
    pub match_score: Option<f64>,
    pub status: ReviewStatus,
    /// The sample the review created.
    pub sample_id: Option<i64>,
    pub version: i64,
    pub created_at: String,
}

/// A detection to be stored.
#[derive(Clone, Debug, PartialEq)]
pub struct NewDetection {
    pub class_id: i64,
    pub shape: Shape,
    pub score: f64,
    pub match_score: Option<f64>,
}

/// Which detections to list.
#[derive(Clone, Debug, Default)]
pub struct DetectionFilter {
    pub image_id: Option<i64>,
    pub status: Option<ReviewStatus>,
    pub min_score: Option<f64>,
}

/// Which samples to list.
#[derive(Clone, Debug, Default)]
pub struct SampleFilter {
    pub image_id: Option<i64>,
    pub class_id: Option<i64>,
    pub polarity: Option<Polarity>,
}

/// An open project.
pub struct Project {
    dir: PathBuf,
    db: Connection,
}

/// Distinct colours for new classes (Kelly/Trubetskoy palette).
const PALETTE: &[&str] = &[
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
    "#bcf60c", "#fabebe",
];

fn enum_text<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| j.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn enum_from<T: for<'de> Deserialize<'de>>(s: &str) -> rusqlite::Result<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl Project {
    /// Creates the project folder and its database, or opens it if it exists.
    pub fn create(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| kestrel_geo::GeoError::io(dir, e))?;
        Self::connect(dir)
    }

    /// Opens an existing project.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.join(DB_FILE).is_file() {
            return Err(StoreError::NotAProject(dir.display().to_string()));
        }
        Self::connect(dir)
    }

    fn connect(dir: &Path) -> Result<Self> {
        let path = dir.join(DB_FILE);
        let err = |source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let db = Connection::open(&path).map_err(err)?;
        // WAL: readers never block the writer and a crash cannot corrupt committed data;
        // synchronous=FULL makes every commit durable before it returns.
        db.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        db.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        db.pragma_update(None, "foreign_keys", "ON").map_err(err)?;
        db.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        let mut project = Project {
            dir: dir.to_path_buf(),
            db,
        };
        project.migrate()?;
        Ok(project)
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.dir.join(DB_FILE).display().to_string(),
            source,
        }
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i64 = self
            .db
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::TooNew {
                path: self.dir.display().to_string(),
                found: version,
                supported,
            });
        }
        // Table rebuilds must not fire foreign-key actions (dropping the old samples table
        // would null every detection's sample_id); the pragma only works outside a
        // transaction.
        self.db
            .pragma_update(None, "foreign_keys", "OFF")
            .map_err(|e| self.err(e))?;
        let mut result = Ok(());
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            result = self
                .db
                .transaction()
                .and_then(|tx| {
                    tx.execute_batch(sql)?;
                    tx.pragma_update(None, "user_version", (i + 1) as i64)?;
                    tx.commit()
                })
                .map_err(|e| StoreError::Sqlite {
                    path: self.dir.display().to_string(),
                    source: e,
                });
            if result.is_err() {
                break;
            }
        }
        self.db
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| self.err(e))?;
        result
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Registers an image (or returns the existing record for the same URI). `gsd_m`
    /// overrides or supplies the ground sample distance (required for images without
    /// georeferencing, whose GSD cannot be told).
    pub fn add_image(
        &mut self,
        uri: &str,
        info: &RasterInfo,
        gsd_m: Option<f64>,
    ) -> Result<ImageRecord> {
        if let Some(existing) = self.image_by_uri(uri)? {
            return Ok(existing);
        }
        let crs = info.georef.as_ref().and_then(|g| g.crs.as_ref());
        let (gsd, source) = match (gsd_m, info.gsd_xy_m()) {
            (Some(g), _) if g > 0.0 && g.is_finite() => (Some(g), "user"),
            (Some(g), _) => {
                return Err(StoreError::Invalid {
                    what: "ground sample distance",
                    problem: format!("{g} m is not positive"),
                })
            }
            (None, Some((x, y))) => (Some((x * y).sqrt()), "georeferencing"),
            (None, None) => (None, "unknown"),
        };
        let crs_text = crs.map(|c| match c.epsg {
            Some(code) => format!("EPSG:{code}"),
            None => c.to_wkt().unwrap_or_else(|| c.proj4.clone()),
        });
        let gt = info
            .georef
            .as_ref()
            .map(|g| serde_json::to_string(&g.transform.0).unwrap_or_default());
        self.db
            .execute(
                "INSERT INTO images (uri, width, height, bands, data_type, crs, epsg, geotransform, gsd_m, gsd_source)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![uri, info.width, info.height, info.bands, info.data_type.name(), crs_text, crs.and_then(|c| c.epsg), gt, gsd, source],
            )
            .map_err(|e| self.err(e))?;
        let id = self.db.last_insert_rowid();
        self.image(id)
    }

    const IMAGE_COLUMNS: &'static str = "id, uri, width, height, bands, data_type, crs, epsg, geotransform, gsd_m, gsd_source, added_at";

    fn image_from_row(r: &rusqlite::Row) -> rusqlite::Result<ImageRecord> {
        let gt: Option<String> = r.get(8)?;
        Ok(ImageRecord {
            id: r.get(0)?,
            uri: r.get(1)?,
            width: r.get(2)?,
            height: r.get(3)?,
            bands: r.get(4)?,
            data_type: r.get(5)?,
            crs: r.get(6)?,
            epsg: r.get(7)?,
            geotransform: gt.and_then(|t| serde_json::from_str(&t).ok()),
            gsd_m: r.get(9)?,
            gsd_source: r.get(10)?,
            added_at: r.get(11)?,
        })
    }

    pub fn image(&self, id: i64) -> Result<ImageRecord> {
        self.db
            .query_row(
                &format!("SELECT {} FROM images WHERE id = ?1", Self::IMAGE_COLUMNS),
                [id],
                Self::image_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or(StoreError::NotFound {
                what: "image",
                id: id.to_string(),
            })
    }

    pub fn image_by_uri(&self, uri: &str) -> Result<Option<ImageRecord>> {
        self.db
            .query_row(
                &format!("SELECT {} FROM images WHERE uri = ?1", Self::IMAGE_COLUMNS),
                [uri],
                Self::image_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let mut stmt = self
            .db
            .prepare(&format!(
                "SELECT {} FROM images ORDER BY id",
                Self::IMAGE_COLUMNS
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], Self::image_from_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Stores an image's band statistics (JSON, e.g. the colour normalization's quantiles).
    pub fn set_image_band_stats(&mut self, image_id: i64, stats: &serde_json::Value) -> Result<()> {
        let n = self
            .db
            .execute(
                "UPDATE images SET band_stats = ?2 WHERE id = ?1",
                params![image_id, stats.to_string()],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "image",
                id: image_id.to_string(),
            });
        }
        Ok(())
    }

    /// An image's stored band statistics, if any.
    pub fn image_band_stats(&self, image_id: i64) -> Result<Option<serde_json::Value>> {
        let text: Option<String> = self
            .db
            .query_row(
                "SELECT band_stats FROM images WHERE id = ?1",
                [image_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or(StoreError::NotFound {
                what: "image",
                id: image_id.to_string(),
            })?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Creates a class, or returns the existing one of that name.
    pub fn add_class(&mut self, name: &str, heading_mode: HeadingMode) -> Result<ClassRecord> {
        let name = name.trim();
        if name.is_empty() {
            return Err(StoreError::Invalid {
                what: "class name",
                problem: "empty".into(),
            });
        }
        if let Some(c) = self.class_by_name(name)? {
            return Ok(c);
        }
        let n: i64 = self
            .db
            .query_row("SELECT count(*) FROM classes", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let color = PALETTE[n as usize % PALETTE.len()];
        self.db
            .execute(
                "INSERT INTO classes (name, heading_mode, color) VALUES (?1, ?2, ?3)",
                params![name, enum_text(&heading_mode), color],
            )
            .map_err(|e| self.err(e))?;
        Ok(ClassRecord {
            id: self.db.last_insert_rowid(),
            name: name.to_string(),
            heading_mode,
            color: color.to_string(),
        })
    }

    fn class_from_row(r: &rusqlite::Row) -> rusqlite::Result<ClassRecord> {
        Ok(ClassRecord {
            id: r.get(0)?,
            name: r.get(1)?,
            heading_mode: enum_from(&r.get::<_, String>(2)?)?,
            color: r.get(3)?,
        })
    }

    pub fn class_by_name(&self, name: &str) -> Result<Option<ClassRecord>> {
        self.db
            .query_row(
                "SELECT id, name, heading_mode, color FROM classes WHERE name = ?1",
                [name],
                Self::class_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn class(&self, id: i64) -> Result<ClassRecord> {
        self.db
            .query_row(
                "SELECT id, name, heading_mode, color FROM classes WHERE id = ?1",
                [id],
                Self::class_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or(StoreError::NotFound {
                what: "class",
                id: id.to_string(),
            })
    }

    pub fn classes(&self) -> Result<Vec<ClassRecord>> {
        let mut stmt = self
            .db
            .prepare("SELECT id, name, heading_mode, color FROM classes ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], Self::class_from_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Inserts samples in one transaction: all of them or none. Returns their ids.
    pub fn add_samples(&mut self, samples: &[NewSample]) -> Result<Vec<i64>> {
        let path = self.dir.join(DB_FILE).display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.db.transaction().map_err(err)?;
        let mut ids = Vec::with_capacity(samples.len());
        for s in samples {
            ids.push(insert_sample(&tx, s)?);
        }
        tx.commit().map_err(err)?;
        Ok(ids)
    }

    const SAMPLE_COLUMNS: &'static str = "id, image_id, class_id, polarity, shape, heading_mode, origin, version, created_at, updated_at";

    fn sample_from_row(r: &rusqlite::Row) -> rusqlite::Result<Sample> {
        let shape: String = r.get(4)?;
        Ok(Sample {
            id: r.get(0)?,
            image_id: r.get(1)?,
            class_id: r.get(2)?,
            polarity: enum_from(&r.get::<_, String>(3)?)?,
            shape: shape_from(&shape)?,
            heading_mode: enum_from(&r.get::<_, String>(5)?)?,
            origin: enum_from(&r.get::<_, String>(6)?)?,
            version: r.get(7)?,
            created_at: r.get(8)?,
            updated_at: r.get(9)?,
        })
    }

    pub fn sample(&self, id: i64) -> Result<Sample> {
        self.row_by_id("sample", &format!("SELECT {} FROM samples WHERE id = ?1", Self::SAMPLE_COLUMNS), id, Self::sample_from_row)
    }

    /// The row `sql` (with `?1` = `id`) selects, or `NotFound` naming `what`.
    fn row_by_id<T>(&self, what: &'static str, sql: &str, id: i64, from_row: fn(&rusqlite::Row) -> rusqlite::Result<T>) -> Result<T> {
        self.db
            .query_row(sql, [id], from_row)
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or(StoreError::NotFound {
                what,
                id: id.to_string(),
            })
    }

    pub fn samples(&self, filter: &SampleFilter) -> Result<Vec<Sample>> {
        let mut stmt = self
            .db
            .prepare(&format!(
                "SELECT {} FROM samples WHERE (?1 IS NULL OR image_id = ?1) AND (?2 IS NULL OR class_id = ?2)
                 AND (?3 IS NULL OR polarity = ?3) ORDER BY id",
                Self::SAMPLE_COLUMNS
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![
                    filter.image_id,
                    filter.class_id,
                    filter.polarity.map(|p| enum_text(&p))
                ],
                Self::sample_from_row,
            )
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Replaces a sample's class, polarity, shape and heading mode, if nobody changed it
    /// since `expected_version` was read. Returns the updated sample.
    pub fn update_sample(
        &mut self,
        id: i64,
        expected_version: i64,
        class_id: i64,
        polarity: Polarity,
        shape: Shape,
        heading_mode: HeadingMode,
    ) -> Result<Sample> {
        validate_shape(&shape)?;
        let path = self.dir.join(DB_FILE).display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.db.transaction().map_err(err)?;
        let (image_id, actual): (i64, i64) = tx
            .query_row(
                "SELECT image_id, version FROM samples WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(err)?
            .ok_or(StoreError::NotFound {
                what: "sample",
                id: id.to_string(),
            })?;
        if actual != expected_version {
            return Err(StoreError::Conflict {
                id,
                expected: expected_version,
                actual,
            });
        }
        let (cx, cy) = shape.centre();
        let map_polygon = map_polygon(&tx, image_id, &shape)?;
        tx.execute(
            "UPDATE samples SET class_id = ?2, polarity = ?3, shape = ?4, cx = ?5, cy = ?6, map_polygon = ?7, heading_mode = ?8,
             version = version + 1, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1",
            params![id, class_id, enum_text(&polarity), serde_json::to_string(&shape).unwrap_or_default(), cx, cy, map_polygon, enum_text(&heading_mode)],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        self.sample(id)
    }

    /// Deletes a sample if nobody changed it since `expected_version` was read.
    pub fn delete_sample(&mut self, id: i64, expected_version: i64) -> Result<()> {
        let actual: i64 = self
            .db
            .query_row("SELECT version FROM samples WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or(StoreError::NotFound {
                what: "sample",
                id: id.to_string(),
            })?;
        if actual != expected_version {
            return Err(StoreError::Conflict {
                id,
                expected: expected_version,
                actual,
            });
        }
        self.db
            .execute(
                "DELETE FROM samples WHERE id = ?1 AND version = ?2",
                params![id, expected_version],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Sets a class's display colour.
    pub fn set_class_color(&mut self, id: i64, color: &str) -> Result<ClassRecord> {
        let ok = color.len() == 7
            && color.starts_with('#')
            && color[1..].chars().all(|c| c.is_ascii_hexdigit());
        if !ok {
            return Err(StoreError::Invalid {
                what: "colour",
                problem: format!("{color:?} is not #rrggbb"),
            });
        }
        let n = self
            .db
            .execute("UPDATE classes SET color = ?2 WHERE id = ?1", params![id, color])
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "class",
                id: id.to_string(),
            });
        }
        self.class(id)
    }

    /// Positive and negative sample counts per class id.
    pub fn sample_counts(&self) -> Result<Vec<(i64, usize, usize)>> {
        let mut stmt = self
            .db
            .prepare(
                "SELECT class_id, sum(polarity = 'positive'), sum(polarity = 'negative') FROM samples GROUP BY class_id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize, r.get::<_, i64>(2)? as usize)))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Replaces the image's pending detections with `detections` of `model_id`, in one
    /// transaction; reviewed detections stay. Returns the new ids.
    pub fn replace_pending_detections(
        &mut self,
        image_id: i64,
        model_id: &str,
        detections: &[NewDetection],
    ) -> Result<Vec<i64>> {
        self.image(image_id)?;
        let path = self.dir.join(DB_FILE).display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.db.transaction().map_err(err)?;
        tx.execute(
            "DELETE FROM detections WHERE image_id = ?1 AND status = 'pending'",
            [image_id],
        )
        .map_err(err)?;
        let mut ids = Vec::with_capacity(detections.len());
        for d in detections {
            validate_shape(&d.shape)?;
            tx.execute(
                "INSERT INTO detections (image_id, class_id, model_id, shape, score, match_score, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')",
                params![image_id, d.class_id, model_id, serde_json::to_string(&d.shape).unwrap_or_default(), d.score, d.match_score],
            )
            .map_err(err)?;
            ids.push(tx.last_insert_rowid());
        }
        tx.commit().map_err(err)?;
        Ok(ids)
    }

    const DETECTION_COLUMNS: &'static str = "id, image_id, class_id, model_id, shape, score, match_score, status, sample_id, version, created_at";

    fn detection_from_row(r: &rusqlite::Row) -> rusqlite::Result<DetectionRecord> {
        let shape: String = r.get(4)?;
        Ok(DetectionRecord {
            id: r.get(0)?,
            image_id: r.get(1)?,
            class_id: r.get(2)?,
            model_id: r.get(3)?,
            shape: shape_from(&shape)?,
            score: r.get(5)?,
            match_score: r.get(6)?,
            status: enum_from(&r.get::<_, String>(7)?)?,
            sample_id: r.get(8)?,
            version: r.get(9)?,
            created_at: r.get(10)?,
        })
    }

    pub fn detection(&self, id: i64) -> Result<DetectionRecord> {
        self.row_by_id("detection", &format!("SELECT {} FROM detections WHERE id = ?1", Self::DETECTION_COLUMNS), id, Self::detection_from_row)
    }

    /// Detections, strongest first.
    pub fn detections(&self, filter: &DetectionFilter) -> Result<Vec<DetectionRecord>> {
        let mut stmt = self
            .db
            .prepare(&format!(
                "SELECT {} FROM detections WHERE (?1 IS NULL OR image_id = ?1) AND (?2 IS NULL OR status = ?2)
                 AND (?3 IS NULL OR score >= ?3) ORDER BY score DESC, id",
                Self::DETECTION_COLUMNS
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![filter.image_id, filter.status.map(|s| enum_text(&s)), filter.min_score],
                Self::detection_from_row,
            )
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Accepts (a positive sample) or rejects (a hard negative) a pending detection, if
    /// nobody reviewed it since `expected_version`: the sample and the new status are
    /// committed together.
    pub fn review_detection(
        &mut self,
        id: i64,
        expected_version: i64,
        accept: bool,
    ) -> Result<(DetectionRecord, Sample)> {
        let d = self.detection(id)?;
        if d.version != expected_version {
            return Err(StoreError::Conflict {
                id,
                expected: expected_version,
                actual: d.version,
            });
        }
        if d.status != ReviewStatus::Pending {
            return Err(StoreError::Invalid {
                what: "review",
                problem: format!("detection {id} is already {}", enum_text(&d.status)),
            });
        }
        let (polarity, origin, status) = if accept {
            (Polarity::Positive, Origin::AcceptedDetection, ReviewStatus::Accepted)
        } else {
            (Polarity::Negative, Origin::RejectedDetection, ReviewStatus::Rejected)
        };
        let path = self.dir.join(DB_FILE).display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.db.transaction().map_err(err)?;
        let sample_id = insert_sample(
            &tx,
            &NewSample {
                image_id: d.image_id,
                class_id: d.class_id,
                polarity,
                shape: d.shape,
                heading_mode: None,
                origin,
            },
        )?;
        tx.execute(
            "UPDATE detections SET status = ?2, sample_id = ?3, version = version + 1 WHERE id = ?1",
            params![id, enum_text(&status), sample_id],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok((self.detection(id)?, self.sample(sample_id)?))
    }

    /// Undoes a review: the detection is pending again and the sample it made is deleted.
    pub fn reset_detection(&mut self, id: i64, expected_version: i64) -> Result<DetectionRecord> {
        let d = self.detection(id)?;
        if d.version != expected_version {
            return Err(StoreError::Conflict {
                id,
                expected: expected_version,
                actual: d.version,
            });
        }
        let path = self.dir.join(DB_FILE).display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.db.transaction().map_err(err)?;
        if let Some(sample) = d.sample_id {
            tx.execute("DELETE FROM samples WHERE id = ?1", [sample])
                .map_err(err)?;
        }
        tx.execute(
            "UPDATE detections SET status = 'pending', sample_id = NULL, version = version + 1 WHERE id = ?1",
            [id],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        self.detection(id)
    }

    /// Attaches (or replaces) the point cloud of an image.
    pub fn attach_cloud(&mut self, image_id: i64, uri: &str) -> Result<()> {
        self.image(image_id)?;
        self.db
            .execute(
                "INSERT INTO clouds (image_id, uri) VALUES (?1, ?2) ON CONFLICT(image_id) DO UPDATE SET uri = excluded.uri",
                params![image_id, uri],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The point cloud attached to an image, if any.
    pub fn image_cloud(&self, image_id: i64) -> Result<Option<String>> {
        self.db
            .query_row("SELECT uri FROM clouds WHERE image_id = ?1", [image_id], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Map-coordinate polygon of a sample (in its image's CRS), as stored.
    pub fn sample_map_polygon(&self, id: i64) -> Result<Option<Vec<(f64, f64)>>> {
        let text: Option<String> = self
            .db
            .query_row("SELECT map_polygon FROM samples WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or(StoreError::NotFound {
                what: "sample",
                id: id.to_string(),
            })?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }
}

/// A stored shape (JSON in column 4 of both samples and detections).
fn shape_from(text: &str) -> rusqlite::Result<Shape> {
    serde_json::from_str(text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e)))
}

fn validate_shape(shape: &Shape) -> Result<()> {
    let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
    let ok = match *shape {
        Shape::AxisBox { cx, cy, w, h } => finite(&[cx, cy, w, h]) && w > 0.0 && h > 0.0,
        Shape::OrientedBox {
            cx,
            cy,
            length,
            width,
            heading_deg,
        } => finite(&[cx, cy, length, width, heading_deg]) && length > 0.0 && width > 0.0,
        Shape::Point { x, y, heading_deg } => {
            finite(&[x, y]) && heading_deg.is_none_or(f64::is_finite)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            what: "sample geometry",
            problem: format!("{shape:?} has a non-finite or non-positive value"),
        })
    }
}

/// The shape's polygon in the image's map coordinates (JSON), when the image is georeferenced.
fn map_polygon(tx: &Transaction, image_id: i64, shape: &Shape) -> Result<Option<String>> {
    let gt: Option<String> = tx
        .query_row(
            "SELECT geotransform FROM images WHERE id = ?1",
            [image_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| StoreError::Sqlite {
            path: "project".into(),
            source: e,
        })?
        .ok_or(StoreError::NotFound {
            what: "image",
            id: image_id.to_string(),
        })?;
    let Some(gt) = gt.and_then(|t| serde_json::from_str::<[f64; 6]>(&t).ok()) else {
        return Ok(None);
    };
    let t = kestrel_geo::GeoTransform(gt);
    let ring: Vec<[f64; 2]> = shape
        .polygon()
        .into_iter()
        .map(|(x, y)| {
            let (mx, my) = t.pixel_to_map(x, y);
            [mx, my]
        })
        .collect();
    Ok(Some(serde_json::to_string(&ring).unwrap_or_default()))
}

fn insert_sample(tx: &Transaction, s: &NewSample) -> Result<i64> {
    validate_shape(&s.shape)?;
    let sql_err = |source| StoreError::Sqlite {
        path: "project".into(),
        source,
    };
    let mode: String = match s.heading_mode {
        Some(m) => enum_text(&m),
        None => tx
            .query_row(
                "SELECT heading_mode FROM classes WHERE id = ?1",
                [s.class_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql_err)?
            .ok_or(StoreError::NotFound {
                what: "class",
                id: s.class_id.to_string(),
            })?,
    };
    let (cx, cy) = s.shape.centre();
    let map_polygon = map_polygon(tx, s.image_id, &s.shape)?;
    tx.execute(
        "INSERT INTO samples (image_id, class_id, polarity, shape, cx, cy, map_polygon, heading_mode, origin)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![s.image_id, s.class_id, enum_text(&s.polarity), serde_json::to_string(&s.shape).unwrap_or_default(), cx, cy, map_polygon, mode, enum_text(&s.origin)],
    )
    .map_err(sql_err)?;
    Ok(tx.last_insert_rowid())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A project made before migration 3 keeps its samples and review links, and from then
    /// on never hands out a deleted sample's id again.
    #[test]
    fn migration_keeps_samples_and_stops_id_reuse() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Connection::open(dir.path().join(DB_FILE)).unwrap();
            db.execute_batch(MIGRATIONS[0]).unwrap();
            db.execute_batch(MIGRATIONS[1]).unwrap();
            db.pragma_update(None, "user_version", 2).unwrap();
            db.execute_batch(
                "INSERT INTO images (uri, width, height, bands, data_type, gsd_source) VALUES ('a.tif', 10, 10, 3, 'u8', 'user');
                 INSERT INTO classes (name, heading_mode, color) VALUES ('car', 'axis', '#ffffff');
                 INSERT INTO samples (image_id, class_id, polarity, shape, cx, cy, heading_mode, origin)
                   VALUES (1, 1, 'positive', '{\"kind\":\"point\",\"x\":1.0,\"y\":2.0,\"heading_deg\":null}', 1, 2, 'axis', 'drawn');
                 INSERT INTO samples (image_id, class_id, polarity, shape, cx, cy, heading_mode, origin)
                   VALUES (1, 1, 'negative', '{\"kind\":\"point\",\"x\":3.0,\"y\":4.0,\"heading_deg\":null}', 3, 4, 'axis', 'drawn');
                 INSERT INTO detections (image_id, class_id, model_id, shape, score, status, sample_id)
                   VALUES (1, 1, 'm', '{\"kind\":\"point\",\"x\":3.0,\"y\":4.0,\"heading_deg\":null}', 0.9, 'rejected', 2);",
            )
            .unwrap();
        }
        let mut p = Project::open(dir.path()).unwrap();
        let all = p.samples(&SampleFilter::default()).unwrap();
        assert_eq!(all.iter().map(|s| s.id).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(p.detection(1).unwrap().sample_id, Some(2), "the review link survived the rebuild");
        p.delete_sample(2, 1).unwrap();
        let point = Shape::Point { x: 5.0, y: 5.0, heading_deg: None };
        let ids = p.add_samples(&[NewSample { image_id: 1, class_id: 1, polarity: Polarity::Positive, shape: point, heading_mode: None, origin: Origin::Drawn }]).unwrap();
        assert_eq!(ids, vec![3], "a deleted sample's id is not reused");
        assert_eq!(p.detection(1).unwrap().sample_id, None, "deleting the sample unlinks its detection");
        let fk: i64 = p.db.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(fk, 1, "foreign keys are back on after migrating");
    }
}
