//! Normalized training chips of a class: every positive analysed (heading, size), the
//! class's contract derived from them, and chips cut at the contract's GSD, colour and
//! canonical heading; explicit negatives plus automatic ones sampled away from every
//! positive. Written as PNGs with a JSON manifest and a contact sheet a person can check
//! at a glance.

use crate::normalize::colour::ColourStats;
use crate::normalize::orientation::AspectPrior;
use crate::normalize::window::NormalizedWindow;
use crate::normalize::{
    analyse_sample, chip_radius_px, resample_chip, Chip, ColourMethod, Contract, HeadingSource,
    SampleGeometry,
};
use crate::sample::{Polarity, Sample, Shape};
use crate::store::{ClassRecord, ImageRecord, Project, SampleFilter, StoreError};
use crate::synthetic::Rng;
use kestrel_geo::RasterSource;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// Options for cutting chips.
#[derive(Clone, Debug)]
pub struct ChipOptions {
    /// Force the target GSD instead of the positives' median.
    pub target_gsd_m: Option<f64>,
    /// Automatic negatives per positive, sampled in the same images.
    pub auto_negative_ratio: f64,
    /// Source bands (0-based) in the order the network sees them; default: the first three.
    pub bands: Option<Vec<usize>>,
    /// Only samples on these images (e.g. a training or validation split); default: all.
    pub images: Option<Vec<i64>>,
    /// Cut with this contract instead of deriving one (validation uses the training set's).
    pub contract: Option<Contract>,
    /// Colour method of a derived contract.
    pub colour: ColourMethod,
    pub seed: u64,
}

impl Default for ChipOptions {
    fn default() -> Self {
        ChipOptions {
            target_gsd_m: None,
            auto_negative_ratio: 1.0,
            bands: None,
            images: None,
            contract: None,
            colour: ColourMethod::Quantile {
                quantiles: crate::normalize::colour::QUANTILES,
            },
            seed: 7,
        }
    }
}

/// One chip and where it came from.
#[derive(Clone, Debug, Serialize)]
pub struct ChipRecord {
    /// `None` for automatic negatives.
    pub sample_id: Option<i64>,
    pub image_uri: String,
    pub polarity: Polarity,
    /// Centre in image pixels and the heading turned to canonical (degrees clockwise from up).
    pub centre_px: [f64; 2],
    pub heading_deg: f64,
    pub heading: HeadingSource,
    /// Image pixels per chip pixel.
    pub scale: f64,
    /// Object length and width in metres (positives).
    pub length_m: Option<f64>,
    pub width_m: Option<f64>,
    #[serde(skip)]
    pub chip: Chip,
}

#[derive(Debug, thiserror::Error)]
pub enum ChipError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Geo(#[from] kestrel_geo::GeoError),
    #[error("class '{0}' does not exist in this project")]
    NoClass(String),
    #[error("class '{0}' has no positive samples to normalize")]
    NoPositives(String),
    #[error("image {uri} has no ground sample distance: import it with --gsd")]
    NoGsd { uri: String },
    #[error("{path}: {problem}")]
    Write { path: String, problem: String },
}

/// Everything `kestrel chips` produces, in memory.
pub struct ChipSet {
    pub class: ClassRecord,
    pub contract: Contract,
    pub chips: Vec<ChipRecord>,
    /// The images the chips come from, still open, with their colour statistics: the
    /// training set cuts its augmented chips from them without opening them again.
    pub(crate) images: HashMap<String, OpenImage>,
}

pub(crate) struct OpenImage {
    pub(crate) record: ImageRecord,
    pub(crate) source: Box<dyn RasterSource>,
    pub(crate) stats: ColourStats,
    pub(crate) gsd_m: f64,
}

fn open_image(project: &Project, record: &ImageRecord) -> Result<OpenImage, ChipError> {
    let source = kestrel_geo::open_raster(&record.uri)?;
    // The statistics stored at import, else computed now (they are deterministic).
    let stored = project
        .image_band_stats(record.id)?
        .and_then(|v| serde_json::from_value::<ColourStats>(v).ok());
    let stats = match stored {
        Some(s) if s.bands.len() == source.info().bands as usize => s,
        _ => ColourStats::from_raster(source.as_ref())?,
    };
    let gsd_m = record.gsd_m.ok_or_else(|| ChipError::NoGsd {
        uri: record.uri.clone(),
    })?;
    Ok(OpenImage {
        record: record.clone(),
        source,
        stats,
        gsd_m,
    })
}

