//! The training-data API: normalized chips with labels, cut on the fly from the imagery so
//! that large sets are never held in memory, with augmentation (rotation with the heading
//! label turned alike, mirror flips, scale and colour jitter). Deterministic for a seed:
//! every item draws from its own generator seeded by (seed, epoch, index), so the result does
//! not depend on the number of threads.

use crate::chips::{ChipError, ChipRecord, ChipSet, OpenImage};
use crate::normalize::window::NormalizedWindow;
use crate::normalize::{
    chip_radius_px, resample_chip, Chip, Contract, HeadingSource,
};
use crate::sample::{HeadingMode, Polarity};
use crate::synthetic::Rng;
use std::collections::HashMap;

/// How to augment.
#[derive(Clone, Debug)]
pub struct Augment {
    /// Rotate every chip by a uniform random angle in ±`rotate_deg` (360 = any heading).
    pub rotate_deg: f64,
    /// Mirror left–right with probability 0.5.
    pub flip: bool,
    /// Scale by a factor in [1 − s, 1 + s].
    pub scale: f64,
    /// Per-band gain in [1 − c, 1 + c] and offset in ±c/2 on normalized values (heights get
    /// the gain only).
    pub colour: f32,
    /// With probability 0.5, darken the colour bands (not heights) by one factor in
    /// [1 − s, 1]: an object in a building's shadow is darker and flatter than anything a
    /// per-image colour normalization can undo, and a sunny training area has few of them.
    pub shade: f32,
    /// Cut positives off-centre by up to this many chip pixels along each axis, so that the
    /// network learns where the object lies from the chip's centre (the offset head) and
    /// scores an object it sees slightly off-centre as it would a centred one.
    pub shift_px: f64,
    /// Probability that a positive with a known size is turned into a decoy negative: the
    /// object's rectangle filled flat with its own mean colour (its shadow and surroundings
    /// kept), so that the network must learn the object's inner structure rather than "a
    /// bright blob of the right size" (roof lights and dormers fooled it on a held-out street).
    /// Positives about flat inside are left alone: see [`DECOY_MIN_STRUCTURE`].
    pub decoy: f64,
    /// Probability that the colour bands of a chip are shuffled (RGB only: heights and
    /// single bands are left alone), so that no colour of object or surroundings — a red roof
    /// the training area lacks — becomes a cue.
    pub band_shuffle: f64,
    /// Probability that a positive is shown as a negative at a size its class does not
    /// have: cut at a GSD that shows it 0.55–0.7× or 1.45–1.8× as long (beyond the scale
    /// jitter's ±`scale`). Chips are normalized to one GSD, so an object's size in metres
    /// is a cue a detector can use: a car-like box of 3 m (a roof dormer) or 7 m (a van) is
    /// not a car.
    pub wrong_size: f64,
    /// With probability 0.5, blur the chip with a Gaussian of 0.3 to this many chip pixels:
    /// imagery resampled once more (a turned or reprojected raster, a softer sensor) is
    /// blurrier than the training chips. Without it the cars street turned by angles that
    /// resample it lost 3–6 AP50 points, and the exact quarter turns gained as much; with
    /// it 21 of 23 turns lay within 3 points of the untouched image (seed 1; 11 without),
    /// but 10 with seed 2. The NEON trees: F1 0.334 with it, 0.266 without.
    pub blur_px: f64,
}

impl Augment {
    pub fn none() -> Self {
        Augment {
            rotate_deg: 0.0,
            flip: false,
            scale: 0.0,
            colour: 0.0,
            shade: 0.0,
            shift_px: 0.0,
            decoy: 0.0,
            band_shuffle: 0.0,
            wrong_size: 0.0,
            blur_px: 0.0,
        }
    }
}

