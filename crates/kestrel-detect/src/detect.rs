//! Detection over a whole raster, tile by tile: each tile is read (only the blocks it needs),
//! colour-normalized with the image's statistics, resampled to the model's GSD, scored densely
//! by the network; the peaks of the objectness map in the tile's core become candidates,
//! whose heading is refined by rotational pattern matching; oriented non-maximum suppression
//! over the whole image removes duplicates. A reader thread prepares the next tile while the
//! network scores the current one. Memory holds one or two tiles and the detections.

use crate::geometry::{rotated_iou, OrientedBox};
use crate::scan::{parabola_vertex, peaks, score_tile};
use kestrel_geo::{PixelWindow, RasterSource};
use kestrel_model::infer::Ensemble;
use kestrel_model::network::{Network, STRIDE};
use kestrel_model::package::PackageMeta;
use kestrel_samples::normalize::colour::ColourStats;
use kestrel_samples::normalize::window::NormalizedWindow;
use kestrel_samples::normalize::{chip_move_to_image, resample_square, resample_square_into, Chip, Contract};
use kestrel_samples::HeadingMode;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Geo(#[from] kestrel_geo::GeoError),
    #[error("{path}: {problem}")]
    Input { path: String, problem: String },
    #[error("detection was cancelled")]
    Cancelled,
}

#[derive(Clone, Debug)]
pub struct DetectOptions {
    /// Objectness at or above which a peak becomes a detection.
    pub threshold: f32,
    /// Tile edge in network pixels. A tile overlaps its neighbours by a chip on each side:
    /// at 1,024 that costs 25 % more network work, at 512 57 % (25 Mpx: 3.8 against 3.0
    /// Mpx/s end to end).
    pub tile_px: usize,
    /// Detections overlapping a stronger one by more than this rotated IoU are dropped.
    pub nms_iou: f64,
    /// Area of interest in image pixels `[x0, y0, x1, y1]`.
    pub area_px: Option<[f64; 4]>,
    /// Refine headings by rotational pattern matching (the network scoring the candidate
    /// turned to the canonical pose at neighbouring angles).
    pub refine_heading: bool,
    /// Look at each peak again as the network saw its training chips (see `verify_many`);
    /// without it, the dense map's peaks are the detections.
    pub second_look: bool,
    /// Set by another thread to stop between tiles (a GUI's cancel button).
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions { threshold: 0.5, tile_px: 1024, nms_iou: 0.3, area_px: None, refine_heading: true, second_look: true, cancel: None }
    }
}

/// One detected object.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    pub class: String,
    /// The oriented box in image pixels (heading clockwise from image up).
    pub bbox: OrientedBox,
    pub length_m: f64,
    pub width_m: f64,
    /// The network's objectness.
    pub score: f32,
    /// The network's score of the candidate turned to the canonical pose at the best angle,
    /// when matched.
    pub match_score: Option<f32>,
}

/// Where the time went.
#[derive(Clone, Debug, Default)]
pub struct Timing {
    /// Reading and decoding tiles (reader thread).
    pub decode: Duration,
    /// Colour normalization and resampling (reader thread).
    pub normalize: Duration,
    /// The dense pass of the network over each tile.
    pub network: Duration,
    /// Peaks, rotational matching and the second look (each cutting chips and running the
    /// network on them), suppression.
    pub post: Duration,
    pub wall: Duration,
    /// Megapixels of the source image covered.
    pub megapixels: f64,
}

/// Progress after each tile.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub tiles_done: usize,
    pub tiles: usize,
    pub megapixels_done: f64,
}

/// A tile ready for the network.
struct PreparedTile {
    /// Network-pixel position of the tile's top-left corner and its core.
    left: f64,
    top: f64,
    core: [f64; 4],
    window: NormalizedWindow,
    chip: Chip,
    megapixels: f64,
    decode: Duration,
    normalize: Duration,
}

/// The tiles of an image: cores of `core` network pixels covering `area` (network pixels).
fn tile_grid(area: [f64; 4], core: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut ty = area[1];
    while ty < area[3] {
        let mut tx = area[0];
        while tx < area[2] {
            out.push((tx, ty));
            tx += core;
        }
        ty += core;
    }
    out
}

