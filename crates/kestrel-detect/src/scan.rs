//! Dense scoring of one normalized tile and the peaks of its objectness map.

use kestrel_model::infer::Inference;
use kestrel_model::network::STRIDE;
use kestrel_samples::normalize::{Chip, Contract};
use kestrel_samples::HeadingMode;

/// The heads of every output cell of a tile.
pub struct ScoreGrid {
    pub rows: usize,
    pub cols: usize,
    /// Probability that the cell holds an object of any class (1 − background).
    pub objectness: Vec<f32>,
    /// Heading of the object in tile axes, degrees clockwise from up.
    pub heading_deg: Vec<f64>,
    /// Predicted length and width in metres.
    pub size_m: Vec<[f64; 2]>,
    /// Where the object of cell (0, 0) lies in tile pixels; cells are `STRIDE` apart.
    pub origin_px: f64,
    /// The offset head's (right, down) per cell, in cells: where the cell's object lies from
    /// the cell's own position; empty for a network without the head.
    pub offset: Vec<[f64; 2]>,
}

/// Output cells along an input edge of `n` pixels: three stride-2 convolutions with padding 1.
fn cells(n: usize) -> usize {
    (0..3).fold(n, |n, _| n.div_ceil(2))
}

/// Tile pixel coordinate of the object cell `j` responds to. A cell is centred on input
/// pixel 8j (coordinate 8j + 0.5); training put the object at the chip's centre, which lies
/// `delta` pixels from the centre cell, and the network learned that offset.
pub fn cell_origin_px(contract: &Contract) -> f64 {
    let s = contract.chip_size_px as usize;
    let centre_cell = cells(s) / 2;
    let delta = s as f64 / 2.0 - (STRIDE as f64 * centre_cell as f64 + 0.5);
    0.5 + delta
}

/// Scores every cell of `tile` (a square cut at the contract's GSD, bands and colour).
pub fn score_tile(network: &Inference, contract: &Contract, tile: &Chip) -> ScoreGrid {
    let out = network.forward(&tile.data, 1, tile.bands, tile.size, tile.size);
    let (rows, cols) = (out.rows, out.cols);
    let n = rows * cols;
    let turns = match contract.heading_mode {
        HeadingMode::Directed => 1.0,
        HeadingMode::Axis => 2.0,
    };
    let objectness = (0..n).map(|i| out.objectness(0, i)).collect();
    let heading_deg = (0..n)
        .map(|i| {
            let (s, c) = out.heading_at(0, i);
            contract
                .heading_mode
                .wrap(f64::from(s).atan2(f64::from(c)).to_degrees() / turns + contract.canonical_heading_deg)
        })
        .collect();
    let size_m = (0..n)
        .map(|i| {
            let (l, w) = out.size_at(0, i);
            [f64::from(l).exp(), f64::from(w).exp()]
        })
        .collect();
    let offset = (0..n)
        .filter_map(|i| out.offset_at(0, i).map(|(x, y)| [f64::from(x), f64::from(y)]))
        .collect();
    ScoreGrid {
        rows,
        cols,
        objectness,
        heading_deg,
        size_m,
        origin_px: cell_origin_px(contract),
        offset,
    }
}

/// A local maximum of the objectness map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Peak {
    pub row: usize,
    pub col: usize,
    pub score: f32,
    /// Sub-cell position of the maximum (a parabola through the cell and its two
    /// neighbours along each axis), in cells, within ±0.5.
    pub offset: [f64; 2],
}

/// The vertex of the parabola through (−1, a), (0, b), (1, c), clamped to ±0.5.
pub fn parabola_vertex(a: f32, b: f32, c: f32) -> f64 {
    let d = f64::from(a) - 2.0 * f64::from(b) + f64::from(c);
    if d >= 0.0 {
        return 0.0;
    }
    (0.5 * (f64::from(a) - f64::from(c)) / d).clamp(-0.5, 0.5)
}

/// Cells whose objectness is at least `threshold` and not below any of their 8 neighbours,
/// strongest first.
pub fn peaks(grid: &ScoreGrid, threshold: f32) -> Vec<Peak> {
    let at = |r: usize, c: usize| grid.objectness[r * grid.cols + c];
    let mut out = Vec::new();
    for r in 0..grid.rows {
        for c in 0..grid.cols {
            let v = at(r, c);
            if v < threshold {
                continue;
            }
            let mut is_max = true;
            for dr in -1i64..=1 {
                for dc in -1i64..=1 {
                    let (rr, cc) = (r as i64 + dr, c as i64 + dc);
                    if (dr, dc) == (0, 0)
                        || rr < 0
                        || cc < 0
                        || rr >= grid.rows as i64
                        || cc >= grid.cols as i64
                    {
                        continue;
                    }
                    let w = at(rr as usize, cc as usize);
                    // Ties go to the first cell in raster order, so a plateau gives one peak.
                    if w > v || (w == v && (rr, cc) < (r as i64, c as i64)) {
                        is_max = false;
                    }
                }
            }
            if is_max {
                let left = if c > 0 { at(r, c - 1) } else { v };
                let right = if c + 1 < grid.cols { at(r, c + 1) } else { v };
                let up = if r > 0 { at(r - 1, c) } else { v };
                let down = if r + 1 < grid.rows { at(r + 1, c) } else { v };
                out.push(Peak {
                    row: r,
                    col: c,
                    score: v,
                    offset: [
                        parabola_vertex(left, v, right),
                        parabola_vertex(up, v, down),
                    ],
                });
            }
        }
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_follow_three_stride_two_convolutions() {
        assert_eq!(cells(52), 7);
        assert_eq!(cells(64), 8);
        assert_eq!(cells(65), 9);
    }

    #[test]
    fn a_plateau_gives_one_peak_and_weak_cells_none() {
        let mut objectness = vec![0.1f32; 25];
        objectness[6] = 0.9;
        objectness[7] = 0.9;
        objectness[18] = 0.6;
        let grid = ScoreGrid {
            rows: 5,
            cols: 5,
            objectness,
            heading_deg: vec![0.0; 25],
            size_m: vec![[1.0, 1.0]; 25],
            origin_px: 0.5,
            offset: Vec::new(),
        };
        let p = peaks(&grid, 0.5);
        assert_eq!(
            p.iter().map(|p| (p.row, p.col)).collect::<Vec<_>>(),
            vec![(1, 1), (3, 3)]
        );
        // The plateau's maximum lies between its two cells; the lone peak is centred.
        assert!(
            (p[0].offset[0] - 0.5).abs() < 1e-9 && p[0].offset[1].abs() < 1e-9,
            "{:?}",
            p[0]
        );
        assert_eq!(p[1].offset, [0.0, 0.0]);
    }

    #[test]
    fn the_parabola_finds_the_vertex() {
        // y = −(x − 0.25)² sampled at −1, 0, 1.
        let f = |x: f64| -(x - 0.25f64).powi(2) as f32;
        assert!((parabola_vertex(f(-1.0), f(0.0), f(1.0)) - 0.25).abs() < 1e-6);
    }
}