impl Default for Augment {
    fn default() -> Self {
        Augment {
            rotate_deg: 180.0,
            flip: true,
            scale: 0.1,
            colour: 0.1,
            shade: 0.7,
            shift_px: 6.0,
            decoy: 0.0,
            band_shuffle: 0.0,
            wrong_size: 0.0,
            blur_px: 1.0,
        }
    }
}

/// The share of positives shown at a wrong size for a class of one size, by default. On the
/// held-out cars street, three runs with it: F1 0.823, 0.680, 0.791, mean AP50 0.776, roof
/// dormers at score ≥ 0.9 23, 122, 23; five runs without: F1 0.620–0.797, mean AP50 0.717,
/// dormers 82–250.
pub const AUTO_WRONG_SIZE_SHARE: f64 = 0.2;

/// [`TrainingSet::auto_wrong_size_share`]'s rule on the positives' lengths (metres): a class
/// needs 20 sized positives, 90 % of them within 0.7–1.45× their median.
fn wrong_size_share_for(lengths_m: impl Iterator<Item = f64>) -> f64 {
    let mut lengths: Vec<f64> = lengths_m.filter(|l| l.is_finite() && *l > 0.0).collect();
    if lengths.len() < 20 {
        return 0.0;
    }
    lengths.sort_by(f64::total_cmp);
    let at = |q: f64| lengths[((lengths.len() - 1) as f64 * q).round() as usize];
    let median = at(0.5);
    if at(0.05) >= 0.7 * median && at(0.95) <= 1.45 * median {
        AUTO_WRONG_SIZE_SHARE
    } else {
        0.0
    }
}

/// Fewest examples in a training epoch (see [`TrainingSet::epoch_len`]).
pub const MIN_EPOCH_EXAMPLES: usize = 1024;

/// One training example.
#[derive(Clone, Debug)]
pub struct Example {
    pub chip: Chip,
    pub positive: bool,
    /// Heading of the object in the chip, degrees clockwise from up (positives; 0 without
    /// augmentation because chips are canonical).
    pub heading_deg: f64,
    /// Object length and width in metres as the chip shows them at the contract's GSD
    /// (positives; scale augmentation changes them alike).
    pub size_m: Option<[f64; 2]>,
    /// Where the object's centre lies from the chip's centre, in chip pixels along the
    /// chip's right and down (positives; 0 without position jitter).
    pub offset_px: [f64; 2],
    /// Index of the chip in the set it came from.
    pub source: usize,
}

/// A set of chip descriptions that cuts augmented examples on demand.
pub struct TrainingSet {
    pub contract: Contract,
    items: Vec<ChipRecord>,
    images: HashMap<String, OpenImage>,
}

