//! Objects a point cloud already segments (an extra dimension such as lidR's `treeID` that
//! numbers the points of each tree): one record per object, its extent and its top. This is
//! how truth is derived from a segmented cloud; a classified cloud (class 6, buildings)
//! gives footprints as connected groups of cells instead.

use super::PointCloud;
use crate::error::Result;
use std::collections::BTreeMap;

/// One segmented object.
#[derive(Clone, Debug, PartialEq)]
pub struct CloudObject {
    /// The dimension's value for this object.
    pub id: f64,
    pub points: usize,
    /// Extent `[min_x, min_y, min_z]` and `[max_x, max_y, max_z]` in the cloud's CRS.
    pub min: [f64; 3],
    pub max: [f64; 3],
    /// The highest point (a tree's top).
    pub top: [f64; 3],
}

/// The objects numbered by the extra dimension `name`, in id order; points whose value is
/// no-data (unsegmented) belong to none. With `area` (`[min_x, min_y, max_x, max_y]`), only
/// objects whose top lies inside it.
pub fn objects_by_dimension(cloud: &mut PointCloud, name: &str, area: Option<[f64; 4]>, progress: impl FnMut(u64)) -> Result<Vec<CloudObject>> {
    // Ids are compared by their bits: they are labels, not quantities.
    let mut found: BTreeMap<u64, CloudObject> = BTreeMap::new();
    cloud.for_each_chunk_with_extra(
        name,
        |c, ids| {
            for (i, &id) in ids.iter().enumerate() {
                if id.is_nan() {
                    continue;
                }
                let p = [c.x[i], c.y[i], c.z[i]];
                let o = found.entry(id.to_bits()).or_insert(CloudObject { id, points: 0, min: p, max: p, top: p });
                o.points += 1;
                for k in 0..3 {
                    o.min[k] = o.min[k].min(p[k]);
                    o.max[k] = o.max[k].max(p[k]);
                }
                if p[2] > o.top[2] {
                    o.top = p;
                }
            }
            Ok(())
        },
        progress,
    )?;
    let mut out: Vec<CloudObject> = found
        .into_values()
        .filter(|o| area.is_none_or(|a| o.top[0] >= a[0] && o.top[0] < a[2] && o.top[1] >= a[1] && o.top[1] < a[3]))
        .collect();
    out.sort_by(|a, b| a.id.total_cmp(&b.id));
    Ok(out)
}

/// Objects of one ASPRS class (e.g. 6, buildings) as the connected groups of `cell`-sized
/// cells (CRS units) that hold its points, 8-connected: footprints derived from a classified
/// cloud. `min_cells` drops specks. Tops are the highest point of each group.
pub fn objects_by_class(cloud: &mut PointCloud, class: u8, cell: f64, area: Option<[f64; 4]>, min_cells: usize, progress: impl FnMut(u64)) -> Result<Vec<CloudObject>> {
    let b = cloud.header().bounds();
    let [x0, y0, x1, y1] = area.unwrap_or([b.min.x, b.min.y, b.max.x, b.max.y]);
    let (w, h) = ((((x1 - x0) / cell).ceil() as usize).max(1), (((y1 - y0) / cell).ceil() as usize).max(1));
    if w.saturating_mul(h) > 1 << 28 {
        return Err(crate::GeoError::Invalid(format!("a {w}x{h} grid is too large; choose a larger cell")));
    }
    // Per cell: the highest point of the class, or none.
    let mut top: Vec<Option<[f64; 3]>> = vec![None; w * h];
    cloud.for_each_chunk(
        |c| {
            for i in 0..c.len() {
                if c.class[i] != class {
                    continue;
                }
                let (fx, fy) = ((c.x[i] - x0) / cell, (y1 - c.y[i]) / cell);
                if fx < 0.0 || fy < 0.0 || fx >= w as f64 || fy >= h as f64 {
                    continue;
                }
                let k = fy as usize * w + fx as usize;
                if top[k].is_none_or(|t| c.z[i] > t[2]) {
                    top[k] = Some([c.x[i], c.y[i], c.z[i]]);
                }
            }
            Ok(())
        },
        progress,
    )?;
    let mut seen = vec![false; w * h];
    let mut out = Vec::new();
    for start in 0..w * h {
        if seen[start] || top[start].is_none() {
            continue;
        }
        seen[start] = true;
        let mut stack = vec![start];
        let mut cells = Vec::new();
        while let Some(k) = stack.pop() {
            cells.push(k);
            let (r, c) = ((k / w) as i64, (k % w) as i64);
            for dr in -1..=1 {
                for dc in -1..=1 {
                    let (nr, nc) = (r + dr, c + dc);
                    if nr < 0 || nc < 0 || nr >= h as i64 || nc >= w as i64 {
                        continue;
                    }
                    let n = nr as usize * w + nc as usize;
                    if !seen[n] && top[n].is_some() {
                        seen[n] = true;
                        stack.push(n);
                    }
                }
            }
        }
        if cells.len() < min_cells {
            continue;
        }
        let mut o = CloudObject { id: out.len() as f64 + 1.0, points: cells.len(), min: [f64::INFINITY; 3], max: [f64::NEG_INFINITY; 3], top: [0.0, 0.0, f64::NEG_INFINITY] };
        for &k in &cells {
            let (r, c) = (k / w, k % w);
            // The cell's square, so that the footprint covers whole cells.
            let (cx0, cy1) = (x0 + c as f64 * cell, y1 - r as f64 * cell);
            o.min[0] = o.min[0].min(cx0);
            o.max[0] = o.max[0].max(cx0 + cell);
            o.min[1] = o.min[1].min(cy1 - cell);
            o.max[1] = o.max[1].max(cy1);
            if let Some(t) = top[k] {
                o.min[2] = o.min[2].min(t[2]);
                o.max[2] = o.max[2].max(t[2]);
                if t[2] > o.top[2] {
                    o.top = t;
                }
            }
        }
        out.push(o);
    }
    Ok(out)
}