/// Samples analysed between two progress reports.
const PROGRESS_BATCH: usize = 64;

/// Analyses the class's samples and cuts normalized chips. `progress(done, total)` is
/// called as samples are processed.
pub fn build_chips(
    project: &Project,
    class_name: &str,
    options: &ChipOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<ChipSet, ChipError> {
    let class = project
        .class_by_name(class_name)?
        .ok_or_else(|| ChipError::NoClass(class_name.to_string()))?;
    let mut samples = project.samples(&SampleFilter {
        class_id: Some(class.id),
        ..Default::default()
    })?;
    if let Some(ids) = &options.images {
        samples.retain(|s| ids.contains(&s.image_id));
    }
    let positives: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.polarity == Polarity::Positive)
        .collect();
    if positives.is_empty() {
        return Err(ChipError::NoPositives(class.name.clone()));
    }
    // Images the class's samples lie on, opened once each.
    let mut images: HashMap<i64, OpenImage> = HashMap::new();
    for s in &samples {
        if let std::collections::hash_map::Entry::Vacant(e) = images.entry(s.image_id) {
            e.insert(open_image(project, &project.image(s.image_id)?)?);
        }
    }
    let available = images
        .values()
        .map(|i| i.source.info().bands as usize)
        .min()
        .unwrap_or(1);
    let requested = options
        .contract
        .as_ref()
        .map(|c| c.bands.clone())
        .or_else(|| options.bands.clone());
    let bands: Vec<usize> = match &requested {
        Some(b) => {
            if let Some(&bad) = b.iter().find(|&&i| i >= available) {
                return Err(ChipError::Geo(kestrel_geo::GeoError::Invalid(format!(
                    "band {} requested, but the images have {available}",
                    bad + 1
                ))));
            }
            b.clone()
        }
        None => (0..available.min(3)).collect(),
    };
    let prior = AspectPrior::from_boxes(positives.iter().filter_map(|s| match s.shape {
        Shape::AxisBox { w, h, .. } => Some((w, h)),
        _ => None,
    }));
    let total = samples.len();
    let mut done = 0;
    // 1. Analyse positives: heading and size.
    let mut geometry: Vec<(&Sample, SampleGeometry)> = Vec::with_capacity(positives.len());
    for batch in positives.chunks(PROGRESS_BATCH) {
        let analysed = crate::parallel::par_map(batch, |s| {
            let img = &images[&s.image_id];
            // A point without a heading is taken to be about a typical object (5 m) in size.
            let default_size_px = 5.0 / img.gsd_m;
            analyse_sample(
                img.source.as_ref(),
                &img.stats,
                &bands,
                &s.shape,
                default_size_px,
                prior,
            )
        });
        for (s, g) in batch.iter().zip(analysed) {
            geometry.push((s, g?));
        }
        done += batch.len();
        progress(done, total);
    }
    let lengths: Vec<f64> = geometry
        .iter()
        .map(|(s, g)| g.length_px * images[&s.image_id].gsd_m)
        .collect();
    let widths: Vec<f64> = geometry
        .iter()
        .map(|(s, g)| g.width_px * images[&s.image_id].gsd_m)
        .collect();
    let gsds: Vec<f64> = geometry
        .iter()
        .map(|(s, _)| images[&s.image_id].gsd_m)
        .collect();
    let contract = match &options.contract {
        Some(c) => c.clone(),
        None => Contract::derive(
            &lengths,
            &widths,
            &gsds,
            bands.clone(),
            class.heading_mode,
            options.target_gsd_m,
            options.colour.clone(),
        )
        .ok_or_else(|| ChipError::NoPositives(class.name.clone()))?,
    };

    let cut = |img: &OpenImage, cx: f64, cy: f64, heading: f64| -> Result<Chip, ChipError> {
        let info = img.source.info();
        let r = chip_radius_px(&contract, img.gsd_m);
        let win =
            NormalizedWindow::around(info.width, info.height, cx, cy, r).ok_or_else(|| {
                ChipError::Geo(kestrel_geo::GeoError::Invalid(format!(
                    "sample centre ({cx}, {cy}) lies outside {}",
                    img.record.uri
                )))
            })?;
        let nw = NormalizedWindow::read_for(
            img.source.as_ref(),
            win,
            &bands,
            &img.stats,
            &contract.colour,
        )?;
        Ok(resample_chip(&nw, cx, cy, heading, img.gsd_m, &contract))
    };
    let mut chips = Vec::new();
    // 2. Positive chips, turned to the canonical heading.
    let cut_positives = crate::parallel::par_map(&geometry, |(s, g)| {
        cut(
            &images[&s.image_id],
            g.cx,
            g.cy,
            g.heading_deg - contract.canonical_heading_deg,
        )
    });
    for (((s, g), (length_m, width_m)), chip) in geometry
        .iter()
        .zip(lengths.iter().zip(&widths))
        .zip(cut_positives)
    {
        let img = &images[&s.image_id];
        chips.push(ChipRecord {
            sample_id: Some(s.id),
            image_uri: img.record.uri.clone(),
            polarity: Polarity::Positive,
            centre_px: [g.cx, g.cy],
            heading_deg: g.heading_deg,
            heading: g.heading,
            scale: contract.target_gsd_m / img.gsd_m,
            length_m: Some(*length_m),
            width_m: Some(*width_m),
            chip: chip?,
        });
    }
    let negative = |img: &OpenImage,
                    sample_id: Option<i64>,
                    cx: f64,
                    cy: f64,
                    heading: f64|
     -> Result<ChipRecord, ChipError> {
        Ok(ChipRecord {
            sample_id,
            image_uri: img.record.uri.clone(),
            polarity: Polarity::Negative,
            centre_px: [cx, cy],
            heading_deg: heading,
            heading: HeadingSource::Given,
            scale: contract.target_gsd_m / img.gsd_m,
            length_m: None,
            width_m: None,
            chip: cut(img, cx, cy, heading)?,
        })
    };
    // 3. Explicit negatives, at their own heading when they have one, else a random one
    //    (the network must not learn that negatives come upright).
    let mut rng = Rng::new(options.seed);
    for s in samples.iter().filter(|s| s.polarity == Polarity::Negative) {
        let img = &images[&s.image_id];
        let (cx, cy) = s.shape.centre();
        let heading = s
            .shape
            .heading_deg()
            .unwrap_or_else(|| rng.range(0.0, 360.0));
        chips.push(negative(img, Some(s.id), cx, cy, heading)?);
        done += 1;
        progress(done, total);
    }
    // 4. Automatic negatives: random places in each labelled image at least one object
    //    length away from every sample of any class.
    let all_samples = project.samples(&SampleFilter::default())?;
    let mut ids: Vec<i64> = images.keys().copied().collect();
    ids.sort_unstable();
    for image_id in ids {
        let img = &images[&image_id];
        let info = img.source.info();
        let taken: Vec<(f64, f64)> = all_samples
            .iter()
            .filter(|s| s.image_id == image_id)
            .map(|s| s.shape.centre())
            .collect();
        let wanted = (positives.iter().filter(|s| s.image_id == image_id).count() as f64
            * options.auto_negative_ratio)
            .round() as usize;
        let margin =
            chip_radius_px(&contract, img.gsd_m).min(info.width.min(info.height) as f64 / 4.0);
        let mut made = 0;
        // In a crowded scene (a forest canopy) no place is a whole object length from every
        // object; the rest are then sought between objects, half a length away.
        for fraction in [1.0, 0.5] {
            let min_dist_px = fraction * contract.object_length_m / img.gsd_m;
            for _ in 0..wanted * 20 {
                if made == wanted {
                    break;
                }
                let cx = rng.range(margin, info.width as f64 - margin);
                let cy = rng.range(margin, info.height as f64 - margin);
                if taken
                    .iter()
                    .any(|&(x, y)| (x - cx).hypot(y - cy) < min_dist_px)
                {
                    continue;
                }
                let heading = rng.range(0.0, 360.0);
                chips.push(negative(img, None, cx, cy, heading)?);
                made += 1;
            }
        }
    }
    let images = images
        .into_values()
        .map(|i| (i.record.uri.clone(), i))
        .collect();
    Ok(ChipSet {
        class,
        contract,
        chips,
        images,
    })
}