impl TrainingSet {
    /// From a chip set (its records say where each chip lies, its images stay open); the
    /// chips' pixels are dropped and cut again, augmented, when asked for.
    pub fn new(set: ChipSet) -> Self {
        let items = set
            .chips
            .into_iter()
            .map(|mut c| {
                c.chip = Chip {
                    size: 0,
                    bands: 0,
                    data: Vec::new(),
                };
                c
            })
            .collect();
        TrainingSet {
            contract: set.contract,
            items,
            images: set.images,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn is_positive(&self, index: usize) -> bool {
        self.items[index].polarity == Polarity::Positive
    }

    /// The share of positives to show at a wrong size (see [`Augment::wrong_size`]) when
    /// the user leaves it to Kestrel: [`AUTO_WRONG_SIZE_SHARE`] for a class of one size —
    /// 90 % of its positives' lengths within 0.7–1.45× their median, so that the wrong sizes
    /// are sizes the labels themselves say the class does not have — else none. (The cars
    /// of `../shared/data/cars` lie within 0.80–1.22×; the NEON trees of OSBS_029 spread
    /// over 0.65–1.48×.)
    pub fn auto_wrong_size_share(&self) -> f64 {
        wrong_size_share_for(self.items.iter().filter(|r| r.polarity == Polarity::Positive).filter_map(|r| r.length_m))
    }

    /// Example `index` (an index of [`epoch_order`](Self::epoch_order): beyond the set's
    /// length it is a repeat), augmented with the generator of (seed, epoch, index).
    pub fn example(
        &self,
        index: usize,
        augment: &Augment,
        seed: u64,
        epoch: u64,
    ) -> Result<Example, ChipError> {
        let rec = &self.items[index % self.items.len().max(1)];
        let img = &self.images[&rec.image_uri];
        let mut rng = Rng::new(
            seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ (index as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F),
        );
        let rot = if augment.rotate_deg > 0.0 {
            rng.range(-augment.rotate_deg, augment.rotate_deg)
        } else {
            0.0
        };
        // Draws only when asked for, so that a run without it sees the same chips as before.
        let wrong_size = augment.wrong_size > 0.0 && rec.polarity == Polarity::Positive && rng.unit() < augment.wrong_size;
        let scale = if wrong_size {
            let shown = if rng.unit() < 0.5 { rng.range(0.55, 0.7) } else { rng.range(1.45, 1.8) };
            // A chip cut at a coarser GSD shows the object smaller.
            1.0 / shown
        } else if augment.scale > 0.0 {
            rng.range(1.0 - augment.scale, 1.0 + augment.scale)
        } else {
            1.0
        };
        let flip = augment.flip && rng.unit() < 0.5;
        // Cutting at heading h − rot shows the object turned by +rot.
        let mut contract = self.contract.clone();
        contract.target_gsd_m *= scale;
        let r = chip_radius_px(&contract, img.gsd_m);
        let base = rec.heading_deg - self.contract.canonical_heading_deg;
        let mut offset_px = [0.0, 0.0];
        let (mut cx, mut cy) = (rec.centre_px[0], rec.centre_px[1]);
        if augment.shift_px > 0.0 && rec.polarity == Polarity::Positive {
            offset_px = [rng.range(-augment.shift_px, augment.shift_px), rng.range(-augment.shift_px, augment.shift_px)];
            // The chip's centre, so that the object lies at `offset_px` from it.
            let image_px = contract.target_gsd_m / img.gsd_m; // image pixels per chip pixel
            let (dx, dy) = crate::normalize::chip_move_to_image(offset_px[0] * image_px, offset_px[1] * image_px, base - rot);
            (cx, cy) = (cx - dx, cy - dy);
        }
        let nw = self.read_around(img, &rec.image_uri, cx, cy, r + augment.shift_px * contract.target_gsd_m / img.gsd_m)?;
        let mut chip = resample_chip(&nw, cx, cy, base - rot, img.gsd_m, &contract);
        let mut heading = rot;
        if flip {
            offset_px[0] = -offset_px[0];
            let s = chip.size;
            for b in 0..chip.bands {
                for y in 0..s {
                    chip.data[(b * s + y) * s..(b * s + y + 1) * s].reverse();
                }
            }
            heading = -heading;
        }
        if augment.blur_px > 0.3 && rng.unit() < 0.5 {
            gaussian_blur(&mut chip, rng.range(0.3, augment.blur_px));
        }
        let mut positive = rec.polarity == Polarity::Positive;
        if wrong_size {
            positive = false;
            offset_px = [0.0, 0.0];
        }
        // Made only when asked for (most examples need none).
        let colour_bands = |bands: usize| -> Vec<usize> {
            (0..bands)
                .filter(|&b| self.contract.bands.get(b).is_some_and(|&source| !self.contract.colour.is_height_band(source)))
                .collect()
        };
        // Draws only when asked for, so that a run without these augmentations sees the same
        // chips as before they existed.
        if augment.decoy > 0.0 && positive && rng.unit() < augment.decoy {
            if let (Some(l), Some(w)) = (rec.length_m, rec.width_m) {
                // The object lies at `offset_px` from the chip's centre, turned to the
                // canonical heading plus the label's turn.
                let canonical = if flip { -self.contract.canonical_heading_deg } else { self.contract.canonical_heading_deg };
                let heading_deg = canonical + heading;
                let centre = [chip.size as f64 / 2.0 + offset_px[0], chip.size as f64 / 2.0 + offset_px[1]];
                let sizes_px = [l / contract.target_gsd_m, w / contract.target_gsd_m];
                let counted = colour_bands(chip.bands);
                if flatten_rectangle(&mut chip, centre, sizes_px, heading_deg, &counted) {
                    positive = false;
                    offset_px = [0.0, 0.0];
                }
            }
        }
        let shuffled = if augment.band_shuffle > 0.0 { colour_bands(chip.bands) } else { Vec::new() };
        if shuffled.len() >= 3 && rng.unit() < augment.band_shuffle {
            let colour_bands = shuffled;
            // A random permutation of the colour planes (Fisher–Yates over the band list).
            let mut order = colour_bands.clone();
            for i in (1..order.len()).rev() {
                let j = ((rng.unit() * (i + 1) as f64) as usize).min(i);
                order.swap(i, j);
            }
            let s2 = chip.size * chip.size;
            let planes: Vec<Vec<f32>> = order.iter().map(|&b| chip.data[b * s2..(b + 1) * s2].to_vec()).collect();
            for (&dst, plane) in colour_bands.iter().zip(planes) {
                chip.data[dst * s2..(dst + 1) * s2].copy_from_slice(&plane);
            }
        }
        if augment.colour > 0.0 {
            let s2 = chip.size * chip.size;
            for b in 0..chip.bands {
                let gain =
                    1.0 + rng.range(-f64::from(augment.colour), f64::from(augment.colour)) as f32;
                let offset = rng.range(
                    -f64::from(augment.colour) / 2.0,
                    f64::from(augment.colour) / 2.0,
                ) as f32;
                let plane = &mut chip.data[b * s2..(b + 1) * s2];
                if self.contract.bands.get(b).is_some_and(|&source| self.contract.colour.is_height_band(source)) {
                    // Heights in metres ÷ 20: a taller or shorter canopy, never capped at 20 m
                    // (detection does not cap them either).
                    plane.iter_mut().for_each(|v| *v = (*v * gain).max(0.0));
                } else {
                    plane.iter_mut().for_each(|v| *v = (*v * gain + offset).clamp(0.0, 1.0));
                }
            }
        }
        if augment.shade > 0.0 && rng.unit() < 0.5 {
            let factor = 1.0 - rng.range(0.0, f64::from(augment.shade)) as f32;
            let s2 = chip.size * chip.size;
            for (b, &source_band) in self.contract.bands.iter().enumerate().take(chip.bands) {
                if !self.contract.colour.is_height_band(source_band) {
                    chip.data[b * s2..(b + 1) * s2].iter_mut().for_each(|v| *v *= factor);
                }
            }
        }
        let mode: HeadingMode = self.contract.heading_mode;
        // A chip cut at a coarser GSD shows the object smaller: to the network it is an
        // object of length / scale at the contract's GSD.
        let size_m = match (rec.length_m, rec.width_m) {
            (Some(l), Some(w)) if positive => {
                Some([l / scale, w / scale])
            }
            _ => None,
        };
        Ok(Example {
            chip,
            positive,
            heading_deg: mode.wrap(heading),
            size_m,
            offset_px,
            source: index,
        })
    }

    /// The colour-normalized square of `radius` image pixels around (cx, cy), in the
    /// contract's bands and colour method.
    fn read_around(&self, img: &OpenImage, uri: &str, cx: f64, cy: f64, radius: f64) -> Result<NormalizedWindow, ChipError> {
        let info = img.source.info();
        let win = NormalizedWindow::around(info.width, info.height, cx, cy, radius)
            .ok_or_else(|| ChipError::Geo(kestrel_geo::GeoError::Invalid(format!("centre ({cx:.0}, {cy:.0}) outside {uri}"))))?;
        Ok(NormalizedWindow::read_for(img.source.as_ref(), win, &self.contract.bands, &img.stats, &self.contract.colour)?)
    }

    /// Adds a negative at (cx, cy) of image `uri` (one of the set's images), e.g. a mined
    /// hard negative; it is cut, augmented, like any other.
    pub fn add_negative(
        &mut self,
        uri: &str,
        cx: f64,
        cy: f64,
        heading_deg: f64,
    ) -> Result<(), ChipError> {
        let img = self.images.get(uri).ok_or_else(|| {
            ChipError::Geo(kestrel_geo::GeoError::Invalid(format!(
                "{uri} is not an image of this training set"
            )))
        })?;
        self.items.push(ChipRecord {
            sample_id: None,
            image_uri: uri.to_string(),
            polarity: Polarity::Negative,
            centre_px: [cx, cy],
            heading_deg,
            heading: HeadingSource::Given,
            scale: self.contract.target_gsd_m / img.gsd_m,
            length_m: None,
            width_m: None,
            chip: Chip {
                size: 0,
                bands: 0,
                data: Vec::new(),
            },
        });
        Ok(())
    }

    /// The set's open images: URI, source, colour statistics, GSD (m).
    pub fn sources(&self) -> Vec<(&str, &dyn kestrel_geo::RasterSource, &crate::normalize::colour::ColourStats, f64)> {
        let mut v: Vec<_> = self.images.iter().map(|(uri, i)| (uri.as_str(), i.source.as_ref(), &i.stats, i.gsd_m)).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// The radiometry of the set's images, in the contract's bands.
    pub fn radiometry(&self) -> Option<crate::normalize::colour::Radiometry> {
        crate::normalize::colour::Radiometry::from_images(self.images.values().map(|i| &i.stats), &self.contract.bands)
    }

    /// Centres (image pixels) of the set's chips on image `uri`, positives and negatives.
    pub fn centres(&self, uri: &str) -> Vec<([f64; 2], bool)> {
        self.items
            .iter()
            .filter(|r| r.image_uri == uri)
            .map(|r| (r.centre_px, r.polarity == Polarity::Positive))
            .collect()
    }

    /// The order of an epoch: a seeded shuffle of all indices.
    pub fn epoch_order(&self, seed: u64, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.epoch_len()).collect();
        let mut rng = Rng::new(seed ^ 0xE90C ^ epoch.wrapping_mul(0x2545_F491_4F6C_DD1D));
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        order
    }

    /// Examples in one epoch: the whole set, repeated (each repeat augmented afresh) until
    /// there are at least [`MIN_EPOCH_EXAMPLES`]. A dozen samples drawn in the GUI would
    /// otherwise give a dozen optimizer steps in a dozen epochs — too few to learn anything.
    pub fn epoch_len(&self) -> usize {
        let n = self.items.len();
        if n == 0 {
            return 0;
        }
        n * MIN_EPOCH_EXAMPLES.div_ceil(n)
    }

    /// Cuts the examples `indices` on `threads` threads; the result is in the order given and
    /// identical for any thread count.
    pub fn batch(
        &self,
        indices: &[usize],
        augment: &Augment,
        seed: u64,
        epoch: u64,
        threads: usize,
    ) -> Result<Vec<Example>, ChipError> {
        let threads = threads.max(1).min(indices.len().max(1));
        let per = indices.len().div_ceil(threads);
        let parts: Vec<Result<Vec<Example>, ChipError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = indices
                .chunks(per.max(1))
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|&i| self.example(i, augment, seed, epoch))
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("chip worker panicked"))
                .collect()
        });
        let mut out = Vec::with_capacity(indices.len());
        for p in parts {
            out.extend(p?);
        }
        Ok(out)
    }
}

