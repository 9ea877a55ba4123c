// OpenLayers styles: samples (class colour, dashed negatives, heading arrows) and detections
// (red→yellow→green by score, review state).

import Style from 'ol/style/Style.js';
import Stroke from 'ol/style/Stroke.js';
import Fill from 'ol/style/Fill.js';
import CircleStyle from 'ol/style/Circle.js';
import Text from 'ol/style/Text.js';
import MultiLineString from 'ol/geom/MultiLineString.js';
import Point from 'ol/geom/Point.js';
import type Polygon from 'ol/geom/Polygon.js';
import type { FeatureLike } from 'ol/Feature.js';
import type { Coordinate } from 'ol/coordinate.js';
import { Affine, headingMapVec } from './geo';
import type { Detection, HeadingMode, Sample } from './types';

export interface StyleContext {
  affine: Affine | null;
  classColor: (classId: number) => string;
  threshold: number;
  currentDetectionId: number | null;
  selectedSampleId: number | null;
}

export const ctx: StyleContext = {
  affine: null,
  classColor: () => '#e6194b',
  threshold: 0.5,
  currentDetectionId: null,
  selectedSampleId: null,
};

export const NEGATIVE_COLOR = '#d9685f';

export function hexToRgba(hex: string, a: number): string {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex.trim());
  if (!m) return `rgba(230,25,75,${a})`;
  return `rgba(${parseInt(m[1], 16)},${parseInt(m[2], 16)},${parseInt(m[3], 16)},${a})`;
}

/** Red (0) → yellow (0.5) → green (1). */
export function scoreColor(score: number, alpha = 1): string {
  const s = Math.max(0, Math.min(1, score));
  const lerp = (a: number, b: number, t: number) => Math.round(a + (b - a) * t);
  let r: number, g: number, b: number;
  if (s < 0.5) {
    const t = s / 0.5;
    r = lerp(228, 245, t); g = lerp(52, 205, t); b = lerp(46, 45, t);
  } else {
    const t = (s - 0.5) / 0.5;
    r = lerp(245, 52, t); g = lerp(205, 199, t); b = lerp(45, 89, t);
  }
  return `rgba(${r},${g},${b},${alpha})`;
}

const mid = (a: Coordinate, b: Coordinate): Coordinate => [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];

/** Arrow geometry (map coordinates) for a FL,FR,BR,BL ring: centre → front, or both ways for an axis. */
function boxArrow(ring: Coordinate[], mode: HeadingMode, resolution: number): MultiLineString {
  const front = mid(ring[0], ring[1]);
  const back = mid(ring[2], ring[3]);
  const centre = mid(front, back);
  const len = Math.hypot(front[0] - back[0], front[1] - back[1]);
  const head = Math.min(Math.max(len * 0.22, 5 * resolution), 14 * resolution);
  const lines: Coordinate[][] = [];
  if (mode === 'directed') {
    lines.push([centre, front]);
    lines.push(...arrowHead(centre, front, head));
  } else {
    lines.push([back, front]);
    lines.push(...arrowHead(centre, front, head), ...arrowHead(centre, back, head));
  }
  return new MultiLineString(lines);
}

function arrowHead(from: Coordinate, tip: Coordinate, size: number): Coordinate[][] {
  const dx = tip[0] - from[0], dy = tip[1] - from[1];
  const n = Math.hypot(dx, dy) || 1;
  const ux = dx / n, uy = dy / n;
  const a = (28 * Math.PI) / 180;
  const side = (sgn: number): Coordinate => {
    const c = Math.cos(sgn * a), s = Math.sin(sgn * a);
    const bx = -(ux * c - uy * s), by = -(ux * s + uy * c);
    return [tip[0] + bx * size, tip[1] + by * size];
  };
  return [[side(1), tip, side(-1)]];
}

function pointArrow(at: Coordinate, heading: number, mode: HeadingMode, resolution: number): MultiLineString | null {
  if (!ctx.affine) return null;
  const u = headingMapVec(heading, ctx.affine);
  const L = 22 * resolution;
  const tip: Coordinate = [at[0] + u[0] * L, at[1] + u[1] * L];
  const lines: Coordinate[][] = [[at, tip], ...arrowHead(at, tip, 7 * resolution)];
  if (mode === 'axis') {
    const tail: Coordinate = [at[0] - u[0] * L, at[1] - u[1] * L];
    lines.push([at, tail], ...arrowHead(at, tail, 7 * resolution));
  }
  return new MultiLineString(lines);
}

