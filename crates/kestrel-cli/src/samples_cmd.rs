//! `kestrel import`, `kestrel export`, `kestrel chips`: labels into the project store, samples
//! out of it, and normalized chips for a person to check.

use anyhow::{bail, Context, Result};
use kestrel_samples::chips::{build_chips, write_chip_set, ChipOptions};
use kestrel_samples::labels::{detect_format, read_labels, ImageFrame, LabelFormat, LabelRecord};
use kestrel_samples::normalize::HeadingSource;
use kestrel_samples::store::{NewSample, SampleFilter};
use kestrel_samples::{HeadingMode, Origin, Polarity, Project};
use std::path::{Path, PathBuf};

pub struct ImportArgs {
    pub project: PathBuf,
    pub image: PathBuf,
    pub labels: Vec<PathBuf>,
    pub format: Option<String>,
    pub class: Option<String>,
    pub class_names: Option<String>,
    pub only: Option<String>,
    pub gsd: Option<f64>,
    pub negative: bool,
    pub heading_mode: String,
    pub skip_invalid: bool,
}

pub fn import(a: ImportArgs) -> Result<()> {
    let heading_mode = match a.heading_mode.as_str() {
        "axis" => HeadingMode::Axis,
        "directed" => HeadingMode::Directed,
        other => bail!("--heading-mode must be 'axis' or 'directed', not '{other}'"),
    };
    let image_uri = absolute(&a.image)?;
    let src = kestrel_geo::open_raster(&image_uri)?;
    let info = src.info().clone();
    if info.gsd_xy_m().is_none() && a.gsd.is_none() {
        bail!("{}: has no georeferencing to tell its ground sample distance; give it with --gsd METRES", a.image.display());
    }
    let georef = info.georef.clone();
    let file_name = a
        .image
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string);
    let frame = ImageFrame {
        width: info.width,
        height: info.height,
        georef: georef.as_ref(),
        file_name: file_name.as_deref(),
    };
    let class_names: Vec<String> = a
        .class_names
        .as_deref()
        .map(|s| s.split(',').map(|c| c.trim().to_string()).collect())
        .unwrap_or_default();

    let mut records: Vec<LabelRecord> = Vec::new();
    let mut problems = 0;
    for path in &a.labels {
        let format = match &a.format {
            Some(f) => f
                .parse::<LabelFormat>()
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            None => detect_format(path).with_context(|| {
                format!(
                    "{}: cannot tell the label format; give --format",
                    path.display()
                )
            })?,
        };
        let set = read_labels(path, format, &frame, &class_names)
            .map_err(|issue| anyhow::anyhow!("{issue}"))?;
        for issue in &set.issues {
            eprintln!("{issue}");
        }
        problems += set.issues.len();
        records.extend(set.records);
    }
    if problems > 0 && !a.skip_invalid {
        bail!("{problems} label(s) could not be imported (listed above); nothing was stored. Fix them, or pass --skip-invalid to import the rest");
    }
    if let Some(only) = &a.only {
        records.retain(|r| &r.class_name == only);
    }
    let mut project = Project::create(&a.project)?;
    let image = project.add_image(&image_uri, &info, a.gsd)?;
    if project.image_band_stats(image.id)?.is_none() {
        let stats = kestrel_samples::normalize::colour::ColourStats::from_raster(src.as_ref())?;
        project.set_image_band_stats(image.id, &serde_json::to_value(&stats)?)?;
    }
    // Importing the same file twice must not double the samples: skip exact repeats.
    let existing = project.samples(&SampleFilter {
        image_id: Some(image.id),
        ..Default::default()
    })?;
    let mut new = Vec::with_capacity(records.len());
    let mut repeated = 0;
    for r in &records {
        let name = a.class.clone().unwrap_or_else(|| r.class_name.clone());
        let class = project.add_class(&name, heading_mode)?;
        let polarity = if a.negative {
            Polarity::Negative
        } else {
            r.polarity
        };
        if existing
            .iter()
            .any(|s| s.class_id == class.id && s.polarity == polarity && s.shape == r.shape)
        {
            repeated += 1;
            continue;
        }
        new.push(NewSample {
            image_id: image.id,
            class_id: class.id,
            polarity,
            shape: r.shape,
            heading_mode: r.heading_mode,
            origin: Origin::Imported,
        });
    }
    let ids = project.add_samples(&new)?;
    println!(
        "{}: {} samples from {} file(s) into {} (image {}, {:.3} m GSD{}{})",
        a.project.display(),
        ids.len(),
        a.labels.len(),
        image_uri,
        image.id,
        image.gsd_m.unwrap_or(f64::NAN),
        if problems > 0 {
            format!(", {problems} invalid skipped")
        } else {
            String::new()
        },
        if repeated > 0 {
            format!(", {repeated} already present")
        } else {
            String::new()
        }
    );
    Ok(())
}

