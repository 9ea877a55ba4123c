//! `kestrel eval`: detections scored against ground truth in any label format `kestrel
//! import` reads. Truth files are paired with images by file stem (`MOS74.txt` ↔
//! `MOS74.png`), detections with images by their `image` property.

use anyhow::{bail, Context, Result};
use kestrel_detect::eval::{evaluate, evaluate_by, EvalReport, Matching, PredictedBox, TruthBox};
use kestrel_detect::geometry::OrientedBox;
use kestrel_samples::labels::{detect_format, read_labels, ImageFrame};
use kestrel_samples::{HeadingMode, Polarity, Shape};
use std::path::{Path, PathBuf};

pub struct EvalArgs {
    pub truth: Vec<PathBuf>,
    pub pred: Option<PathBuf>,
    pub iou: f64,
    pub threshold: Option<f32>,
    pub class_names: Vec<String>,
    pub only: Option<String>,
    pub json: bool,
    /// With `robustness`: the model to run on the transformed test images (several: an
    /// ensemble). Its default threshold is the one reported besides the best.
    pub model: Vec<PathBuf>,
    pub robustness: bool,
    /// Ground sample distance of test images without georeferencing.
    pub gsd: Option<f64>,
    /// Match by centre distance (metres) instead of IoU.
    pub radius_m: Option<f64>,
}

fn stem(p: &str) -> String {
    Path::new(p).file_stem().and_then(|s| s.to_str()).unwrap_or(p).to_string()
}

/// The image beside a truth file: same stem, any raster extension.
fn image_beside(truth: &Path) -> Option<PathBuf> {
    ["tif", "tiff", "png", "jpg", "jpeg"].iter().map(|e| truth.with_extension(e)).find(|p| p.exists())
}

fn read_truth(a: &EvalArgs) -> Result<Vec<TruthBox>> {
    let mut out = Vec::new();
    for path in &a.truth {
        let format = detect_format(path).with_context(|| format!("{}: cannot tell the label format", path.display()))?;
        let image = image_beside(path);
        let info = match &image {
            Some(i) => Some(kestrel_geo::open_raster(i)?.info().clone()),
            None => None,
        };
        let frame = ImageFrame { width: info.as_ref().map_or(0, |i| i.width), height: info.as_ref().map_or(0, |i| i.height), georef: info.as_ref().and_then(|i| i.georef.as_ref()), file_name: None };
        let set = read_labels(path, format, &frame, &a.class_names).map_err(|e| anyhow::anyhow!("{}:{}: {}", e.file, e.line, e.problem))?;
        for issue in &set.issues {
            eprintln!("warning: {}:{}: {}", issue.file, issue.line, issue.problem);
        }
        for r in set.records {
            if r.polarity != Polarity::Positive || a.only.as_ref().is_some_and(|c| *c != r.class_name) {
                continue;
            }
            let (bbox, axis_aligned) = match r.shape {
                Shape::AxisBox { cx, cy, w, h } => (OrientedBox { cx, cy, length: h, width: w, heading_deg: 0.0 }, true),
                Shape::OrientedBox { cx, cy, length, width, heading_deg } => (OrientedBox { cx, cy, length, width, heading_deg }, false),
                Shape::Point { .. } => bail!("{}:{}: points cannot be scored by IoU; the truth needs boxes", path.display(), r.line),
            };
            out.push(TruthBox { image: stem(&path.display().to_string()), bbox, axis_aligned, heading: if axis_aligned { None } else { Some(r.heading_mode.unwrap_or(HeadingMode::Axis)) } });
        }
    }
    Ok(out)
}