/// Detects the model's class in `src`, whose ground sample distance is `gsd_m`, with one
/// network or an ensemble of several trained under `meta`'s contract (see [`Model`]).
pub fn detect_raster(src: &dyn RasterSource, gsd_m: f64, stats: &ColourStats, networks: &[Network], meta: &PackageMeta, options: &DetectOptions, progress: impl FnMut(Progress)) -> Result<(Vec<Detection>, Timing), DetectError> {
    let model = Model { networks, contract: &meta.contract, class: meta.classes.first().map_or("", String::as_str) };
    detect_with(src, gsd_m, stats, &model, options, progress)
}

/// What detection needs of a model: during training (mining, calibration) there is no
/// package yet.
pub struct Model<'a> {
    /// One network, or an ensemble: the first proposes candidates from its dense map, and
    /// all of them judge each candidate's views together (their mean outputs, see
    /// [`Ensemble`]), so that an ensemble costs a dense pass and a pass per member over the
    /// views.
    pub networks: &'a [Network],
    pub contract: &'a Contract,
    pub class: &'a str,
}

/// [`detect_raster`] with the model's parts given one by one.
pub fn detect_with(src: &dyn RasterSource, gsd_m: f64, stats: &ColourStats, model: &Model, options: &DetectOptions, mut progress: impl FnMut(Progress)) -> Result<(Vec<Detection>, Timing), DetectError> {
    let info = src.info().clone();
    let contract = model.contract;
    let path = info.path.clone();
    if let Some(&b) = contract.bands.iter().find(|&&b| b >= info.bands as usize) {
        return Err(DetectError::Input { path, problem: format!("the model reads band {} but the image has {} band(s)", b + 1, info.bands) });
    }
    if info.width == 0 || info.height == 0 {
        return Err(DetectError::Input { path, problem: "the image is empty".into() });
    }
    if model.networks.is_empty() {
        return Err(DetectError::Input { path, problem: "no network to detect with".into() });
    }
    let started = Instant::now();
    let zoom = gsd_m / contract.target_gsd_m; // network pixels per image pixel
    let margin = contract.chip_size_px as usize;
    let tile = options.tile_px.max(2 * margin + 4 * STRIDE);
    let core = (tile - 2 * margin) as f64;
    let full = [0.0, 0.0, f64::from(info.width), f64::from(info.height)];
    let area_px = options.area_px.map_or(full, |a| [a[0].max(0.0), a[1].max(0.0), a[2].min(full[2]), a[3].min(full[3])]);
    if area_px[2] <= area_px[0] || area_px[3] <= area_px[1] {
        return Err(DetectError::Input { path, problem: format!("the area of interest {:?} (pixels) lies outside the image", options.area_px.unwrap_or(full)) });
    }
    let area = area_px.map(|v| v * zoom);
    let grid = tile_grid(area, core);
    let tiles = grid.len();
    let mut timing = Timing::default();
    let mut candidates: Vec<Detection> = Vec::new();
    let network = Ensemble::new(model.networks);
    let network = &network;
    let class = model.class.to_string();
    let result: Result<(), DetectError> = std::thread::scope(|scope| {
        let (tx_tiles, rx_tiles) = std::sync::mpsc::sync_channel::<Result<PreparedTile, DetectError>>(2);
        let grid = &grid;
        scope.spawn(move || {
            for &(cx0, cy0) in grid {
                let prepared = (|| {
                    let (left, top) = (cx0 - margin as f64, cy0 - margin as f64);
                    // The tile's square in image pixels, plus a pixel for interpolation.
                    let x0 = (left / zoom - 1.0).floor().max(0.0);
                    let y0 = (top / zoom - 1.0).floor().max(0.0);
                    let x1 = ((left + tile as f64) / zoom + 1.0).ceil().min(f64::from(info.width));
                    let y1 = ((top + tile as f64) / zoom + 1.0).ceil().min(f64::from(info.height));
                    let win = PixelWindow::new(x0 as u32, y0 as u32, (x1 - x0).max(1.0) as u32, (y1 - y0).max(1.0) as u32);
                    let t = Instant::now();
                    let window = NormalizedWindow::read_for(src, win, &contract.bands, stats, &contract.colour)?;
                    let decode = t.elapsed();
                    let t = Instant::now();
                    let centre = ((left + tile as f64 / 2.0) / zoom, (top + tile as f64 / 2.0) / zoom);
                    let chip = resample_square(&window, centre.0, centre.1, 0.0, zoom, tile);
                    let core_box = [cx0, cy0, (cx0 + core).min(area[2]), (cy0 + core).min(area[3])];
                    let megapixels = (core_box[2] - core_box[0]) * (core_box[3] - core_box[1]) / zoom / zoom / 1e6;
                    Ok(PreparedTile { left, top, core: core_box, window, chip, megapixels, decode, normalize: t.elapsed() })
                })();
                let failed = prepared.is_err();
                if tx_tiles.send(prepared).is_err() || failed {
                    break;
                }
            }
        });
        for (i, prepared) in rx_tiles.iter().enumerate() {
            let p = prepared?;
            if options.cancel.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
                return Err(DetectError::Cancelled);
            }
            timing.decode += p.decode;
            timing.normalize += p.normalize;
            let t = Instant::now();
            let grid = score_tile(network.first(), contract, &p.chip);
            timing.network += t.elapsed();
            let t = Instant::now();
            // Proposals: peaks in the tile's core, strongest first, one per half object length.
            let min_gap_px = 0.5 * contract.object_length_m / gsd_m;
            let mut proposals: Vec<Proposal> = Vec::new();
            for peak in peaks(&grid, options.threshold) {
                let cell = peak.row * grid.cols + peak.col;
                // Where the network places the object, or else the map's sub-cell peak.
                let [ox, oy] = grid.offset.get(cell).map_or(peak.offset, |o| o.map(|v| v.clamp(-1.0, 1.0)));
                let u = p.left + grid.origin_px + (peak.col as f64 + ox) * STRIDE as f64;
                let v = p.top + grid.origin_px + (peak.row as f64 + oy) * STRIDE as f64;
                if u < p.core[0] || u >= p.core[2] || v < p.core[1] || v >= p.core[3] {
                    continue;
                }
                let (x, y) = (u / zoom, v / zoom);
                // No object is seen where the image has no data (a nodata collar, beyond
                // the image's edge).
                if !p.window.has_data_at(x, y) {
                    continue;
                }
                if proposals.iter().any(|q| (q.x - x).hypot(q.y - y) < min_gap_px) {
                    continue;
                }
                proposals.push(Proposal { x, y, heading_deg: grid.heading_deg[cell], score: peak.score, size_m: grid.size_m[cell], match_score: None, views: None });
            }
            // A first look, with a network that has the offset head: each proposal cut as the
            // training chips were, moved where that view puts the object, and dropped when the
            // view scores it below half the threshold (the dense map, whose cells see more
            // context than training chips showed, proposes about three times as many as
            // survive). Centred views match rotations better: on the held-out cars street F1
            // at the model's threshold 0.700 → 0.738, and less post-processing.
            if options.second_look && network.has_offset() {
                let looked = verify_by_offset(network, contract, &p.window, &proposals, zoom);
                proposals = proposals
                    .into_iter()
                    .zip(looked)
                    .filter(|(_, v)| v.score >= 0.5 * options.threshold)
                    .map(|(q, v)| Proposal { x: v.x, y: v.y, ..q })
                    .collect();
            }
            if options.refine_heading {
                match_rotations(network, contract, &p.window, &mut proposals, zoom);
            }
            if options.second_look {
                let verified = verify_many(network, contract, &p.window, &proposals, zoom);
                for (q, v) in proposals.iter_mut().zip(verified) {
                    (q.x, q.y, q.heading_deg, q.score, q.size_m) = (v.x, v.y, v.heading_deg, v.score, [v.length_m, v.width_m]);
                }
                if network.has_offset() {
                    views_around_circle(network, contract, &p.window, &mut proposals, zoom, options.threshold);
                }
            }
            for q in proposals.into_iter().filter(|q| q.score >= options.threshold && p.window.has_data_at(q.x, q.y)) {
                let [length_m, width_m] = q.size_m;
                candidates.push(Detection {
                    class: class.clone(),
                    bbox: OrientedBox { cx: q.x, cy: q.y, length: length_m / gsd_m, width: width_m / gsd_m, heading_deg: contract.heading_mode.wrap(q.heading_deg) },
                    length_m,
                    width_m,
                    score: q.score,
                    match_score: q.match_score,
                });
            }
            timing.post += t.elapsed();
            timing.megapixels += p.megapixels;
            progress(Progress { tiles_done: i + 1, tiles, megapixels_done: timing.megapixels });
        }
        Ok(())
    });
    result?;
    let t = Instant::now();
    let detections = suppress(candidates, options.nms_iou);
    timing.post += t.elapsed();
    timing.wall = started.elapsed();
    Ok((detections, timing))
}

