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