/// A chip as an 8-bit image: its first three bands as RGB (one band as grey).
pub fn chip_to_rgb8(chip: &Chip) -> image::RgbImage {
    let s = chip.size;
    image::RgbImage::from_fn(s as u32, s as u32, |x, y| {
        let at = |b: usize| {
            (chip.data[(b.min(chip.bands - 1) * s + y as usize) * s + x as usize].clamp(0.0, 1.0)
                * 255.0)
                .round() as u8
        };
        image::Rgb([at(0), at(1), at(2)])
    })
}

/// A contact sheet: up to `columns`×`rows` positives, a gap, then as many negatives.
pub fn contact_sheet(chips: &[ChipRecord], columns: usize, rows: usize) -> image::RgbImage {
    let size = chips.first().map_or(16, |c| c.chip.size) as u32;
    let pad = 2u32;
    let cell = size + pad;
    let pos: Vec<&ChipRecord> = chips
        .iter()
        .filter(|c| c.polarity == Polarity::Positive)
        .take(columns * rows)
        .collect();
    let neg: Vec<&ChipRecord> = chips
        .iter()
        .filter(|c| c.polarity == Polarity::Negative)
        .take(columns * rows)
        .collect();
    let pos_rows = pos.len().div_ceil(columns) as u32;
    let neg_rows = neg.len().div_ceil(columns) as u32;
    let gap = 3 * pad + 6;
    let mut sheet = image::RgbImage::from_pixel(
        columns as u32 * cell + pad,
        (pos_rows + neg_rows) * cell + gap + pad,
        image::Rgb([40, 40, 40]),
    );
    // A red rule separates positives (above) from negatives (below).
    for x in 0..sheet.width() {
        for y in pos_rows * cell + pad..pos_rows * cell + pad + 3 {
            sheet.put_pixel(x, y, image::Rgb([200, 40, 40]));
        }
    }
    for (block, list, y0) in [(0, &pos, pad), (1, &neg, pos_rows * cell + gap)] {
        let _ = block;
        for (i, c) in list.iter().enumerate() {
            let img = chip_to_rgb8(&c.chip);
            let (x, y) = (
                pad + (i % columns) as u32 * cell,
                y0 + (i / columns) as u32 * cell,
            );
            image::imageops::overlay(&mut sheet, &img, i64::from(x), i64::from(y));
        }
    }
    sheet
}