pub fn export(project: &Path, output: &Path, class: Option<&str>) -> Result<()> {
    let n = kestrel_samples::export::export_samples(&Project::open(project)?, output, class)?;
    println!("{}: {n} samples", output.display());
    Ok(())
}

pub fn chips(
    project: &Path,
    class: &str,
    output: &Path,
    gsd: Option<f64>,
    negatives: f64,
    bands: Option<&str>,
    colour: kestrel_samples::normalize::ColourMethod,
) -> Result<()> {
    let project = Project::open(project)?;
    // Bands are numbered from 1 on the command line, as GDAL numbers them.
    let bands = match bands {
        Some(text) => Some(
            text.split(',')
                .map(|b| {
                    b.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|&n| n >= 1)
                        .map(|n| n - 1)
                })
                .collect::<Option<Vec<usize>>>()
                .with_context(|| {
                    format!("--bands '{text}': expected 1-based band numbers such as 3,2,1")
                })?,
        ),
        None => None,
    };
    let bar = crate::progress::count_bar("normalizing samples");
    let set = build_chips(
        &project,
        class,
        &ChipOptions {
            target_gsd_m: gsd,
            auto_negative_ratio: negatives,
            bands,
            colour,
            ..Default::default()
        },
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    write_chip_set(&set, output)?;
    let positives: Vec<_> = set
        .chips
        .iter()
        .filter(|c| c.polarity == Polarity::Positive)
        .collect();
    let estimated = positives
        .iter()
        .filter(|c| matches!(c.heading, HeadingSource::Estimated { .. }))
        .count();
    let c = &set.contract;
    println!(
        "{}: {} positive and {} negative chips of '{}', {}×{} px at {:.3} m (object {:.2} × {:.2} m); {} headings estimated from pixels",
        output.display(),
        positives.len(),
        set.chips.len() - positives.len(),
        set.class.name,
        c.chip_size_px,
        c.chip_size_px,
        c.target_gsd_m,
        c.object_length_m,
        c.object_width_m,
        estimated
    );
    Ok(())
}

fn absolute(p: &Path) -> Result<String> {
    let s = p.to_str().context("image path is not UTF-8")?;
    if kestrel_geo::raster::is_remote(s) {
        return Ok(s.to_string());
    }
    Ok(std::fs::canonicalize(p)
        .with_context(|| format!("{}", p.display()))?
        .display()
        .to_string())
}

/// `kestrel objects`: one box per segmented object of a point cloud (its points' extent),
/// with its top and height, in the cloud's CRS.
/// What `kestrel objects` derives its objects from.
pub enum ObjectSource {
    /// An extra dimension that numbers the points of each object (lidR's `treeID`).
    Dimension(String),
    /// Footprints of an ASPRS class.
    Class(u8),
    /// Local maxima of the canopy height.
    TreeTops { radius_m: f64, min_height_m: f64 },
}

