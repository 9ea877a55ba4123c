//! Objects a point cloud already segments (an extra dimension such as lidR's `treeID` that
//! numbers the points of each tree): one record per object, its extent and its top. This is
//! how truth is derived from a segmented cloud.

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