/// Rotational pattern matching, with the pattern the network learned from the normalized
/// positives: each candidate is cut turned to the canonical pose at angles around its heading
/// (and around the reverse, for directed classes, so that front and back are told apart), each
/// view is scored by the network at its centre cell, and the best angle — refined by a
/// parabola through its neighbours — becomes the heading, its score the match score. (A
/// correlation with the mean positive, used before, was a weaker judge than the classifier:
/// on the held-out cars street it lowered AP50 from 0.644 to 0.595.)
fn match_rotations(network: &Ensemble, contract: &kestrel_samples::normalize::Contract, window: &NormalizedWindow, candidates: &mut [Proposal], zoom: f64) {
    // Three views 7.5° apart served the held-out cars street as well as five 5° apart
    // (AP50 0.725 and 0.720) for 40 % less post-processing.
    const STEP_DEG: f64 = 7.5;
    const STEPS: i32 = 1;
    let starts: &[f64] = match contract.heading_mode {
        HeadingMode::Directed => &[0.0, 180.0],
        HeadingMode::Axis => &[0.0],
    };
    let turns: Vec<f64> = starts.iter().flat_map(|&s| (-STEPS..=STEPS).map(move |k| s + f64::from(k) * STEP_DEG)).collect();
    let per_start = (2 * STEPS + 1) as usize;
    for_views(network, contract, window, candidates, zoom, &turns, |q, views| {
        let score = |i: usize| views.score(i);
        let best = (1..turns.len()).fold(0, |b, i| if score(i) >= score(b) { i } else { b });
        // Between two neighbours of the same start, a parabola places the peak.
        let k = best % per_start;
        let vertex = if k > 0 && k + 1 < per_start { parabola_vertex(score(best - 1), score(best), score(best + 1)) } else { 0.0 };
        let cut_deg = q.heading_deg + turns[best];
        q.heading_deg = contract.heading_mode.wrap(cut_deg + vertex * STEP_DEG);
        q.match_score = Some(score(best));
        q.views = Some(((0..turns.len()).map(score).sum::<f32>(), turns.len()));
        // The best view's offset head says where the object lies from the view's centre.
        let (dx, dy) = offset_to_image(views.offset(best), cut_deg - contract.canonical_heading_deg, zoom);
        (q.x, q.y) = (q.x + dx, q.y + dy);
    });
}

