//! The model's default detection threshold, chosen where detection on the validation images
//! — whole images, scanned as `kestrel detect` does — finds their labelled objects with the
//! best F1. A detection finds an object when its centre lies within half an object length of
//! the object's and no stronger detection found it first.

use crate::detect::{detect_raster, DetectError, DetectOptions};
use kestrel_model::network::Network;
use kestrel_model::package::PackageMeta;
use kestrel_samples::dataset::TrainingSet;
pub use kestrel_model::package::DetectionCalibration;

/// Scans the images of `set` and picks the threshold of best F1.
pub fn calibrate_threshold(network: &Network, meta: &PackageMeta, set: &TrainingSet) -> Result<Option<DetectionCalibration>, DetectError> {
    let options = DetectOptions { threshold: 0.05, ..Default::default() };
    let mut ranked: Vec<(f32, bool)> = Vec::new();
    let mut objects = 0;
    let sources = set.sources();
    for &(uri, src, stats, gsd_m) in &sources {
        let truth: Vec<[f64; 2]> = set.centres(uri).into_iter().filter(|(_, positive)| *positive).map(|(c, _)| c).collect();
        objects += truth.len();
        let (mut dets, _) = detect_raster(src, gsd_m, stats, std::slice::from_ref(network), meta, &options, |_| {})?;
        dets.sort_by(|a, b| b.score.total_cmp(&a.score));
        let reach = 0.5 * meta.contract.object_length_m / gsd_m;
        let mut taken = vec![false; truth.len()];
        for d in dets {
            let hit = truth
                .iter()
                .enumerate()
                .filter(|(i, t)| !taken[*i] && (t[0] - d.bbox.cx).hypot(t[1] - d.bbox.cy) < reach)
                .min_by(|a, b| (a.1[0] - d.bbox.cx).hypot(a.1[1] - d.bbox.cy).total_cmp(&(b.1[0] - d.bbox.cx).hypot(b.1[1] - d.bbox.cy)))
                .map(|(i, _)| i);
            if let Some(i) = hit {
                taken[i] = true;
            }
            ranked.push((d.score, hit.is_some()));
        }
    }
    if objects == 0 || ranked.is_empty() {
        return Ok(None);
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut best: Option<DetectionCalibration> = None;
    let mut tp = 0usize;
    for (k, &(score, hit)) in ranked.iter().enumerate() {
        tp += usize::from(hit);
        // Only where the next detection scores lower: a threshold keeps all of a tie.
        if ranked.get(k + 1).is_some_and(|n| n.0 == score) {
            continue;
        }
        let (p, r) = (tp as f64 / (k + 1) as f64, tp as f64 / objects as f64);
        let f1 = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
        if best.as_ref().is_none_or(|b| f1 > b.f1) {
            best = Some(DetectionCalibration { threshold: score, precision: p, recall: r, f1, objects, images: sources.len() });
        }
    }
    Ok(best)
}
