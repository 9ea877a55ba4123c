//! Hard-negative mining: run the network over the labelled training images and keep the
//! confident detections that lie on no labelled object of any class. Retraining with them as
//! negatives teaches the network the look-alikes of its training area (road markings,
//! roof fixtures) instead of leaving it to guess.

use crate::detect::{detect_with, DetectError, DetectOptions, Model};
use kestrel_model::network::Network;
use kestrel_samples::dataset::TrainingSet;
use std::collections::HashMap;

#[derive(Clone, Debug)]
pub struct MineOptions {
    /// Objectness at or above which a detection counts.
    pub threshold: f32,
    /// At most this many negatives per image, strongest first.
    pub max_per_image: usize,
    /// Tile edge in network pixels.
    pub tile_px: usize,
}

impl Default for MineOptions {
    fn default() -> Self {
        MineOptions {
            threshold: 0.5,
            max_per_image: 20,
            tile_px: 384,
        }
    }
}

/// A confident detection where nothing is labelled.
#[derive(Clone, Debug, PartialEq)]
pub struct MinedNegative {
    pub image_uri: String,
    pub centre_px: [f64; 2],
    pub heading_deg: f64,
    pub score: f32,
}

/// Scans every image of `set` as detection does — the dense map's peaks, without the second
/// look, which is what training corrects — and returns its false positives. `labelled` holds,
/// per image URI, the centres (image pixels) of samples of other classes; the set's own chips
/// count too. A detection closer than half an object length to any of them is not a false
/// positive.
pub fn mine_hard_negatives(network: &Network, set: &TrainingSet, labelled: &HashMap<String, Vec<[f64; 2]>>, options: &MineOptions) -> Result<Vec<MinedNegative>, DetectError> {
    let model = Model { networks: std::slice::from_ref(network), contract: &set.contract, class: "" };
    let detect = DetectOptions { threshold: options.threshold, tile_px: options.tile_px, refine_heading: false, second_look: false, ..DetectOptions::default() };
    let mut out = Vec::new();
    for (uri, src, stats, gsd_m) in set.sources() {
        let mut taken: Vec<[f64; 2]> = set.centres(uri).into_iter().map(|(c, _)| c).collect();
        taken.extend(labelled.get(uri).into_iter().flatten().copied());
        let min_dist_px = 0.5 * set.contract.object_length_m / gsd_m;
        // Detections come strongest first after suppression; keep one per place.
        let (mut found, _) = detect_with(src, gsd_m, stats, &model, &detect, |_| {})?;
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut kept: Vec<MinedNegative> = Vec::new();
        for d in found {
            if kept.len() == options.max_per_image {
                break;
            }
            let (x, y) = (d.bbox.cx, d.bbox.cy);
            let near = |p: &[f64; 2]| (p[0] - x).hypot(p[1] - y) < min_dist_px;
            if taken.iter().any(near) || kept.iter().any(|k| near(&k.centre_px)) {
                continue;
            }
            kept.push(MinedNegative { image_uri: uri.to_string(), centre_px: [x, y], heading_deg: d.bbox.heading_deg, score: d.score });
        }
        out.extend(kept);
    }
    Ok(out)
}