/// Tree tops of a canopy height model (an nDSM in metres): the local-maximum filter that
/// individual-tree inventories use (lidR's `lmf`). A cell is a top when it is at least
/// `min_height_m` tall and the highest within `radius_m`; ties on a plateau go to the first
/// cell in row order, so a flat crown gives one top. Each top's crown is the mean distance,
/// over eight directions, that the canopy stays above half the top's height without rising
/// above it again (a neighbouring, taller crown) — a square box of that half-size, which is
/// what a detector learns from. `points` counts the cells along those eight rays; `min`/`max` z are
/// heights above ground (0 and the top's), in metres.
///
/// The heights are smoothed by a 3×3 mean first: a sparse or rough canopy has pits and spikes
/// that would otherwise each count as a top.
pub fn tree_tops(grid: &super::HeightGrid, min_height_m: f64, radius_m: f64) -> Result<Vec<CloudObject>> {
    if !(min_height_m >= 0.0 && radius_m > 0.0 && radius_m.is_finite()) {
        return Err(crate::GeoError::Invalid(format!("tree tops need a height ≥ 0 and a positive radius, got {min_height_m} m and {radius_m} m")));
    }
    let (w, h) = (grid.width as usize, grid.height as usize);
    if grid.georef.crs.as_ref().is_some_and(|c| c.is_geographic()) {
        return Err(crate::GeoError::Invalid("tree tops need a height model in a projected CRS (metres or feet), not in degrees".into()));
    }
    let (cell_x, _) = grid.georef.transform.pixel_size();
    let unit_m = grid.georef.crs.as_ref().and_then(|c| c.linear_unit_m()).unwrap_or(1.0);
    let cell_m = cell_x.abs() * unit_m;
    if !(cell_m > 0.0 && cell_m.is_finite()) {
        return Err(crate::GeoError::Invalid(format!("the height model's cells measure {cell_m} m")));
    }
    let reach = (radius_m / cell_m).ceil().max(1.0) as i64;
    let at = |v: &[f32], r: i64, c: i64| -> f32 {
        if r < 0 || c < 0 || r >= h as i64 || c >= w as i64 {
            return f32::NAN;
        }
        v[r as usize * w + c as usize]
    };
    let mut smooth = vec![f32::NAN; w * h];
    for r in 0..h as i64 {
        for c in 0..w as i64 {
            let (mut sum, mut n) = (0.0f32, 0u32);
            for dr in -1..=1 {
                for dc in -1..=1 {
                    let v = at(&grid.values, r + dr, c + dc);
                    if v.is_finite() {
                        sum += v;
                        n += 1;
                    }
                }
            }
            if at(&grid.values, r, c).is_finite() && n > 0 {
                smooth[r as usize * w + c as usize] = sum / n as f32;
            }
        }
    }
    let min_height = min_height_m as f32;
    let mut out = Vec::new();
    for r in 0..h as i64 {
        'cells: for c in 0..w as i64 {
            let z = at(&smooth, r, c);
            if !(z >= min_height) {
                continue;
            }
            for dr in -reach..=reach {
                for dc in -reach..=reach {
                    // The 8 neighbours always count: a radius under a cell would make every
                    // canopy cell a top.
                    let adjacent = dr.abs() <= 1 && dc.abs() <= 1;
                    if (dr == 0 && dc == 0) || (!adjacent && ((dr * dr + dc * dc) as f64).sqrt() * cell_m > radius_m + 1e-9) {
                        continue;
                    }
                    let n = at(&smooth, r + dr, c + dc);
                    // Earlier cells (row order) win ties.
                    let earlier = dr < 0 || (dr == 0 && dc < 0);
                    if n > z || (earlier && n == z) {
                        continue 'cells;
                    }
                }
            }
            // The crown: walk out in eight directions while the canopy stays above half the
            // top and does not climb again.
            let (mut reach_sum, mut cells) = (0.0f64, 1usize);
            for (dr, dc) in [(-1i64, 0i64), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)] {
                let step_m = ((dr * dr + dc * dc) as f64).sqrt() * cell_m;
                let (mut k, mut prev) = (1i64, z);
                loop {
                    let v = at(&smooth, r + k * dr, c + k * dc);
                    // A rise of more than 5 % of the top is the next crown's flank.
                    if !(v >= 0.5 * z && v >= min_height && v <= prev + 0.05 * z) {
                        break;
                    }
                    prev = v;
                    cells += 1;
                    k += 1;
                }
                // The crown's edge lies half a step past the last cell inside it.
                reach_sum += (k as f64 - 0.5) * step_m;
            }
            let half_m = (reach_sum / 8.0).max(cell_m);
            let half = half_m / unit_m;
            let (x, y) = grid.georef.transform.pixel_to_map(c as f64 + 0.5, r as f64 + 0.5);
            let top_z = f64::from(at(&grid.values, r, c));
            out.push(CloudObject {
                id: out.len() as f64 + 1.0,
                points: cells,
                min: [x - half, y - half, 0.0],
                max: [x + half, y + half, top_z],
                top: [x, y, top_z],
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pointcloud::HeightGrid;

    /// Cone-shaped crowns on a 0.5 m grid: (centre col, centre row, height m, radius m).
    fn canopy(crowns: &[(f64, f64, f32, f64)]) -> HeightGrid {
        let (w, h) = (80u32, 60u32);
        let mut values = vec![0f32; (w * h) as usize];
        for r in 0..h {
            for c in 0..w {
                let v = &mut values[(r * w + c) as usize];
                for &(cc, cr, top, radius) in crowns {
                    let d_m = (f64::from(c) + 0.5 - cc).hypot(f64::from(r) + 0.5 - cr) * 0.5;
                    *v = v.max(top * (1.0 - d_m / radius).max(0.0) as f32);
                }
            }
        }
        HeightGrid { width: w, height: h, georef: crate::Georef { transform: crate::GeoTransform::north_up(1000.0, 2000.0, 0.5, 0.5), crs: None }, values }
    }

    #[test]
    fn each_crown_gives_one_top_at_its_apex_with_its_extent() {
        // Two trees whose crowns touch, a flat-topped one (a plateau), and a shrub under the
        // height limit.
        let mut grid = canopy(&[(20.5, 20.5, 12.0, 5.0), (38.5, 24.5, 9.0, 4.0), (60.5, 40.5, 1.5, 2.0)]);
        for r in 44..48 {
            for c in 14..18 {
                grid.values[r * 80 + c] = 6.0;
            }
        }
        let tops = tree_tops(&grid, 2.0, 2.0).expect("tops");
        assert_eq!(tops.len(), 3, "{tops:?}");
        let near = |x: f64, y: f64| tops.iter().find(|t| (t.top[0] - x).abs() <= 0.5 && (t.top[1] - y).abs() <= 0.5);
        let tall = near(1000.0 + 20.5 * 0.5, 2000.0 - 20.5 * 0.5).expect("the tall tree's top");
        assert!((tall.top[2] - 12.0).abs() < 0.5, "{tall:?}");
        // A cone falls to half its height at half its radius: a crown box of ±2.5 m, within a cell.
        let half_m = (tall.max[0] - tall.min[0]) / 2.0;
        assert!((half_m - 2.5).abs() <= 0.6, "crown half-size {half_m} m");
        assert!(near(1000.0 + 38.5 * 0.5, 2000.0 - 24.5 * 0.5).is_some(), "the touching tree keeps its own top: {tops:?}");
        // The plateau: exactly one top, on the plateau.
        assert_eq!(tops.iter().filter(|t| (t.top[2] - 6.0).abs() < 1e-6).count(), 1, "{tops:?}");
        assert!(tree_tops(&grid, 2.0, 0.0).is_err(), "a zero radius is refused");
        // A radius under a cell still compares each cell with its 8 neighbours.
        assert_eq!(tree_tops(&grid, 2.0, 0.1).expect("tops").len(), 3);
        let mut degrees = grid.clone();
        degrees.georef.crs = Some(crate::Crs::wgs84());
        assert!(tree_tops(&degrees, 2.0, 2.0).is_err(), "a height model in degrees is refused");
    }
}
