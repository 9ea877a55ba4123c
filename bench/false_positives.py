#!/usr/bin/env python3
"""Where a cars model's errors lie on the held-out street: counts of true positives and of
false positives by kind (on another labelled vehicle, a car boxed badly, background, and among
those the roof bands of the MunichStreet02 frames), and of missed cars by why.

usage: false_positives.py DETECTIONS.geojson THRESHOLD [class-id]

Truth: the YOLO label file beside each detection's image (`class cx cy w h`, normalised).
Matching as `kestrel eval` does for axis-aligned truth: detections by falling score, each to
the unmatched car of largest axis-aligned IoU, IoU >= 0.5. Only the standard library.
"""
import json
import os
import struct
import sys
from collections import Counter


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path}: not a PNG")
    return struct.unpack(">II", head[16:24])


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    threshold = float(sys.argv[2])
    car = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    features = json.load(open(sys.argv[1]))["features"]
    truth, dets = {}, []
    for f in features:
        p = f["properties"]
        image = p["image"]
        if image not in truth:
            w, h = png_size(image)
            boxes = []
            for line in open(os.path.splitext(image)[0] + ".txt"):
                c, cx, cy, bw, bh = line.split()
                cx, cy, bw, bh = float(cx) * w, float(cy) * h, float(bw) * w, float(bh) * h
                boxes.append((int(c), (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)))
            truth[image] = (h, boxes)
        xs = [q[0] for q in p["pixel_polygon"]]
        ys = [q[1] for q in p["pixel_polygon"]]
        dets.append((p["score"], image, (min(xs), min(ys), max(xs), max(ys))))
    dets.sort(key=lambda d: -d[0])
    used, kinds = set(), Counter()
    for score, image, box in dets:
        if score < threshold:
            break
        height, boxes = truth[image]
        best, best_i = 0.0, None
        for i, (c, t) in enumerate(boxes):
            if c == car and (image, i) not in used and iou(box, t) > best:
                best, best_i = iou(box, t), i
        if best >= 0.5:
            used.add((image, best_i))
            kinds["true positive"] += 1
            continue
        any_car = max([iou(box, t) for c, t in boxes if c == car] or [0.0])
        other = max([iou(box, t) for c, t in boxes if c != car] or [0.0])
        if any_car >= 0.5:
            kinds["false: a second box on a found car"] += 1
        elif other >= 0.3:
            kinds["false: another labelled vehicle"] += 1
        elif any_car >= 0.1:
            kinds["false: a car boxed badly (IoU 0.1-0.5)"] += 1
        else:
            cy = (box[1] + box[3]) / 2
            # MunichStreet02's frames: roofs above y 45 px and below y 265 px (of 377).
            on_roof = height == 377 and (cy < 45 or cy > 265)
            kinds["false: background, roof band" if on_roof else "false: background, elsewhere"] += 1
    missed = Counter()
    for image, (_, boxes) in truth.items():
        for i, (c, t) in enumerate(boxes):
            if c != car or (image, i) in used:
                continue
            near = max([iou(b, t) for _, im, b in dets if im == image] or [0.0])
            missed["missed: a good box scored below the threshold" if near >= 0.5 else "missed: only a bad box" if near >= 0.1 else "missed: nothing near"] += 1
    print(f"threshold {threshold}: {sum(len([1 for c, _ in b if c == car]) for _, b in truth.values())} cars")
    for k, v in sorted(kinds.items()) + sorted(missed.items()):
        print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