/// Blurs every band of `chip` with a Gaussian of `sigma` chip pixels (separable, edges
/// repeated).
fn gaussian_blur(chip: &mut Chip, sigma: f64) {
    let radius = (2.5 * sigma).ceil().max(1.0) as isize;
    let kernel: Vec<f32> = (-radius..=radius).map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp() as f32).collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let s = chip.size as isize;
    let mut tmp = vec![0f32; (s * s) as usize];
    for b in 0..chip.bands {
        let plane = &mut chip.data[b * (s * s) as usize..(b + 1) * (s * s) as usize];
        for y in 0..s {
            for x in 0..s {
                tmp[(y * s + x) as usize] = kernel.iter().enumerate().map(|(k, w)| w * plane[(y * s + (x + k as isize - radius).clamp(0, s - 1)) as usize]).sum();
            }
        }
        for y in 0..s {
            for x in 0..s {
                plane[(y * s + x) as usize] = kernel.iter().enumerate().map(|(k, w)| w * tmp[((y + k as isize - radius).clamp(0, s - 1) * s + x) as usize]).sum();
            }
        }
    }
}

/// Least inner structure — the mean absolute deviation of the rectangle's values from their
/// mean, averaged over the colour bands (heights are metres, not a normalized range), in
/// normalized units — that a positive needs to become a decoy.
/// A dark car, or one in shade, is already about flat: filled flat it still looks like the
/// car it was, and as a negative it would only teach the network to miss such cars.
pub const DECOY_MIN_STRUCTURE: f32 = 0.15;