/// Further views of each candidate, spread over the turns rotational matching leaves out.
/// Each view is a fresh look at the object (its pixels sampled along other axes, the network
/// reading it in another orientation), so the views' readings are averaged with the centred
/// view's own:
/// - the score: the mean of the centred view's objectness and of all the views' (the matching
///   ones too). The network learned the class at every heading, but not evenly well, and an
///   object unlike the training data (a roof dormer) scores by the angle it is cut at: views
///   at the matched heading alone made the score depend on how the image lies. On the cars
///   street turned by 15°..345°: 14 of 23 turns within 3 AP50 points of the unturned image
///   with them, 8 without (turned 180°, exactly: −0.2 points against −4.4).
/// - the heading (circular mean of each view's cut plus its heading head's reading), the size
///   (geometric mean) and the position (the views' offset heads, with the centred view's
///   none, since it was moved by it already). With one reading each, a box lay on average
///   3–4° and 8 % off and an eighth of the boxes on the held-out cars street missed IoU 0.5
///   with their car; averaged, AP50 0.789 → 0.851 and AP50:95 0.273 → 0.363 (one model).
///
/// A candidate that could not reach `threshold` even if every further view scored 1 is
/// dropped without them: at a working threshold that is most candidates.
fn views_around_circle(network: &Ensemble, contract: &kestrel_samples::normalize::Contract, window: &NormalizedWindow, candidates: &mut Vec<Proposal>, zoom: f64, threshold: f32) {
    // Three views serve as well as seven or eleven (cars street, one model: AP50 0.851, 0.851,
    // 0.856) for half the cost or less.
    let turns: &[f64] = match contract.heading_mode {
        HeadingMode::Directed => &[90.0, 270.0],
        HeadingMode::Axis => &[45.0, 90.0, 135.0],
    };
    let extra = turns.len();
    // Own score and the matching views' mean, with the further views' objectness summing to
    // `further`.
    let combined = |q: &Proposal, further: f32| match q.views {
        Some((sum, n)) => 0.5 * (q.score + (sum + further) / (n + extra) as f32),
        None => q.score,
    };
    candidates.retain(|q| combined(q, extra as f32) >= threshold);
    // Without rotational matching (`refine_heading` off) no candidate has views.
    if candidates.iter().all(|q| q.views.is_none()) {
        return;
    }
    let mode = contract.heading_mode;
    for_views(network, contract, window, candidates, zoom, turns, |q, views| {
        let mut headings = HeadingVotes::default();
        headings.add(q.heading_deg, mode);
        let mut ln_size_m = q.size_m.map(f64::ln);
        let mut shift_px = [0.0, 0.0];
        for (i, turn) in turns.iter().enumerate() {
            let cut_deg = q.heading_deg + turn;
            headings.add(cut_deg + views.residual_deg(i, mode), mode);
            let (ln_length, ln_width) = views.ln_size_m(i);
            ln_size_m[0] += f64::from(ln_length);
            ln_size_m[1] += f64::from(ln_width);
            let (dx, dy) = offset_to_image(views.offset(i), cut_deg - contract.canonical_heading_deg, zoom);
            shift_px[0] += dx;
            shift_px[1] += dy;
        }
        let looks = (extra + 1) as f64;
        q.score = combined(q, (0..extra).map(|i| views.score(i)).sum());
        q.views = None;
        q.heading_deg = headings.mean_deg(mode).unwrap_or(q.heading_deg);
        q.size_m = ln_size_m.map(|v| (v / looks).exp());
        (q.x, q.y) = (q.x + shift_px[0] / looks, q.y + shift_px[1] / looks);
    });
}