pub fn objects(cloud: &Path, source: &ObjectSource, cell_m: f64, output: &Path, area: Option<[f64; 4]>, min_points: usize) -> Result<()> {
    let mut pc = kestrel_geo::pointcloud::PointCloud::open(cloud)?;
    let crs = pc.crs()?;
    if !matches!(source, ObjectSource::Dimension(_)) && !(cell_m > 0.0 && cell_m.is_finite()) {
        bail!("--cell {cell_m}: give a positive size in metres");
    }
    let unit_m = crs.as_ref().and_then(|c| c.linear_unit_m()).unwrap_or(1.0);
    let (found, dimension) = match source {
        ObjectSource::Dimension(d) => (kestrel_geo::pointcloud::objects_by_dimension(&mut pc, d, area, |_| {})?, d.clone()),
        ObjectSource::Class(c) => {
            let name = match c {
                6 => "building".to_string(),
                other => format!("class {other}"),
            };
            (kestrel_geo::pointcloud::objects_by_class(&mut pc, *c, cell_m / unit_m, area, min_points.max(1), |_| {})?, name)
        }
        ObjectSource::TreeTops { radius_m, min_height_m } => {
            // The whole cloud's canopy, so that a top near the area's edge is judged against
            // its neighbours outside it.
            let options = kestrel_geo::pointcloud::RasterizeOptions { cell_m, kind: kestrel_geo::pointcloud::HeightKind::Ndsm, fill_dsm_holes: true, area: None };
            let chm = kestrel_geo::pointcloud::rasterize(&mut pc, &options, |_| {})?;
            let inside = |o: &kestrel_geo::pointcloud::CloudObject| area.is_none_or(|a| o.top[0] >= a[0] && o.top[0] < a[2] && o.top[1] >= a[1] && o.top[1] < a[3]);
            let tops = kestrel_geo::pointcloud::tree_tops(&chm, *min_height_m, *radius_m)?.into_iter().filter(inside).collect();
            (tops, "tree".to_string())
        }
    };
    let dimension = dimension.as_str();
    let features: Vec<kestrel_geo::vector::Feature> = found
        .iter()
        .filter(|o| o.points >= min_points)
        .map(|o| {
            let mut p = serde_json::Map::new();
            p.insert("class".into(), dimension.trim_end_matches("ID").trim_end_matches("Id").to_lowercase().into());
            p.insert("id".into(), o.id.into());
            p.insert("points".into(), o.points.into());
            p.insert("top_x".into(), o.top[0].into());
            p.insert("top_y".into(), o.top[1].into());
            p.insert("z_min".into(), o.min[2].into());
            p.insert("z_max".into(), o.max[2].into());
            // The boxes are extents: they carry no heading.
            p.insert("heading_mode".into(), "none".into());
            let ring = vec![(o.min[0], o.min[1]), (o.max[0], o.min[1]), (o.max[0], o.max[1]), (o.min[0], o.max[1])];
            kestrel_geo::vector::Feature { ring, properties: p }
        })
        .collect();
    if features.is_empty() {
        bail!("{}: no object of '{dimension}' (with at least {min_points} points{})", cloud.display(), if area.is_some() { " in the area" } else { "" });
    }
    let gpkg = output.extension().is_some_and(|e| e.eq_ignore_ascii_case("gpkg"));
    if gpkg {
        kestrel_geo::vector::write_geopackage(output, "objects", &features, crs.as_ref())?;
    } else {
        kestrel_geo::vector::write_geojson(output, &features, crs.as_ref(), &Default::default())?;
    }
    println!("{}: {} objects of '{dimension}' from {}", output.display(), features.len(), cloud.display());
    Ok(())
}

