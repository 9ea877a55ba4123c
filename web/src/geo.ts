// Pixel ↔ map conversions through the image's affine transform, and oriented boxes ↔ polygons.
//
// Pixels: x right, y down, origin at the top-left corner of the top-left pixel.
// Headings: degrees clockwise from image "up" (0 = up, 90 = right), in pixel terms.

import Polygon from 'ol/geom/Polygon.js';
import Point from 'ol/geom/Point.js';
import type Geometry from 'ol/geom/Geometry.js';
import type { Coordinate } from 'ol/coordinate.js';
import type { OrientedBox, Shape } from './types';

export type Vec = [number, number];

/** GDAL-order affine: X = x0 + px*dx + py*rx, Y = y0 + px*ry + py*dy. */
export class Affine {
  readonly inv: [number, number, number, number];
  constructor(public readonly t: [number, number, number, number, number, number]) {
    const [, dx, rx, , ry, dy] = t;
    const det = dx * dy - rx * ry;
    if (!isFinite(det) || det === 0) throw new Error('pixel_to_map is not invertible');
    this.inv = [dy / det, -rx / det, -ry / det, dx / det];
  }
  toMap(px: number, py: number): Coordinate {
    const [x0, dx, rx, y0, ry, dy] = this.t;
    return [x0 + px * dx + py * rx, y0 + px * ry + py * dy];
  }
  toPixel(c: Coordinate): Vec {
    const [x0, , , y0] = this.t;
    const X = c[0] - x0;
    const Y = c[1] - y0;
    const [a, b, c2, d] = this.inv;
    return [a * X + b * Y, c2 * X + d * Y];
  }
  /** Map units per pixel along x (for sizes drawn in screen pixels). */
  get scale(): number {
    const [, dx, , , ry] = this.t;
    return Math.hypot(dx, ry);
  }
}

const rad = (d: number) => (d * Math.PI) / 180;
const deg = (r: number) => (r * 180) / Math.PI;

export function normDeg(d: number): number {
  const r = d % 360;
  return r < 0 ? r + 360 : r;
}

/** Unit vector of a heading in pixel space (y down). */
export function headingVec(h: number): Vec {
  return [Math.sin(rad(h)), -Math.cos(rad(h))];
}

/** Heading (clockwise from up, pixel space) of a pixel-space vector. */
export function vecHeading(v: Vec): number {
  return normDeg(deg(Math.atan2(v[0], -v[1])));
}

/** The four corners of an oriented box in pixels: front-left, front-right, back-right, back-left. */
export function boxCorners(b: { cx: number; cy: number; length: number; width: number; heading_deg: number }): Vec[] {
  const u = headingVec(b.heading_deg);
  const r: Vec = [-u[1], u[0]]; // right of the heading (clockwise 90°) in a y-down frame
  const hl = b.length / 2;
  const hw = b.width / 2;
  const p = (a: number, c: number): Vec => [b.cx + u[0] * a + r[0] * c, b.cy + u[1] * a + r[1] * c];
  return [p(hl, -hw), p(hl, hw), p(-hl, hw), p(-hl, -hw)];
}

/** A shape as an oriented box (axis boxes: heading 0 along their height). */
export function asOrientedBox(s: Shape): OrientedBox | null {
  if (s.kind === 'oriented_box') return s;
  if (s.kind === 'axis_box') return { kind: 'oriented_box', cx: s.cx, cy: s.cy, length: s.h, width: s.w, heading_deg: 0 };
  return null;
}

/** The OpenLayers geometry of a shape in map coordinates. Box rings run FL, FR, BR, BL, FL. */
export function shapeToGeometry(s: Shape, aff: Affine): Geometry {
  if (s.kind === 'point') return new Point(aff.toMap(s.x, s.y));
  const b = asOrientedBox(s)!;
  const ring = boxCorners(b).map(([x, y]) => aff.toMap(x, y));
  ring.push(ring[0].slice());
  return new Polygon([ring]);
}

/** Reads an oriented box back from a (possibly moved, rotated or scaled) FL,FR,BR,BL polygon. */
export function polygonToBox(poly: Polygon, aff: Affine): OrientedBox {
  const ring = poly.getCoordinates()[0].slice(0, 4).map((c) => aff.toPixel(c));
  const mid = (a: Vec, b: Vec): Vec => [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
  const front = mid(ring[0], ring[1]);
  const back = mid(ring[2], ring[3]);
  const left = mid(ring[0], ring[3]);
  const right = mid(ring[1], ring[2]);
  const cx = (ring[0][0] + ring[1][0] + ring[2][0] + ring[3][0]) / 4;
  const cy = (ring[0][1] + ring[1][1] + ring[2][1] + ring[3][1]) / 4;
  const v: Vec = [front[0] - back[0], front[1] - back[1]];
  return {
    kind: 'oriented_box',
    cx: round3(cx),
    cy: round3(cy),
    length: round3(Math.hypot(v[0], v[1])),
    width: round3(Math.hypot(right[0] - left[0], right[1] - left[1])),
    heading_deg: round3(vecHeading(v)),
  };
}

/** The oriented box of a freshly dragged (axis-aligned) rectangle: heading along the longer side. */
export function draggedBox(poly: Polygon, aff: Affine): OrientedBox {
  const px = poly.getCoordinates()[0].slice(0, 4).map((c) => aff.toPixel(c));
  const xs = px.map((p) => p[0]);
  const ys = px.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const w = x1 - x0, h = y1 - y0;
  return {
    kind: 'oriented_box',
    cx: round3((x0 + x1) / 2),
    cy: round3((y0 + y1) / 2),
    length: round3(Math.max(w, h)),
    width: round3(Math.min(w, h)),
    heading_deg: h >= w ? 0 : 90,
  };
}

/**
 * A heading after a rotation of the map geometry by `angle` radians (counter-clockwise in map
 * coordinates, as OpenLayers rotates), expressed in pixel terms through the affine transform.
 */
export function rotateHeading(h: number, angle: number, aff: Affine): number {
  const u = headingVec(h);
  const [x0, dx, rx, y0, ry, dy] = aff.t;
  void x0; void y0;
  const m: Vec = [u[0] * dx + u[1] * rx, u[0] * ry + u[1] * dy];
  const c = Math.cos(angle), s = Math.sin(angle);
  const mr: Coordinate = [m[0] * c - m[1] * s, m[0] * s + m[1] * c];
  const [a, b, c2, d] = aff.inv;
  const p: Vec = [a * mr[0] + b * mr[1], c2 * mr[0] + d * mr[1]];
  return round3(vecHeading(p));
}

/** Map-space direction (unit) of a pixel-space heading. */
export function headingMapVec(h: number, aff: Affine): Vec {
  const u = headingVec(h);
  const [, dx, rx, , ry, dy] = aff.t;
  const m: Vec = [u[0] * dx + u[1] * rx, u[0] * ry + u[1] * dy];
  const n = Math.hypot(m[0], m[1]) || 1;
  return [m[0] / n, m[1] / n];
}

export function round3(v: number): number {
  return Math.round(v * 1000) / 1000;
}