/// Cuts each candidate turned to the canonical pose and then by each of `turns` (degrees),
/// scores the views in batches, and hands each candidate its views' readings at the centre
/// cell, by turn index (a batch's chips are all cut before any candidate of it is handed).
fn for_views(network: &Ensemble, contract: &kestrel_samples::normalize::Contract, window: &NormalizedWindow, candidates: &mut [Proposal], zoom: f64, turns: &[f64], mut each: impl FnMut(&mut Proposal, &Views)) {
    /// Candidates per forward pass.
    const PER_PASS: usize = 32;
    let cuts: Vec<Cut> = turns.iter().map(|&turn_deg| Cut { dx: 0.0, dy: 0.0, turn_deg }).collect();
    let mut data = Vec::new();
    for part in candidates.chunks_mut(PER_PASS) {
        let heads = score_cuts(network, contract, window, zoom, part, &cuts, &mut data);
        for (c, q) in part.iter_mut().enumerate() {
            each(q, &Views { heads: &heads, first: c * turns.len() });
        }
    }
}

/// A chip cut of a candidate: moved by (dx, dy) image pixels and turned by `turn_deg` from
/// the canonical pose at the candidate's heading.
#[derive(Clone, Copy, Debug)]
struct Cut {
    dx: f64,
    dy: f64,
    turn_deg: f64,
}

/// Cuts each of `cuts` of every candidate of `part` into `data` (one buffer for a tile's
/// passes: each chip is cut whole into it), on all cores, and scores the chips at their
/// centre cells: output `c · cuts.len() + i` is candidate `c`'s cut `i`.
#[allow(clippy::too_many_arguments)]
fn score_cuts(network: &Ensemble, contract: &kestrel_samples::normalize::Contract, window: &NormalizedWindow, zoom: f64, part: &[Proposal], cuts: &[Cut], data: &mut Vec<f32>) -> kestrel_model::infer::HeadOutputs {
    let size = contract.chip_size_px as usize;
    let chip_len = contract.bands.len() * size * size;
    data.resize(part.len() * cuts.len() * chip_len, 0.0);
    let mut slots: Vec<(&Proposal, &mut [f32])> = part.iter().zip(data.chunks_mut(cuts.len() * chip_len)).collect();
    kestrel_samples::parallel::par_for_each_mut(&mut slots, |(q, out)| {
        for (cut, dst) in cuts.iter().zip(out.chunks_mut(chip_len)) {
            resample_square_into(window, q.x + cut.dx, q.y + cut.dy, q.heading_deg + cut.turn_deg - contract.canonical_heading_deg, zoom, size, dst);
        }
    });
    network.forward_centre(data, part.len() * cuts.len(), contract.bands.len(), size, size)
}

/// One candidate's views in a batch of the network's outputs, by turn index.
struct Views<'a> {
    /// The centre cells of the batch's views.
    heads: &'a kestrel_model::infer::HeadOutputs,
    first: usize,
}

