//! `kestrel detect`: a model over whole rasters, tile by tile, into GeoJSON or GeoPackage.
//! The output is written to a temporary name and renamed when complete, so a failed run never
//! leaves a file that looks finished.

use anyhow::{bail, Context, Result};
use kestrel_detect::detect::{detect_raster, DetectOptions, Detection, Timing};
use kestrel_geo::vector::{write_geojson, write_geopackage, Feature, GeoJsonOptions};
use kestrel_geo::{open_raster, Georef};
use kestrel_samples::normalize::colour::ColourStats;
use serde_json::json;
use std::path::{Path, PathBuf};

pub struct DetectArgs {
    /// One package, or several detecting as an ensemble.
    pub model: Vec<PathBuf>,
    pub images: Vec<String>,
    pub output: PathBuf,
    pub threshold: Option<f32>,
    pub gsd: Option<f64>,
    pub bbox: Option<Vec<f64>>,
    pub tile: usize,
    pub json: bool,
}

/// The image's "up" in map coordinates, as degrees clockwise from grid north (0 for a
/// north-up image).
fn up_bearing_deg(georef: &Georef, x: f64, y: f64) -> f64 {
    let (ax, ay) = georef.transform.pixel_to_map(x, y);
    let (bx, by) = georef.transform.pixel_to_map(x, y - 1.0);
    (bx - ax).atan2(by - ay).to_degrees()
}

/// A detection as an output feature: its polygon in map coordinates (or pixels), heading
/// from grid north, and the properties every Kestrel detection file carries.
pub(crate) fn feature(d: &Detection, image: &str, georef: Option<&Georef>, mode: kestrel_samples::HeadingMode) -> Feature {
    let corners = d.bbox.corners();
    let (ring, heading) = match georef {
        Some(g) => (corners.iter().map(|&(x, y)| g.transform.pixel_to_map(x, y)).collect(), mode.wrap(d.bbox.heading_deg + up_bearing_deg(g, d.bbox.cx, d.bbox.cy))),
        None => (corners.to_vec(), d.bbox.heading_deg),
    };
    let mut properties = serde_json::Map::new();
    properties.insert("class".into(), json!(d.class));
    properties.insert("score".into(), json!(d.score));
    properties.insert("match_score".into(), json!(d.match_score));
    properties.insert("heading_deg".into(), json!(heading));
    properties.insert("length_m".into(), json!(d.length_m));
    properties.insert("width_m".into(), json!(d.width_m));
    properties.insert("image".into(), json!(image));
    properties.insert("pixel_polygon".into(), json!(corners.iter().map(|&(x, y)| [x, y]).collect::<Vec<_>>()));
    Feature { ring, properties }
}

