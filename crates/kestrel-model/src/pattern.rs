//! The rotational pattern of a class: the mean of its normalized positive chips, every one
//! turned to the canonical heading. Detection turns each candidate to the canonical pose at
//! a set of angles and correlates it with the pattern; the best angle refines the heading and
//! the correlation is the detection's match score.

use kestrel_samples::normalize::Chip;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pattern {
    pub size: usize,
    pub bands: usize,
    /// Band-major mean chip, zero-mean and unit-norm (ready for correlation).
    pub weights: Vec<f32>,
}

impl Pattern {
    /// The mean of `chips` (all of one size and band count); `None` when there are none.
    pub fn from_chips<'a>(chips: impl IntoIterator<Item = &'a Chip>) -> Option<Pattern> {
        let mut sum: Vec<f64> = Vec::new();
        let (mut size, mut bands, mut n) = (0, 0, 0usize);
        for c in chips {
            if sum.is_empty() {
                (size, bands) = (c.size, c.bands);
                sum = vec![0.0; c.data.len()];
            }
            if c.data.len() != sum.len() {
                continue;
            }
            for (s, v) in sum.iter_mut().zip(&c.data) {
                *s += f64::from(*v);
            }
            n += 1;
        }
        if n == 0 {
            return None;
        }
        let mean: Vec<f32> = sum.iter().map(|s| (s / n as f64) as f32).collect();
        Some(Pattern { size, bands, weights: standardize(&mean)? })
    }

    /// Normalized cross-correlation of `chip` with the pattern, in [−1, 1]; `None` when the
    /// chip's shape differs or it is flat.
    pub fn correlate(&self, chip: &Chip) -> Option<f32> {
        if chip.size != self.size || chip.bands != self.bands {
            return None;
        }
        let z = standardize(&chip.data)?;
        Some(z.iter().zip(&self.weights).map(|(a, b)| a * b).sum())
    }
}

/// Zero mean, unit norm; `None` for a constant input.
fn standardize(v: &[f32]) -> Option<Vec<f32>> {
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64;
    let norm = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>().sqrt();
    if norm < 1e-9 {
        return None;
    }
    Some(v.iter().map(|&x| ((f64::from(x) - mean) / norm) as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_correlates_with_its_own_shape_and_not_with_its_turn() {
        // A bar along the chip's vertical axis.
        let bar = |vertical: bool| {
            let s = 16;
            let data = (0..s * s).map(|i| {
                let (x, y) = (i % s, i / s);
                let on = if vertical { (6..10).contains(&x) } else { (6..10).contains(&y) };
                if on { 1.0 } else { 0.0 }
            }).collect();
            Chip { size: s, bands: 1, data }
        };
        let p = Pattern::from_chips([&bar(true), &bar(true)]).unwrap();
        assert!((p.correlate(&bar(true)).unwrap() - 1.0).abs() < 1e-5);
        assert!(p.correlate(&bar(false)).unwrap() < 0.0);
        assert_eq!(p.correlate(&Chip { size: 8, bands: 1, data: vec![0.0; 64] }), None);
        assert!(Pattern::from_chips(std::iter::empty::<&Chip>()).is_none());
    }
}