impl Views<'_> {
    fn score(&self, i: usize) -> f32 {
        self.heads.objectness(self.first + i, 0)
    }
    fn offset(&self, i: usize) -> Option<(f32, f32)> {
        self.heads.offset_at(self.first + i, 0)
    }
    /// The size head's reading of view `i`: ln length_m, ln width_m.
    fn ln_size_m(&self, i: usize) -> (f32, f32) {
        self.heads.size_at(self.first + i, 0)
    }
    /// The heading head's reading of view `i`: the object's heading from the view's up, in
    /// degrees.
    fn residual_deg(&self, i: usize, mode: HeadingMode) -> f64 {
        heading_from_head(self.heads.heading_at(self.first + i, 0), mode)
    }
}

/// The heading head's (sin, cos) of θ (directed classes) or 2θ (axis ones) as θ in degrees.
fn heading_from_head((sin, cos): (f32, f32), mode: HeadingMode) -> f64 {
    f64::from(sin).atan2(f64::from(cos)).to_degrees() * mode.period_deg() / 360.0
}

/// Heading estimates of several views, summed as unit vectors of the angle the class's
/// symmetry allows (θ for directed classes, 2θ for axis ones).
#[derive(Clone, Copy, Debug, Default)]
struct HeadingVotes([f64; 2]);

impl HeadingVotes {
    fn add(&mut self, heading_deg: f64, mode: HeadingMode) {
        let a = (heading_deg * 360.0 / mode.period_deg()).to_radians();
        self.0[0] += a.cos();
        self.0[1] += a.sin();
    }
    /// Their circular mean, when there are any.
    fn mean_deg(&self, mode: HeadingMode) -> Option<f64> {
        (self.0[0].hypot(self.0[1]) > 1e-9).then(|| mode.wrap(self.0[1].atan2(self.0[0]).to_degrees() * mode.period_deg() / 360.0))
    }
}

/// A peak of the dense map, on its way to becoming a detection.
struct Proposal {
    x: f64,
    y: f64,
    heading_deg: f64,
    score: f32,
    size_m: [f64; 2],
    match_score: Option<f32>,
    /// Sum and count of the rotational matching views' objectness, until the views around
    /// the circle join them in the score.
    views: Option<(f32, usize)>,
}

/// A candidate as the network sees it centred.
#[derive(Clone, Copy, Debug)]
pub struct Verified {
    pub x: f64,
    pub y: f64,
    pub score: f32,
    pub heading_deg: f64,
    pub length_m: f64,
    pub width_m: f64,
}

/// The second look: the network was trained on chips with the object at the centre, turned to
/// the canonical pose, so each candidate is cut that way on a 3×3 grid of positions half a cell
/// apart; the position is where the centre cell's score peaks (a parabola through the grid),
/// and the score, the heading (the cut's angle plus what the network reads in the chip) and
/// the size are read there.
fn verify_many(network: &Ensemble, contract: &kestrel_samples::normalize::Contract, window: &NormalizedWindow, candidates: &[Proposal], zoom: f64) -> Vec<Verified> {
    if network.has_offset() {
        return verify_by_offset(network, contract, window, candidates, zoom);
    }
    /// Candidates per forward pass (9 chips each).
    const PER_PASS: usize = 32;
    let step = STRIDE as f64 / 2.0 / zoom; // image pixels
    let offsets: Vec<Cut> = (-1..=1).flat_map(|j| (-1..=1).map(move |i| Cut { dx: f64::from(i) * step, dy: f64::from(j) * step, turn_deg: 0.0 })).collect();
    let m = offsets.len();
    let mut out = Vec::with_capacity(candidates.len());
    let mut data = Vec::new();
    for part in candidates.chunks(PER_PASS) {
        let heads = score_cuts(network, contract, window, zoom, part, &offsets, &mut data);
        // The heads at each chip's centre cell (as training read them), the only cell read.
        let centre = 0;
        for (c, q) in part.iter().enumerate() {
            let (x, y, h) = (q.x, q.y, q.heading_deg);
            let score = |i: usize| heads.objectness(c * m + i, centre);
            // The last of equal scores, as `max_by` picks.
            let best = (1..m).fold(0, |b, i| if score(i) >= score(b) { i } else { b });
            // Sub-step position from the scores around the best along each axis.
            let (bi, bj) = (best % 3, best / 3);
            let along = |a: Option<usize>, b: Option<usize>| match (a, b) {
                (Some(a), Some(b)) => parabola_vertex(score(a), score(best), score(b)),
                _ => 0.0,
            };
            let sx = along((bi > 0).then(|| best - 1), (bi < 2).then_some(best + 1));
            let sy = along((bj > 0).then(|| best - 3), (bj < 2).then_some(best + 3));
            let chip = c * m + best;
            let (ln_length, ln_width) = heads.size_at(chip, centre);
            let residual = heading_from_head(heads.heading_at(chip, centre), contract.heading_mode);
            out.push(Verified {
                x: x + offsets[best].dx + sx * step,
                y: y + offsets[best].dy + sy * step,
                score: score(best),
                heading_deg: contract.heading_mode.wrap(h + residual),
                length_m: f64::from(ln_length).exp(),
                width_m: f64::from(ln_width).exp(),
            });
        }
    }
    out
}

