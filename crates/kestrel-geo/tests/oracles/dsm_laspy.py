"""Independent DSM rasterization with laspy + numpy, the oracle for Kestrel's.

usage: dsm_laspy.py CLOUD CELL OUT.raw
Grid: origin_x = floor(min_x / cell) * cell, origin_y = ceil(max_y / cell) * cell, from the
header bounds; cell (col, row) = floor((x - origin_x) / cell), floor((origin_y - y) / cell),
clamped to the grid; value = highest z, noise classes 7 and 18 excluded; empty = NaN.
Writes float64 row-major values, and prints width height and the class counts as JSON.
"""
import json
import sys

import laspy
import numpy as np

path, cell, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
las = laspy.read(path)
h = las.header
ox = np.floor(h.mins[0] / cell) * cell
oy = np.ceil(h.maxs[1] / cell) * cell
w = int(np.floor((h.maxs[0] - ox) / cell)) + 1
ht = int(np.floor((oy - h.mins[1]) / cell)) + 1
x, y, z = np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)
cls = np.asarray(las.classification)
keep = (cls != 7) & (cls != 18)
c = np.clip(np.floor((x - ox) / cell).astype(np.int64), 0, w - 1)[keep]
r = np.clip(np.floor((oy - y) / cell).astype(np.int64), 0, ht - 1)[keep]
dsm = np.full(w * ht, -np.inf)
np.maximum.at(dsm, r * w + c, z[keep])
dsm[np.isinf(dsm)] = np.nan
dsm.astype("<f8").tofile(out)
classes, counts = np.unique(cls, return_counts=True)
print(json.dumps({"width": w, "height": ht, "points": int(h.point_count),
                  "classes": {str(int(k)): int(n) for k, n in zip(classes, counts)}}))