/// The lowest and highest value of height band `band` (metres) inside the detection's box,
/// nodata left out; `None` when the box holds no data.
fn height_range(src: &dyn kestrel_geo::RasterSource, band: usize, d: &Detection) -> Result<Option<(f32, f32)>> {
    let info = src.info();
    let b = d.bbox;
    let footprint = kestrel_samples::Shape::OrientedBox { cx: b.cx, cy: b.cy, length: b.length, width: b.width, heading_deg: b.heading_deg };
    let [x0, y0, x1, y1] = footprint.bounds();
    let (x0, y0) = (x0.floor().max(0.0), y0.floor().max(0.0));
    let (x1, y1) = (x1.ceil().min(f64::from(info.width)), y1.ceil().min(f64::from(info.height)));
    if x1 <= x0 || y1 <= y0 {
        return Ok(None);
    }
    let win = kestrel_geo::PixelWindow::new(x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32);
    let buf = src.read_window(0, win)?;
    let mut range: Option<(f32, f32)> = None;
    for r in 0..buf.height {
        for c in 0..buf.width {
            if !footprint.contains(x0 + c as f64 + 0.5, y0 + r as f64 + 0.5) {
                continue;
            }
            let v = buf.samples.get_f64((r * buf.width + c) * buf.bands + band) as f32;
            if !v.is_finite() || info.nodata.is_some_and(|n| f64::from(v) == n) {
                continue;
            }
            range = Some(range.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
        }
    }
    Ok(range)
}

pub fn run(a: DetectArgs) -> Result<()> {
    let ext = a.output.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let gpkg = match ext.as_deref() {
        Some("geojson" | "json") => false,
        Some("gpkg") => true,
        _ => bail!("{}: the output must end in .geojson or .gpkg", a.output.display()),
    };
    let device = kestrel_model::device::current();
    let ensemble = kestrel_model::package::load_ensemble(&a.model, &device)?;
    let (meta, networks) = (&ensemble.meta, &ensemble.networks);
    let mode = meta.contract.heading_mode;
    let threshold = a.threshold.unwrap_or(ensemble.default_threshold);
    let options = DetectOptions { threshold, tile_px: a.tile, ..Default::default() };
    let mut features = Vec::new();
    let mut crs = None;
    let mut total = Timing::default();
    let mut per_image = Vec::new();
    for image in &a.images {
        let src = open_raster(image).with_context(|| format!("opening {image}"))?;
        let info = src.info().clone();
        let gsd_m = match (info.gsd_xy_m(), a.gsd) {
            (_, Some(g)) => g,
            (Some((x, y)), None) => (x + y) / 2.0,
            (None, None) => bail!("{image}: has no georeferencing to tell its ground sample distance; give it with --gsd METRES"),
        };
        // Domain shift: what the model never saw.
        let ratio = gsd_m / meta.contract.target_gsd_m;
        if !(0.5..=2.0).contains(&ratio) {
            eprintln!("warning: {image}: GSD {gsd_m:.3} m is {ratio:.2}× the model's {:.3} m; detection resamples, but objects this far from the training scale are less reliable", meta.contract.target_gsd_m);
        }
        // Too few bands is an error in detection; more than the model reads, a note.
        if info.bands as usize > meta.contract.bands.iter().max().map_or(0, |b| b + 1) {
            eprintln!("note: {image}: the model reads bands {:?} of its {}", meta.contract.bands.iter().map(|b| b + 1).collect::<Vec<_>>(), info.bands);
        }
        let georef = info.georef.clone();
        if let Some(g) = &georef {
            match (&crs, &g.crs) {
                (None, Some(c)) => crs = Some(c.clone()),
                (Some(a), Some(b)) if a.proj4 != b.proj4 => bail!("{image}: its CRS differs from the first image's; detect each CRS into its own output"),
                _ => {}
            }
        }
        let area_px = match &a.bbox {
            None => None,
            Some(b) if b.len() == 4 => Some(match &georef {
                Some(g) => {
                    let p0 = g.transform.map_to_pixel(b[0], b[3]).context("the geotransform cannot be inverted")?;
                    let p1 = g.transform.map_to_pixel(b[2], b[1]).context("the geotransform cannot be inverted")?;
                    [p0.0.min(p1.0), p0.1.min(p1.1), p0.0.max(p1.0), p0.1.max(p1.1)]
                }
                None => [b[0], b[1], b[2], b[3]],
            }),
            Some(_) => bail!("--bbox takes four numbers: min_x,min_y,max_x,max_y"),
        };
        let stats = ColourStats::from_raster(src.as_ref()).with_context(|| format!("sampling the colours of {image}"))?;
        if let Some(r) = &meta.radiometry {
            for d in r.departures(&stats, &meta.contract.bands) {
                eprintln!("warning: {image}: {d}");
            }
        }
        let bar = crate::progress::count_bar(&format!("detecting in {}", Path::new(image).file_name().and_then(|n| n.to_str()).unwrap_or(image)));
        let started = std::time::Instant::now();
        let (detections, timing) = detect_raster(src.as_ref(), gsd_m, &stats, networks, meta, &DetectOptions { area_px, ..options.clone() }, |p| {
            bar.set_length(p.tiles as u64);
            bar.set_position(p.tiles_done as u64);
            bar.set_message(format!("{:.1} Mpx/s", p.megapixels_done / started.elapsed().as_secs_f64().max(1e-9)));
        })?;
        bar.finish_and_clear();
        eprintln!("{image}: {} detections, {:.2} Mpx in {:.2} s ({:.2} Mpx/s)", detections.len(), timing.megapixels, timing.wall.as_secs_f64(), timing.megapixels / timing.wall.as_secs_f64().max(1e-9));
        per_image.push(json!({"image": image, "detections": detections.len(), "megapixels": timing.megapixels, "seconds": timing.wall.as_secs_f64()}));
        let height_bands: Vec<usize> = match &meta.contract.colour {
            kestrel_samples::normalize::ColourMethod::WithHeights { height_bands, .. } => height_bands.clone(),
            _ => Vec::new(),
        };
        for d in &detections {
            let mut f = feature(d, image, georef.as_ref(), mode);
            // A model that reads heights reports each object's height range from them.
            if let Some(&band) = height_bands.first() {
                if let Some((lo, hi)) = height_range(src.as_ref(), band, d)? {
                    f.properties.insert("height_min_m".into(), json!(lo));
                    f.properties.insert("height_max_m".into(), json!(hi));
                }
            }
            features.push(f);
        }
        total.decode += timing.decode;
        total.normalize += timing.normalize;
        total.network += timing.network;
        total.post += timing.post;
        total.wall += timing.wall;
        total.megapixels += timing.megapixels;
    }
    // Written beside the output under a temporary name, renamed into place when whole.
    let name = a.output.file_name().and_then(|n| n.to_str()).context("output has no file name")?;
    let partial = a.output.with_file_name(format!(".{name}.partial"));
    let written = if gpkg { write_geopackage(&partial, "detections", &features, crs.as_ref()) } else { write_geojson(&partial, &features, crs.as_ref(), &GeoJsonOptions::default()) };
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e).with_context(|| format!("writing {}", a.output.display()));
    }
    std::fs::rename(&partial, &a.output).with_context(|| format!("moving the finished output to {}", a.output.display()))?;
    let s = |d: std::time::Duration| d.as_secs_f64();
    let summary = json!({
        "output": a.output.display().to_string(),
        "detections": features.len(),
        "megapixels": total.megapixels,
        "seconds": s(total.wall),
        "megapixels_per_s": total.megapixels / s(total.wall).max(1e-9),
        "time_s": {"decode": s(total.decode), "normalize": s(total.normalize), "network": s(total.network), "post": s(total.post)},
        "images": per_image,
        "coordinates": if crs.is_some() { "map" } else { "pixels" },
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{}: {} detections; {:.2} Mpx at {:.2} Mpx/s (decode {:.2} s and normalize {:.2} s on the reader thread, network {:.2} s, post-processing {:.2} s)",
            a.output.display(),
            features.len(),
            total.megapixels,
            total.megapixels / s(total.wall).max(1e-9),
            s(total.decode),
            s(total.normalize),
            s(total.network),
            s(total.post)
        );
    }
    Ok(())
}
