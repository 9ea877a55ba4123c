//! Hard-negative mining: run the network over the labelled training images and keep the
//! confident detections that lie on no labelled object of any class. Retraining with them as
//! negatives teaches the network the look-alikes of its training area (road markings,
//! roof fixtures) instead of leaving it to guess.

use crate::scan::{peaks, score_tile};
use kestrel_model::network::{Network, STRIDE};
use kestrel_samples::chips::ChipError;
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

/// Scans every image of `set` and returns its false positives. `labelled` holds, per image
/// URI, the centres (image pixels) of samples of other classes; the set's own chips count
/// too. A detection closer than half an object length to any of them is not a false positive.
pub fn mine_hard_negatives(
    network: &Network,
    set: &TrainingSet,
    labelled: &HashMap<String, Vec<[f64; 2]>>,
    options: &MineOptions,
) -> Result<Vec<MinedNegative>, ChipError> {
    let contract = &set.contract;
    let margin = contract.chip_size_px as usize;
    let tile = options.tile_px.max(2 * margin + 4 * STRIDE);
    let core = tile - 2 * margin;
    let mut out = Vec::new();
    for (uri, width, height, gsd_m) in set.images() {
        let zoom = gsd_m / contract.target_gsd_m; // network pixels per image pixel
        let (w_t, h_t) = (f64::from(width) * zoom, f64::from(height) * zoom);
        let mut taken: Vec<[f64; 2]> = set.centres(&uri).into_iter().map(|(c, _)| c).collect();
        taken.extend(labelled.get(&uri).into_iter().flatten().copied());
        let min_dist_px = 0.5 * contract.object_length_m / gsd_m;
        let mut found: Vec<MinedNegative> = Vec::new();
        let mut ty = 0.0;
        while ty < h_t {
            let mut tx = 0.0;
            while tx < w_t {
                // The tile spans [tx − margin, tx − margin + tile) in network pixels; its
                // core [tx, tx + core) is where its peaks are kept.
                let (left, top) = (tx - margin as f64, ty - margin as f64);
                let centre = (
                    (left + tile as f64 / 2.0) / zoom,
                    (top + tile as f64 / 2.0) / zoom,
                );
                let chip = set.cut_tile(
                    &uri,
                    centre.0.clamp(0.0, f64::from(width) - 1.0),
                    centre.1.clamp(0.0, f64::from(height) - 1.0),
                    tile,
                )?;
                // cut_tile clamps the centre into the image; work from where it really lies.
                let left = centre.0.clamp(0.0, f64::from(width) - 1.0) * zoom - tile as f64 / 2.0;
                let top = centre.1.clamp(0.0, f64::from(height) - 1.0) * zoom - tile as f64 / 2.0;
                let grid = score_tile(network, contract, &chip);
                for p in peaks(&grid, options.threshold) {
                    let u = left + grid.origin_px + (p.col as f64 + p.offset[0]) * STRIDE as f64;
                    let v = top + grid.origin_px + (p.row as f64 + p.offset[1]) * STRIDE as f64;
                    if u < tx
                        || u >= tx + core as f64
                        || v < ty
                        || v >= ty + core as f64
                        || u >= w_t
                        || v >= h_t
                    {
                        continue;
                    }
                    let (x, y) = (u / zoom, v / zoom);
                    if taken
                        .iter()
                        .any(|t| (t[0] - x).hypot(t[1] - y) < min_dist_px)
                    {
                        continue;
                    }
                    let i = p.row * grid.cols + p.col;
                    found.push(MinedNegative {
                        image_uri: uri.clone(),
                        centre_px: [x, y],
                        heading_deg: grid.heading_deg[i],
                        score: p.score,
                    });
                }
                tx += core as f64;
            }
            ty += core as f64;
        }
        // Strongest first, one per place.
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut kept: Vec<MinedNegative> = Vec::new();
        for f in found {
            if kept.len() == options.max_per_image {
                break;
            }
            if kept.iter().all(|k| {
                (k.centre_px[0] - f.centre_px[0]).hypot(k.centre_px[1] - f.centre_px[1])
                    >= min_dist_px
            }) {
                kept.push(f);
            }
        }
        out.extend(kept);
    }
    Ok(out)
}