export function sampleStyle(feature: FeatureLike, resolution: number): Style[] {
  const s = feature.get('sample') as Sample | undefined;
  if (!s) return [];
  const positive = s.polarity === 'positive';
  const color = positive ? ctx.classColor(s.class_id) : NEGATIVE_COLOR;
  const selected = ctx.selectedSampleId === s.id;
  const pending = feature.get('pending') === true;
  const width = selected ? 3 : 2;
  const dash = positive ? undefined : [6, 4];
  const stroke = new Stroke({ color: pending ? hexToRgba(color, 0.6) : color, width, lineDash: dash });
  const halo = new Stroke({ color: 'rgba(0,0,0,0.55)', width: width + 2, lineDash: dash });
  const geom = feature.getGeometry();
  const styles: Style[] = [];
  if (geom instanceof Point) {
    const at = geom.getCoordinates();
    styles.push(new Style({
      image: new CircleStyle({
        radius: selected ? 7 : 5.5,
        fill: new Fill({ color: positive ? hexToRgba(color, 0.85) : 'rgba(40,40,40,0.6)' }),
        stroke: new Stroke({ color: positive ? '#111' : color, width: 2, lineDash: dash }),
      }),
    }));
    const delta = (feature.get('rotDelta') as number | undefined) ?? 0;
    const h = s.shape.kind === 'point' ? s.shape.heading_deg : null;
    if (h !== null && h !== undefined) {
      const heading = delta ? (feature.get('liveHeading') as number) : h;
      const arrow = pointArrow(at, heading, s.heading_mode, resolution);
      if (arrow) {
        styles.unshift(new Style({ geometry: arrow, stroke: halo }));
        styles.push(new Style({ geometry: arrow, stroke: new Stroke({ color, width: 2 }) }));
      }
    }
    return styles;
  }
  const poly = geom as Polygon;
  const ring = poly.getCoordinates()[0];
  styles.push(new Style({ stroke: halo }));
  styles.push(new Style({
    stroke,
    fill: new Fill({ color: positive ? hexToRgba(color, selected ? 0.22 : 0.1) : 'rgba(217,104,95,0.07)' }),
  }));
  if (s.shape.kind === 'oriented_box' && ring.length >= 5) {
    const arrow = boxArrow(ring, s.heading_mode, resolution);
    styles.push(new Style({ geometry: arrow, stroke: new Stroke({ color: 'rgba(0,0,0,0.55)', width: 4 }) }));
    styles.push(new Style({ geometry: arrow, stroke: new Stroke({ color, width: 2 }) }));
  }
  return styles;
}

export function detectionStyle(feature: FeatureLike, resolution: number): Style[] | undefined {
  const d = feature.get('detection') as Detection | undefined;
  if (!d) return undefined;
  const current = ctx.currentDetectionId === d.id;
  if (d.status === 'pending' && d.score < ctx.threshold && !current) return [];
  const geom = feature.getGeometry() as Polygon;
  const ring = geom.getCoordinates()[0];
  const styles: Style[] = [];
  if (d.status === 'accepted') {
    styles.push(new Style({ stroke: new Stroke({ color: 'rgba(120,220,255,0.9)', width: 1.5, lineDash: [2, 3] }) }));
    return styles;
  }
  if (d.status === 'rejected') {
    styles.push(new Style({ stroke: new Stroke({ color: 'rgba(150,150,150,0.8)', width: 1.5, lineDash: [2, 3] }) }));
    const c = mid(mid(ring[0], ring[1]), mid(ring[2], ring[3]));
    const k = 4 * resolution;
    styles.push(new Style({
      geometry: new MultiLineString([[[c[0] - k, c[1] - k], [c[0] + k, c[1] + k]], [[c[0] - k, c[1] + k], [c[0] + k, c[1] - k]]]),
      stroke: new Stroke({ color: 'rgba(150,150,150,0.9)', width: 1.5 }),
    }));
    return styles;
  }
  const color = scoreColor(d.score);
  if (current) {
    styles.push(new Style({ stroke: new Stroke({ color: '#ffffff', width: 7 }) }));
    styles.push(new Style({ stroke: new Stroke({ color: '#1e88ff', width: 4 }) }));
  } else {
    styles.push(new Style({ stroke: new Stroke({ color: 'rgba(0,0,0,0.5)', width: 3.5 }) }));
  }
  styles.push(new Style({ stroke: new Stroke({ color, width: current ? 2 : 1.8 }), fill: new Fill({ color: scoreColor(d.score, 0.08) }) }));
  if (ring.length >= 5) {
    const arrow = boxArrow(ring, headingModeOf(d), resolution);
    styles.push(new Style({ geometry: arrow, stroke: new Stroke({ color: 'rgba(0,0,0,0.5)', width: 3.5 }) }));
    styles.push(new Style({ geometry: arrow, stroke: new Stroke({ color, width: 1.8 }) }));
  }
  if (current) {
    styles.push(new Style({
      geometry: new Point(ring[1]),
      text: new Text({
        text: d.score.toFixed(2),
        offsetY: -12,
        font: 'bold 12px system-ui, sans-serif',
        fill: new Fill({ color: '#fff' }),
        stroke: new Stroke({ color: '#1e88ff', width: 4 }),
      }),
    }));
  }
  return styles;
}

export let detectionHeadingMode: (d: Detection) => HeadingMode = () => 'directed';
export function setDetectionHeadingMode(f: (d: Detection) => HeadingMode) { detectionHeadingMode = f; }
function headingModeOf(d: Detection): HeadingMode { return detectionHeadingMode(d); }

/** A drawing sketch style: thin white dashed box with a crosshair pointer. */
export const sketchStyle = new Style({
  stroke: new Stroke({ color: '#ffffff', width: 1.5, lineDash: [5, 4] }),
  fill: new Fill({ color: 'rgba(255,255,255,0.08)' }),
  image: new CircleStyle({ radius: 4, stroke: new Stroke({ color: '#fff', width: 1.5 }) }),
});