/// `kestrel stack`: rasters of one grid (size and geotransform) as the bands of one f32 COG,
/// read and written tile by tile; with `area`, only the pixels that cover it.
pub fn stack(rasters: &[PathBuf], output: &Path, area: Option<[f64; 4]>) -> Result<()> {
    let sources = rasters.iter().map(|r| kestrel_geo::open_raster(r).with_context(|| format!("opening {}", r.display()))).collect::<Result<Vec<_>>>()?;
    let first = sources[0].info().clone();
    for (s, path) in sources.iter().zip(rasters).skip(1) {
        let i = s.info();
        let same_grid = match (&first.georef, &i.georef) {
            (Some(a), Some(b)) => a.transform.0.iter().zip(&b.transform.0).all(|(x, y)| (x - y).abs() <= 1e-6 * x.abs().max(1.0)),
            (None, None) => true,
            _ => false,
        };
        if (i.width, i.height) != (first.width, first.height) || !same_grid {
            bail!("{} ({}×{}) is not on the grid of {} ({}×{}): make it with `kestrel dsm --like`", path.display(), i.width, i.height, rasters[0].display(), first.width, first.height);
        }
    }
    // The window of the first grid that covers the area, widened to whole pixels.
    let (col0, row0, width, height) = match area {
        None => (0, 0, first.width, first.height),
        Some([x0, y0, x1, y1]) => {
            let t = first.georef.as_ref().map_or(kestrel_geo::GeoTransform::pixels(), |g| g.transform);
            let corners = [(x0, y0), (x1, y0), (x0, y1), (x1, y1)].map(|(x, y)| t.map_to_pixel(x, y).unwrap_or((f64::NAN, f64::NAN)));
            let (c0, c1) = (corners.iter().map(|c| c.0).fold(f64::INFINITY, f64::min), corners.iter().map(|c| c.0).fold(f64::NEG_INFINITY, f64::max));
            let (r0, r1) = (corners.iter().map(|c| c.1).fold(f64::INFINITY, f64::min), corners.iter().map(|c| c.1).fold(f64::NEG_INFINITY, f64::max));
            let (c0, r0) = (c0.floor().max(0.0), r0.floor().max(0.0));
            let (c1, r1) = (c1.ceil().min(f64::from(first.width)), r1.ceil().min(f64::from(first.height)));
            if !(c1 > c0 && r1 > r0) {
                bail!("--bbox {x0},{y0},{x1},{y1} does not meet {} ({}×{} pixels)", rasters[0].display(), first.width, first.height);
            }
            (c0 as u32, r0 as u32, (c1 - c0) as u32, (r1 - r0) as u32)
        }
    };
    let georef = first.georef.clone().map(|mut g| {
        let (x, y) = g.transform.pixel_to_map(f64::from(col0), f64::from(row0));
        g.transform.0[0] = x;
        g.transform.0[3] = y;
        g
    });
    let bands: usize = sources.iter().map(|s| usize::from(s.info().bands)).sum();
    let nodata = sources.iter().find_map(|s| s.info().nodata);
    let opts = kestrel_geo::raster::CogWriterOptions { nodata, ..Default::default() };
    let mut w = kestrel_geo::raster::CogWriter::<f32>::create(output, width, height, bands as u32, georef.as_ref(), &opts)?;
    let ts = w.tile_size;
    for row in (0..height).step_by(ts as usize) {
        for col in (0..width).step_by(ts as usize) {
            let (cols, rows) = (ts.min(width - col), ts.min(height - row));
            let win = kestrel_geo::PixelWindow::new(col0 + col, row0 + row, cols, rows);
            let parts = sources.iter().map(|s| s.read_window(0, win)).collect::<kestrel_geo::Result<Vec<_>>>()?;
            let n = win.cols as usize * win.rows as usize;
            let mut tile = Vec::with_capacity(n * bands);
            for p in 0..n {
                for b in &parts {
                    for k in 0..b.bands {
                        tile.push(b.samples.get_f64(p * b.bands + k) as f32);
                    }
                }
            }
            w.write_tile(col, row, cols as usize, rows as usize, &tile)?;
        }
    }
    w.finish()?;
    println!("{}: {} bands of {}×{} from {} rasters", output.display(), bands, width, height, rasters.len());
    Ok(())
}
