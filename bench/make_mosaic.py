"""Builds an N x N RGB Cloud-Optimized GeoTIFF by tiling the cars frames
(../shared/data/cars/*.png, 0.13 m) row by row, for the detection memory and speed benchmark:

    python3 bench/make_mosaic.py 20000 /tmp/mosaic_20000.tif

The mosaic is georeferenced (EPSG:32632, 0.13 m, north-up) so that `kestrel detect` needs no
--gsd. Written through a GDAL VRT and the COG driver (deflate, 512 px tiles, overviews), so no
step holds the raster in memory. Needs GDAL's Python bindings (Debian: python3-gdal).
"""

import glob
import os
import sys

from osgeo import gdal

gdal.UseExceptions()


def main():
    size = int(sys.argv[1])
    out = sys.argv[2]
    here = os.path.dirname(os.path.abspath(__file__))
    frames = sorted(glob.glob(os.path.join(here, "..", "..", "shared", "data", "cars", "*.png")))
    if not frames:
        sys.exit("no frames under ../shared/data/cars")
    sources = []
    y = 0
    i = 0
    while y < size:
        x = 0
        row_h = 0
        while x < size:
            f = frames[i % len(frames)]
            i += 1
            d = gdal.Open(f)
            w, h = d.RasterXSize, d.RasterYSize
            sources.append((f, x, y, min(w, size - x), min(h, size - y)))
            x += w
            row_h = max(row_h, h)
        y += row_h
    bands = []
    for b in (1, 2, 3):
        items = "".join(
            f'<SimpleSource><SourceFilename relativeToVRT="0">{f}</SourceFilename><SourceBand>{b}</SourceBand>'
            f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/><DstRect xOff="{x}" yOff="{y}" xSize="{w}" ySize="{h}"/></SimpleSource>'
            for (f, x, y, w, h) in sources
        )
        bands.append(f'<VRTRasterBand dataType="Byte" band="{b}">{items}</VRTRasterBand>')
    srs = gdal.osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    vrt = (
        f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>{srs.ExportToWkt()}</SRS>'
        f"<GeoTransform>500000, 0.13, 0, 5300000, 0, -0.13</GeoTransform>" + "".join(bands) + "</VRTDataset>"
    )
    vrt_path = out + ".vrt"
    with open(vrt_path, "w") as fh:
        fh.write(vrt)
    gdal.Translate(out, vrt_path, format="COG", creationOptions=["COMPRESS=DEFLATE", "BLOCKSIZE=512", "NUM_THREADS=2", "BIGTIFF=IF_SAFER"])
    os.remove(vrt_path)
    print(f"{out}: {size} x {size} RGB, {len(sources)} frames, {os.path.getsize(out) / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
