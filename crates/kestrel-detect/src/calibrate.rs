//! The model's default detection threshold, chosen where detection on the validation images
//! — whole images, scanned as `kestrel detect` does — finds their labelled objects with the
//! best F1, or the lowest threshold within [`THRESHOLD_F1_TOLERANCE`] of it. A detection finds an object when its centre lies within half an object length of
//! the object's and no stronger detection found it first.

use crate::detect::{detect_raster, DetectError, DetectOptions};
use kestrel_model::network::Network;
use kestrel_model::package::PackageMeta;
use kestrel_samples::dataset::TrainingSet;
pub use kestrel_model::package::DetectionCalibration;

/// The lowest threshold whose validation F1 lies within this of the best is kept. F1 is flat
/// near its top, and an area unlike the validation one scores its objects lower. Three cars
/// models, their validation frames scored by `kestrel eval` at thresholds 0.05 apart: the
/// lowest within 0.01 of the best (0.85, 0.75, 0.85 against their calibrated 0.87, 0.79,
/// 0.90) scored the unseen street at F1 0.826, 0.676, 0.823 against 0.821, 0.680, 0.784.
pub const THRESHOLD_F1_TOLERANCE: f64 = 0.01;

/// Scans the images of `set` and picks the lowest threshold within
/// [`THRESHOLD_F1_TOLERANCE`] of the best F1.
pub fn calibrate_threshold(network: &Network, meta: &PackageMeta, set: &TrainingSet) -> Result<Option<DetectionCalibration>, DetectError> {
    let options = DetectOptions { threshold: 0.05, ..Default::default() };
    let mut ranked: Vec<(f32, bool)> = Vec::new();
    let mut objects = 0;
    let sources = set.sources();
    for &(uri, src, stats, gsd_m) in &sources {
        let truth: Vec<[f64; 2]> = set.centres(uri).into_iter().filter(|(_, positive)| *positive).map(|(c, _)| c).collect();
        objects += truth.len();
        let (mut dets, _) = detect_raster(src, gsd_m, stats, network, meta, &options, |_| {})?;
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
    let mut points: Vec<DetectionCalibration> = Vec::new();
    let mut tp = 0usize;
    for (k, &(score, hit)) in ranked.iter().enumerate() {
        tp += usize::from(hit);
        // Only where the next detection scores lower: a threshold keeps all of a tie.
        if ranked.get(k + 1).is_some_and(|n| n.0 == score) {
            continue;
        }
        let (p, r) = (tp as f64 / (k + 1) as f64, tp as f64 / objects as f64);
        let f1 = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
        points.push(DetectionCalibration { threshold: score, precision: p, recall: r, f1, objects, images: sources.len() });
    }
    Ok(lowest_near_best(points))
}

/// Of thresholds and their F1, the lowest threshold within [`THRESHOLD_F1_TOLERANCE`] of the
/// best F1.
fn lowest_near_best(points: Vec<DetectionCalibration>) -> Option<DetectionCalibration> {
    let best = points.iter().map(|p| p.f1).fold(f64::NEG_INFINITY, f64::max);
    points.into_iter().filter(|p| p.f1 >= best - THRESHOLD_F1_TOLERANCE).min_by(|a, b| a.threshold.total_cmp(&b.threshold))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_threshold_near_the_best_f1_is_kept() {
        let point = |threshold: f32, f1: f64| DetectionCalibration { threshold, precision: f1, recall: f1, f1, objects: 10, images: 1 };
        let kept = lowest_near_best(vec![point(0.95, 0.90), point(0.9, 0.951), point(0.85, 0.946), point(0.8, 0.94), point(0.5, 0.89)]).unwrap();
        assert_eq!(kept.threshold, 0.85, "0.85 lies within 0.01 of the best F1 (0.951 at 0.9), 0.8 does not");
        assert!(lowest_near_best(Vec::new()).is_none());
    }
}