/// Fills an oriented rectangle of a chip (centre and sizes in chip pixels, heading in degrees
/// clockwise from the chip's up) with the rectangle's mean value per band, when the rectangle
/// holds at least [`DECOY_MIN_STRUCTURE`] of inner structure: the object's outline, colour and
/// shadow stay, its inner structure goes. `colour_bands` are those whose structure counts (a
/// chip of heights alone counts all). Returns whether it did.
fn flatten_rectangle(chip: &mut Chip, centre: [f64; 2], sizes_px: [f64; 2], heading_deg: f64, colour_bands: &[usize]) -> bool {
    let (sin, cos) = heading_deg.to_radians().sin_cos();
    let s = chip.size;
    let inside: Vec<usize> = (0..s * s)
        .filter(|&i| {
            let (dx, dy) = ((i % s) as f64 + 0.5 - centre[0], (i / s) as f64 + 0.5 - centre[1]);
            // Along the heading (up turned clockwise) and across it.
            let along = dx * sin - dy * cos;
            let across = dx * cos + dy * sin;
            along.abs() <= sizes_px[0] / 2.0 && across.abs() <= sizes_px[1] / 2.0
        })
        .collect();
    if inside.is_empty() {
        return false;
    }
    let n = inside.len() as f32;
    let means: Vec<f32> = (0..chip.bands)
        .map(|b| inside.iter().map(|&i| chip.data[b * s * s + i]).sum::<f32>() / n)
        .collect();
    let all: Vec<usize> = (0..chip.bands).collect();
    let counted = if colour_bands.is_empty() { &all[..] } else { colour_bands };
    let structure = counted
        .iter()
        .map(|&b| inside.iter().map(|&i| (chip.data[b * s * s + i] - means[b]).abs()).sum::<f32>() / n)
        .sum::<f32>()
        / counted.len() as f32;
    if structure < DECOY_MIN_STRUCTURE {
        return false;
    }
    for (b, &mean) in means.iter().enumerate() {
        let plane = &mut chip.data[b * s * s..(b + 1) * s * s];
        inside.iter().for_each(|&i| plane[i] = mean);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cars (4.3 m, 90 % within 0.80–1.22×) are of one size; crowns spread over 0.65–1.48×
    /// are not; a handful of positives says nothing.
    #[test]
    fn size_negatives_only_for_a_class_of_one_size() {
        let spread = |lo: f64, hi: f64, n: usize| (0..n).map(move |i| 4.3 * (lo + (hi - lo) * i as f64 / (n - 1) as f64));
        assert_eq!(wrong_size_share_for(spread(0.8, 1.22, 100)), AUTO_WRONG_SIZE_SHARE);
        assert_eq!(wrong_size_share_for(spread(0.5, 1.6, 100)), 0.0, "too wide at both ends");
        assert_eq!(wrong_size_share_for(spread(0.8, 1.9, 100)), 0.0, "too wide above");
        assert_eq!(wrong_size_share_for(spread(0.9, 1.1, 19)), 0.0, "too few positives");
        assert_eq!(wrong_size_share_for(spread(0.9, 1.1, 30).chain([f64::NAN, 0.0])), AUTO_WRONG_SIZE_SHARE, "unsized positives are not counted");
    }

    /// The blur spreads a point as a Gaussian of the asked width and keeps the total.
    #[test]
    fn blur_spreads_a_point_by_its_sigma() {
        let s = 21;
        let mut chip = Chip { size: s, bands: 1, data: vec![0.0; s * s] };
        chip.data[10 * s + 10] = 1.0;
        gaussian_blur(&mut chip, 1.0);
        let total: f32 = chip.data.iter().sum();
        assert!((total - 1.0).abs() < 1e-4, "total {total}");
        // Variance along x of a Gaussian of σ = 1 px: 1 (the kernel is cut at 2.5σ).
        let var: f32 = (0..s * s).map(|i| chip.data[i] * ((i % s) as f32 - 10.0).powi(2)).sum();
        assert!((var - 1.0).abs() < 0.1, "variance {var}");
        let centre = chip.data[10 * s + 10];
        assert!((centre - 1.0 / (2.0 * std::f32::consts::PI)).abs() < 0.01, "centre {centre}");
    }

    /// A 3-band 32² chip of grey 0.5 with a 16×8 rectangle (long axis up) at its centre, filled
    /// by `inside(x, y)`.
    fn chip_with(inside: impl Fn(usize, usize) -> f32) -> Chip {
        let s = 32;
        let mut data = vec![0.5; 3 * s * s];
        for b in 0..3 {
            for y in 8..24 {
                for x in 12..20 {
                    data[(b * s + y) * s + x] = inside(x, y);
                }
            }
        }
        Chip { size: s, bands: 3, data }
    }

    /// A flat object (a dark car in shade) is no decoy: flattening would not change it, and
    /// as a negative it would contradict the positives that look like it.
    #[test]
    fn only_objects_with_inner_structure_become_decoys() {
        // Dark with a faint texture: a mean absolute deviation of 0.025.
        let mut flat = chip_with(|x, y| 0.1 + 0.05 * ((x + y) % 2) as f32);
        let before = flat.data.clone();
        assert!(!flatten_rectangle(&mut flat, [16.0, 16.0], [16.0, 8.0], 0.0, &[0, 1, 2]));
        assert_eq!(flat.data, before, "a positive too flat for a decoy is left alone");

        // Bright with dark window bands: the structure of a white car seen from above.
        let mut car = chip_with(|_, y| if (10..12).contains(&y) || (20..22).contains(&y) { 0.1 } else { 0.9 });
        let outside = car.data[0];
        assert!(flatten_rectangle(&mut car, [16.0, 16.0], [16.0, 8.0], 0.0, &[0, 1, 2]));
        let s = car.size;
        let v = car.data[16 * s + 16];
        assert!((0..3).all(|b| (8..24).all(|y| (12..20).all(|x| car.data[(b * s + y) * s + x] == car.data[b * s * s + 16 * s + 16]))));
        assert!((v - 0.7).abs() < 0.01, "the rectangle's mean colour, got {v}");
        assert_eq!(car.data[0], outside, "the surroundings stay");
    }
}