/// The second look with a network that has the offset head: each candidate is cut centred
/// and turned to the canonical pose, as training cut positives; that chip gives the score
/// (with the rotational views'), heading residual and size, and its offset head a last
/// correction of the position — one chip per candidate instead of a grid of nine.
fn verify_by_offset(network: &Ensemble, contract: &kestrel_samples::normalize::Contract, window: &NormalizedWindow, candidates: &[Proposal], zoom: f64) -> Vec<Verified> {
    /// Candidates per forward pass.
    const PER_PASS: usize = 64;
    // One look: rotational matching's best view has placed the candidate already (its
    // offset); a second look changed AP50 by −0.003 to +0.006 on the cars street.
    let mut out = Vec::with_capacity(candidates.len());
    let mut data = Vec::new();
    for part in candidates.chunks(PER_PASS) {
        let heads = score_cuts(network, contract, window, zoom, part, &[Cut { dx: 0.0, dy: 0.0, turn_deg: 0.0 }], &mut data);
        let centre = 0; // the only cell: each chip's centre
        for (c, q) in part.iter().enumerate() {
            let (dx, dy) = offset_to_image(heads.offset_at(c, centre), q.heading_deg - contract.canonical_heading_deg, zoom);
            // This view's score is later averaged with the rotational views' mean (see
            // `views_around_circle`): several looks at the object judge it more steadily than
            // one (AP50 0.725 → 0.739 on the cars street).
            let score = heads.objectness(c, centre);
            let (ln_length, ln_width) = heads.size_at(c, centre);
            let residual = heading_from_head(heads.heading_at(c, centre), contract.heading_mode);
            out.push(Verified {
                x: q.x + dx,
                y: q.y + dy,
                score,
                heading_deg: contract.heading_mode.wrap(q.heading_deg + residual),
                length_m: f64::from(ln_length).exp(),
                width_m: f64::from(ln_width).exp(),
            });
        }
    }
    out
}

/// The offset head's reading of a view cut turned by `cut_deg` (right, down, in output
/// cells), as a move in image pixels; none without the head. A move is capped at one cell:
/// more means the view holds another object, or none.
fn offset_to_image(offset: Option<(f32, f32)>, cut_deg: f64, zoom: f64) -> (f64, f64) {
    let Some((right, down)) = offset else { return (0.0, 0.0) };
    let px = STRIDE as f64 / zoom;
    chip_move_to_image(f64::from(right).clamp(-1.0, 1.0) * px, f64::from(down).clamp(-1.0, 1.0) * px, cut_deg)
}

