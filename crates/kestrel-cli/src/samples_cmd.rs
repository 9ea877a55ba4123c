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
    let file_name = a.image.file_name().and_then(|n| n.to_str()).map(str::to_string);
    let frame = ImageFrame { width: info.width, height: info.height, georef: georef.as_ref(), file_name: file_name.as_deref() };
    let class_names: Vec<String> = a.class_names.as_deref().map(|s| s.split(',').map(|c| c.trim().to_string()).collect()).unwrap_or_default();

    let mut records: Vec<LabelRecord> = Vec::new();
    let mut problems = 0;
    for path in &a.labels {
        let format = match &a.format {
            Some(f) => f.parse::<LabelFormat>().map_err(|e| anyhow::anyhow!("{e}"))?,
            None => detect_format(path).with_context(|| format!("{}: cannot tell the label format; give --format", path.display()))?,
        };
        let set = read_labels(path, format, &frame, &class_names).map_err(|issue| anyhow::anyhow!("{issue}"))?;
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
    let existing = project.samples(&SampleFilter { image_id: Some(image.id), ..Default::default() })?;
    let mut new = Vec::with_capacity(records.len());
    let mut repeated = 0;
    for r in &records {
        let name = a.class.clone().unwrap_or_else(|| r.class_name.clone());
        let class = project.add_class(&name, heading_mode)?;
        let polarity = if a.negative { Polarity::Negative } else { r.polarity };
        if existing.iter().any(|s| s.class_id == class.id && s.polarity == polarity && s.shape == r.shape) {
            repeated += 1;
            continue;
        }
        new.push(NewSample { image_id: image.id, class_id: class.id, polarity, shape: r.shape, heading_mode: r.heading_mode, origin: Origin::Imported });
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
        if problems > 0 { format!(", {problems} invalid skipped") } else { String::new() },
        if repeated > 0 { format!(", {repeated} already present") } else { String::new() }
    );
    Ok(())
}

pub fn export(project: &Path, output: &Path, class: Option<&str>) -> Result<()> {
    let project = Project::open(project)?;
    let class_id = match class {
        Some(name) => Some(project.class_by_name(name)?.with_context(|| format!("no class '{name}' in this project"))?.id),
        None => None,
    };
    let samples = project.samples(&SampleFilter { class_id, ..Default::default() })?;
    let images = project.images()?;
    let classes = project.classes()?;
    // One CRS for the file: the images' common one, or pixels when none is georeferenced.
    let crs_texts: std::collections::BTreeSet<Option<String>> = images.iter().filter(|i| samples.iter().any(|s| s.image_id == i.id)).map(|i| i.crs.clone()).collect();
    if crs_texts.len() > 1 {
        bail!("the samples lie on images in different CRSs ({crs_texts:?}); export them one class or project at a time");
    }
    let crs = match crs_texts.into_iter().next().flatten() {
        Some(c) => Some(kestrel_geo::Crs::parse(&c)?),
        None => None,
    };
    let mut features = Vec::with_capacity(samples.len());
    for s in &samples {
        let image = images.iter().find(|i| i.id == s.image_id).context("sample without image")?;
        let georef = image.georef()?;
        let ring: Vec<(f64, f64)> = s
            .shape
            .polygon()
            .into_iter()
            .map(|(x, y)| georef.as_ref().map_or((x, y), |g| g.transform.pixel_to_map(x, y)))
            .collect();
        let ring = if ring.len() < 3 {
            // Points: a one-pixel square, the exact geometry travels in `shape`.
            let (x, y) = s.shape.centre();
            [(x - 0.5, y - 0.5), (x + 0.5, y - 0.5), (x + 0.5, y + 0.5), (x - 0.5, y + 0.5)]
                .into_iter()
                .map(|(x, y)| georef.as_ref().map_or((x, y), |g| g.transform.pixel_to_map(x, y)))
                .collect()
        } else {
            ring
        };
        let class = classes.iter().find(|c| c.id == s.class_id).map(|c| c.name.clone()).unwrap_or_default();
        let mut properties = serde_json::Map::new();
        properties.insert("sample_id".into(), s.id.into());
        properties.insert("class".into(), class.into());
        properties.insert("polarity".into(), serde_json::to_value(s.polarity)?);
        properties.insert("heading_mode".into(), serde_json::to_value(s.heading_mode)?);
        properties.insert("heading_deg".into(), s.shape.heading_deg().map_or(serde_json::Value::Null, Into::into));
        properties.insert("origin".into(), serde_json::to_value(s.origin)?);
        properties.insert("image".into(), image.uri.clone().into());
        properties.insert("shape".into(), serde_json::to_value(s.shape)?.to_string().into());
        features.push(kestrel_geo::vector::Feature { ring, properties });
    }
    let ext = output.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "gpkg" => kestrel_geo::vector::write_geopackage(output, "samples", &features, crs.as_ref())?,
        "geojson" | "json" => kestrel_geo::vector::write_geojson(output, &features, crs.as_ref(), &Default::default())?,
        _ => bail!("{}: the output must end in .geojson or .gpkg", output.display()),
    }
    println!("{}: {} samples", output.display(), features.len());
    Ok(())
}

pub fn chips(project: &Path, class: &str, output: &Path, gsd: Option<f64>, negatives: f64, bands: Option<&str>, colour: kestrel_samples::normalize::ColourMethod) -> Result<()> {
    let project = Project::open(project)?;
    // Bands are numbered from 1 on the command line, as GDAL numbers them.
    let bands = match bands {
        Some(text) => Some(
            text.split(',')
                .map(|b| b.trim().parse::<usize>().ok().filter(|&n| n >= 1).map(|n| n - 1))
                .collect::<Option<Vec<usize>>>()
                .with_context(|| format!("--bands '{text}': expected 1-based band numbers such as 3,2,1"))?,
        ),
        None => None,
    };
    let bar = crate::progress::count_bar("normalizing samples");
    let set = build_chips(&project, class, &ChipOptions { target_gsd_m: gsd, auto_negative_ratio: negatives, bands, colour, ..Default::default() }, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    write_chip_set(&set, output)?;
    let positives: Vec<_> = set.chips.iter().filter(|c| c.polarity == Polarity::Positive).collect();
    let estimated = positives.iter().filter(|c| matches!(c.heading, HeadingSource::Estimated { .. })).count();
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
    Ok(std::fs::canonicalize(p).with_context(|| format!("{}", p.display()))?.display().to_string())
}