/// Writes chips as PNGs (`positive/…`, `negative/…`), `manifest.json` (contract and one
/// entry per chip) and `contact_sheet.png` into `dir`.
pub fn write_chip_set(set: &ChipSet, dir: &Path) -> Result<(), ChipError> {
    let werr = |p: &Path, e: &dyn std::fmt::Display| ChipError::Write {
        path: p.display().to_string(),
        problem: e.to_string(),
    };
    for sub in ["positive", "negative"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| werr(&dir.join(sub), &e))?;
    }
    let mut entries = Vec::with_capacity(set.chips.len());
    for (i, c) in set.chips.iter().enumerate() {
        let sub = match c.polarity {
            Polarity::Positive => "positive",
            Polarity::Negative => "negative",
        };
        let name = match c.sample_id {
            Some(id) => format!("{sub}/sample_{id:06}.png"),
            None => format!("{sub}/auto_{i:06}.png"),
        };
        let path = dir.join(&name);
        chip_to_rgb8(&c.chip)
            .save(&path)
            .map_err(|e| werr(&path, &e))?;
        let mut v = serde_json::to_value(c).unwrap_or_default();
        v["file"] = serde_json::Value::String(name);
        entries.push(v);
    }
    let manifest = serde_json::json!({
        "class": set.class.name,
        "contract": set.contract,
        "chips": entries,
    });
    let mpath = dir.join("manifest.json");
    std::fs::write(
        &mpath,
        serde_json::to_string_pretty(&manifest).unwrap_or_default(),
    )
    .map_err(|e| werr(&mpath, &e))?;
    let spath = dir.join("contact_sheet.png");
    contact_sheet(&set.chips, 20, 8)
        .save(&spath)
        .map_err(|e| werr(&spath, &e))?;
    Ok(())
}