/// `--robustness`: every test image turned, rescaled and re-coloured, detected with the
/// model, its detections mapped back to the original frame and scored against the original
/// truth by the same rule as the unchanged image; AP50 per transform.
fn robustness(a: &EvalArgs) -> Result<EvalReport> {
    use kestrel_detect::detect::{detect_raster, DetectOptions};
    use kestrel_detect::robustness::{apply, summarize_turns, Transform, TURN_TOLERANCE_POINTS};
    if a.model.is_empty() {
        bail!("--robustness needs --model MODEL (detection runs on each transformed image)");
    }
    let ensemble = kestrel_model::package::load_ensemble(&a.model, &kestrel_model::device::current())?;
    let (meta, networks) = (&ensemble.meta, &ensemble.networks);
    let truth = read_truth(a)?;
    let mut images = Vec::new();
    for path in &a.truth {
        let image = image_beside(path).with_context(|| format!("{}: no image beside it (same name, .tif/.png/.jpg)", path.display()))?;
        let src = kestrel_geo::open_raster(&image)?;
        let gsd_m = match (a.gsd, src.info().gsd_xy_m()) {
            (Some(g), _) => g,
            (None, Some((x, y))) => (x + y) / 2.0,
            (None, None) => bail!("{}: no georeferencing; give its GSD with --gsd", image.display()),
        };
        let name = stem(&path.display().to_string());
        let own: Vec<TruthBox> = truth.iter().filter(|t| t.image == name).cloned().collect();
        images.push((name, src, gsd_m, own));
    }
    let options = DetectOptions { threshold: 0.05, ..Default::default() };
    let mut rows = Vec::new();
    let mut results = Vec::new();
    let mut baseline = None;
    for t in Transform::standard_set() {
        let mut all_truth = Vec::new();
        let mut preds = Vec::new();
        for (name, src, gsd_m, own) in &images {
            let (img, gsd, _) = apply(src.as_ref(), *gsd_m, own, t)?;
            let stats = kestrel_samples::normalize::colour::ColourStats::from_raster(&img)?;
            let (dets, _) = detect_raster(&img, gsd, &stats, networks, meta, &options, |_| {})?;
            // Scored in the original frame against the original truth (see map_back).
            let (w, h) = (src.info().width, src.info().height);
            preds.extend(dets.into_iter().map(|d| PredictedBox { image: name.clone(), bbox: t.map_back(w, h, &d.bbox), score: d.score }));
            all_truth.extend(own.iter().cloned());
        }
        let r = evaluate(&all_truth, &preds, a.iou, a.threshold.unwrap_or(ensemble.default_threshold));
        if baseline.is_none() {
            baseline = Some(r.clone());
        }
        let base = baseline.as_ref().map_or(r.ap50, |b| b.ap50);
        if !a.json {
            println!("{:<32} AP50 {:.3} ({:+.1} points), F1 at best {:.3}, heading error {}", t.label(), r.ap50, (r.ap50 - base) * 100.0, r.at_best.f1, r.heading_error_median_deg.map_or("n/a".into(), |h| format!("{h:.1}°")));
        }
        rows.push(serde_json::json!({"transform": t.label(), "ap50": r.ap50, "ap50_delta_points": (r.ap50 - base) * 100.0, "f1_best": r.at_best.f1, "heading_error_median_deg": r.heading_error_median_deg}));
        results.push((t, r.ap50));
    }
    let untouched = baseline.as_ref().map_or(0.0, |b| b.ap50);
    let turns = summarize_turns(&results, untouched);
    if a.json {
        let worst = turns.worst.map(|(deg, points)| serde_json::json!({"rotate_deg": deg, "ap50_delta_points": points}));
        let summary = serde_json::json!({"turns": turns.turns, "turns_within_tolerance": turns.within, "tolerance_points": TURN_TOLERANCE_POINTS, "worst_turn": worst, "turns_mean_ap50": turns.mean_ap50});
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"iou": a.iou, "transforms": rows, "turns": summary}))?);
    } else if let Some((deg, points)) = turns.worst {
        println!(
            "turns: {} of {} within {TURN_TOLERANCE_POINTS} AP50 points of the untouched image ({untouched:.3}); mean AP50 {:.3}; worst {points:+.2} points at {deg:.0}°",
            turns.within, turns.turns, turns.mean_ap50
        );
    }
    baseline.context("no transform ran")
}