/// Oriented non-maximum suppression: strongest first, dropping any detection that overlaps a
/// kept one by more than `iou`. A grid of cells one object wide keeps it near-linear.
pub fn suppress(mut detections: Vec<Detection>, iou: f64) -> Vec<Detection> {
    detections.sort_by(|a, b| b.score.total_cmp(&a.score));
    let cell = detections.iter().map(|d| d.bbox.length.max(d.bbox.width)).fold(1.0, f64::max);
    let key = |d: &Detection| ((d.bbox.cx / cell).floor() as i64, (d.bbox.cy / cell).floor() as i64);
    let mut buckets: std::collections::HashMap<(i64, i64), Vec<usize>> = std::collections::HashMap::new();
    let mut kept: Vec<Detection> = Vec::new();
    for d in detections {
        let (kx, ky) = key(&d);
        let clash = (-1..=1).any(|dx| (-1..=1).any(|dy| buckets.get(&(kx + dx, ky + dy)).is_some_and(|ids| ids.iter().any(|&i| rotated_iou(&kept[i].bbox, &d.bbox) > iou))));
        if !clash {
            buckets.entry((kx, ky)).or_default().push(kept.len());
            kept.push(d);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f64, score: f32) -> Detection {
        Detection { class: "car".into(), bbox: OrientedBox { cx: x, cy: 0.0, length: 10.0, width: 4.0, heading_deg: 0.0 }, length_m: 1.0, width_m: 1.0, score, match_score: None }
    }

    #[test]
    fn suppression_keeps_the_strongest_of_overlapping_boxes() {
        let kept = suppress(vec![det(0.0, 0.6), det(0.5, 0.9), det(20.0, 0.7), det(3.9, 0.8)], 0.3);
        let xs: Vec<f64> = kept.iter().map(|d| d.bbox.cx).collect();
        // 0.5 suppresses 0.0 (IoU 0.78); 3.9 overlaps 0.5 by IoU 0.06/... (width 4 → IoU 0.026) and stays.
        assert_eq!(xs, vec![0.5, 3.9, 20.0]);
    }

    /// An untrained network calls something an object almost everywhere at threshold 0; on
    /// an image whose left half is nodata none of those may lie there, nor beyond the image.
    #[test]
    fn nothing_is_detected_where_the_image_has_no_data() {
        use kestrel_geo::raster::{MemoryRaster, Samples};
        let (w, h) = (160u32, 120u32);
        let mut rng = kestrel_samples::synthetic::Rng::new(7);
        let values: Vec<u8> = (0..w * h * 3)
            .map(|i| if (i / 3) % w < w / 2 { 0 } else { 30 + (rng.unit() * 200.0) as u8 })
            .collect();
        let src = MemoryRaster::new("half.tif", w, h, 3, Samples::U8(values), None).with_nodata(0.0);
        let stats = ColourStats::from_raster(&src).unwrap();
        let contract = Contract {
            version: 1,
            target_gsd_m: 0.5,
            chip_size_px: 24,
            bands: vec![0, 1, 2],
            colour: kestrel_samples::normalize::ColourMethod::Stretch,
            heading_mode: HeadingMode::Directed,
            canonical_heading_deg: 0.0,
            object_length_m: 4.0,
            object_width_m: 2.0,
        };
        let config = kestrel_model::network::NetworkConfig::new(3, 1).with_offset_head(true);
        let network = config.init(&kestrel_model::device::current());
        let model = Model { networks: std::slice::from_ref(&network), contract: &contract, class: "thing" };
        let options = DetectOptions { threshold: 0.0, ..Default::default() };
        let (found, _) = detect_with(&src, 0.5, &stats, &model, &options, |_| {}).unwrap();
        assert!(found.iter().any(|d| d.bbox.cx > 90.0), "the network found nothing on the data half; the test proves nothing");
        for d in &found {
            let (x, y) = (d.bbox.cx, d.bbox.cy);
            assert!(x >= f64::from(w / 2) && x < f64::from(w) && y >= 0.0 && y < f64::from(h), "a detection at ({x:.1}, {y:.1}) lies on nodata or off the image");
        }
    }

    #[test]
    fn heading_votes_average_on_the_circle_of_the_class_symmetry() {
        // An axis class: 178° and 4° lie 6° apart across the wrap, their mean is 1°, not 91°.
        let mut axis = HeadingVotes::default();
        axis.add(178.0, HeadingMode::Axis);
        axis.add(364.0, HeadingMode::Axis);
        let mean = axis.mean_deg(HeadingMode::Axis).unwrap();
        assert!(HeadingMode::Axis.difference_deg(mean, 1.0) < 1e-9, "{mean}");
        // A directed class: 350° and 20° average to 5°; front and back do not cancel into an axis.
        let mut directed = HeadingVotes::default();
        directed.add(350.0, HeadingMode::Directed);
        directed.add(20.0, HeadingMode::Directed);
        let mean = directed.mean_deg(HeadingMode::Directed).unwrap();
        assert!(HeadingMode::Directed.difference_deg(mean, 5.0) < 1e-9, "{mean}");
        assert_eq!(HeadingVotes::default().mean_deg(HeadingMode::Axis), None);
    }

    #[test]
    fn the_grid_covers_the_area_once() {
        let g = tile_grid([0.0, 0.0, 250.0, 100.0], 100.0);
        assert_eq!(g, vec![(0.0, 0.0), (100.0, 0.0), (200.0, 0.0)]);
    }
}
