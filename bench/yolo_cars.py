"""The peer for held-out accuracy: YOLOv8n trained from scratch (no pretrained weights can be
had offline) on the same cars frames Kestrel trains on, scored by `kestrel eval` on the
same unseen street.

    /usr/bin/python3 bench/yolo_cars.py prepare /tmp/yolo [176]         # tiles + labels (GDAL)
    /tmp/peers/bin/python bench/yolo_cars.py train /tmp/yolo 40         # epochs
    /tmp/peers/bin/python bench/yolo_cars.py predict /tmp/yolo /tmp/yolo/pred.geojson
    kestrel eval --truth ../shared/data/cars/MunichStreet02-*.txt --pred /tmp/yolo/pred.geojson \\
        --class-names car,truck,bus,minibus,cyclist --only car

Kestrel's recipe trains on MOS155-MOS175 and validates on MOS176-MOS179; so does this (the
first validation frame is `prepare`'s optional third argument: with 176, after 120 epochs, F1 0.789
at the best threshold and AP50 0.813; with 170, the split Kestrel used before, F1 0.611, AP50 0.638). The frames
(1764 x 430) are cut into 640-px wide tiles at their own resolution (cars stay ~35 px long;
letterboxing a whole frame to 640 would shrink them to ~13 px), cars only. Prediction runs on
whole frames at 1280 px (their native scale). Detections are written as Kestrel's GeoJSON in
pixel coordinates (`pixel_polygon`, `score`, `image`), axis-aligned like the truth.
Preparing needs GDAL's Python bindings, training and predicting ultralytics; 2 threads, as Kestrel's benchmarks.
"""

import glob
import json
import os
import sys
import time

CARS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "cars")
TILE = 640
STEP = 512


def prepare(out, first_val=176):
    from osgeo import gdal

    for split, frames in [("train", range(155, first_val)), ("val", range(first_val, 180))]:
        os.makedirs(f"{out}/data/images/{split}", exist_ok=True)
        os.makedirs(f"{out}/data/labels/{split}", exist_ok=True)
        for n in frames:
            d = gdal.Open(f"{CARS}/MOS{n}.png")
            w, h = d.RasterXSize, d.RasterYSize
            boxes = []
            for line in open(f"{CARS}/MOS{n}.txt"):
                c, cx, cy, bw, bh = map(float, line.split())
                if int(c) == 0:
                    boxes.append((cx * w, cy * h, bw * w, bh * h))
            xs = list(range(0, max(1, w - TILE) + 1, STEP))
            if xs[-1] + TILE < w:
                xs.append(w - TILE)
            for x0 in xs:
                tw = min(TILE, w - x0)
                gdal.Translate(f"{out}/data/images/{split}/MOS{n}_{x0}.png", d, srcWin=[x0, 0, tw, h])
                with open(f"{out}/data/labels/{split}/MOS{n}_{x0}.txt", "w") as f:
                    for cx, cy, bw, bh in boxes:
                        a, b = max(cx - bw / 2, x0), min(cx + bw / 2, x0 + tw)
                        if b - a < 0.6 * bw:  # a car mostly outside this tile
                            continue
                        f.write(f"0 {((a + b) / 2 - x0) / tw:.6f} {cy / h:.6f} {(b - a) / tw:.6f} {bh / h:.6f}\n")
    with open(f"{out}/cars.yaml", "w") as f:
        f.write(f"path: {out}/data\ntrain: images/train\nval: images/val\nnames:\n  0: car\n")


def train(out, epochs):
    import torch
    from ultralytics import YOLO

    torch.set_num_threads(2)
    model = YOLO("yolov8n.yaml")  # the architecture only: from scratch
    t = time.time()
    model.train(data=f"{out}/cars.yaml", epochs=epochs, imgsz=TILE, batch=16, workers=0, device="cpu",
                pretrained=False, amp=False, plots=False, project=f"{out}/runs", name="v8n", exist_ok=True, seed=1)
    print(f"trained {epochs} epochs in {time.time() - t:.0f} s")


def predict(out, path):
    import torch
    from ultralytics import YOLO

    torch.set_num_threads(2)
    model = YOLO(f"{out}/runs/v8n/weights/best.pt")
    features = []
    for image in sorted(glob.glob(f"{CARS}/MunichStreet02-*.png")):
        r = model.predict(image, imgsz=1280, conf=0.01, iou=0.5, device="cpu", verbose=False, max_det=1000)[0]
        for (x0, y0, x1, y1), score in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist()):
            corners = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
            features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [corners + [corners[0]]]},
                             "properties": {"class": "car", "score": score, "image": image, "pixel_polygon": corners}})
    with open(path, "w") as f:
        json.dump({"type": "FeatureCollection", "features": features}, f)
    print(f"{len(features)} detections written to {path}")


if __name__ == "__main__":
    command, out = sys.argv[1], sys.argv[2]
    if command == "prepare":
        prepare(out, *(int(a) for a in sys.argv[3:4]))
    elif command == "train":
        train(out, int(sys.argv[3]))
    elif command == "predict":
        predict(out, sys.argv[3])
    else:
        sys.exit(f"unknown command {command}: prepare, train or predict")