/// Reads Kestrel's own detections (their `pixel_polygon`, `score` and `image`).
fn read_predictions(path: &Path) -> Result<Vec<PredictedBox>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let features = v["features"].as_array().with_context(|| format!("{}: not a GeoJSON FeatureCollection", path.display()))?;
    let mut out = Vec::new();
    for (i, f) in features.iter().enumerate() {
        let p = &f["properties"];
        let bad = |what: &str| anyhow::anyhow!("{}: feature {}: {what} (Kestrel detections carry pixel_polygon, score and image)", path.display(), i + 1);
        let ring: Vec<(f64, f64)> = p["pixel_polygon"].as_array().ok_or_else(|| bad("no pixel_polygon"))?.iter().filter_map(|c| Some((c[0].as_f64()?, c[1].as_f64()?))).collect();
        if ring.len() != 4 {
            return Err(bad("pixel_polygon is not four corners"));
        }
        // Corners front-left, front-right, back-right, back-left.
        let (fl, fr, bl) = (ring[0], ring[1], ring[3]);
        let cx = ring.iter().map(|c| c.0).sum::<f64>() / 4.0;
        let cy = ring.iter().map(|c| c.1).sum::<f64>() / 4.0;
        let length = (fl.0 - bl.0).hypot(fl.1 - bl.1);
        let width = (fl.0 - fr.0).hypot(fl.1 - fr.1);
        let heading_deg = (fl.0 - bl.0).atan2(-(fl.1 - bl.1)).to_degrees().rem_euclid(360.0);
        let score = p["score"].as_f64().ok_or_else(|| bad("no score"))? as f32;
        let image = p["image"].as_str().ok_or_else(|| bad("no image"))?;
        out.push(PredictedBox { image: stem(image), bbox: OrientedBox { cx, cy, length, width, heading_deg }, score });
    }
    Ok(out)
}

pub fn run(a: EvalArgs) -> Result<EvalReport> {
    if a.truth.is_empty() {
        bail!("no truth files given (--truth FILE ...)");
    }
    if a.robustness {
        return robustness(&a);
    }
    let truth = read_truth(&a)?;
    let preds = read_predictions(a.pred.as_ref().context("--pred DETECTIONS is needed")?)?;
    // Only images that have truth are scored: detections elsewhere have nothing to match.
    let with_truth: std::collections::HashSet<&str> = truth.iter().map(|t| t.image.as_str()).collect();
    let preds: Vec<PredictedBox> = preds.into_iter().filter(|p| with_truth.contains(p.image.as_str())).collect();
    let threshold = match a.threshold {
        Some(t) => t,
        // The model's, or an ensemble's as `kestrel detect` takes it.
        None => {
            let mut metas = Vec::new();
            for m in &a.model {
                metas.extend(kestrel_model::package::read_metas(m)?);
            }
            kestrel_model::package::ensemble_default_threshold(&metas).unwrap_or(0.5)
        }
    };
    let rule = match a.radius_m {
        None => Matching::Iou(a.iou),
        Some(r) if r > 0.0 && r.is_finite() => {
            // The radius in pixels, from the images' GSD (all alike).
            let mut gsds = Vec::new();
            for path in &a.truth {
                let gsd = match (a.gsd, image_beside(path)) {
                    (Some(g), _) => g,
                    (None, Some(img)) => {
                        let info = kestrel_geo::open_raster(&img)?.info().clone();
                        info.gsd_xy_m().map(|(x, y)| (x + y) / 2.0).with_context(|| format!("{}: no georeferencing; give its GSD with --gsd", img.display()))?
                    }
                    (None, None) => bail!("{}: no image beside it to tell the GSD; give --gsd", path.display()),
                };
                gsds.push(gsd);
            }
            let g = gsds[0];
            if gsds.iter().any(|&x| (x - g).abs() > 0.01 * g) {
                bail!("--radius needs test images of one GSD (found {gsds:?} m)");
            }
            Matching::Within(r / g)
        }
        Some(r) => bail!("--radius {r}: give a positive number of metres"),
    };
    let report = evaluate_by(&truth, &preds, rule, threshold);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let r = &report;
        match a.radius_m {
            Some(m) => println!("{} truth objects in {} image(s), centres within {m} m", r.truth, with_truth.len()),
            None => println!("{} truth objects in {} image(s), IoU ≥ {}", r.truth, with_truth.len(), r.iou),
        }
        println!("  at threshold {:.2}: precision {:.3}, recall {:.3}, F1 {:.3} ({} detections)", r.at_default.threshold, r.at_default.precision, r.at_default.recall, r.at_default.f1, r.at_default.detections);
        println!("  at the best threshold {:.2}: precision {:.3}, recall {:.3}, F1 {:.3}", r.at_best.threshold, r.at_best.precision, r.at_best.recall, r.at_best.f1);
        println!("  AP50 {:.3}, AP50:95 {:.3}, count error {:+.1} %", r.ap50, r.ap50_95, r.count_error * 100.0);
        match (r.heading_error_median_deg, r.heading_error_p90_deg) {
            (Some(m), Some(p)) => println!("  heading error: median {m:.1}°, 90th percentile {p:.1}°"),
            _ => println!("  heading error: not measured (the truth has no headings)"),
        }
    }
    Ok(report)
}
