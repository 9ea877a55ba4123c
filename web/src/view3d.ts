// 3D view of the point cloud attached to the open image, around the selected sample (or the
// map view's centre), with every sample in that window drawn as a wireframe box.
//
// Server: GET /api/images/{id}/points?bbox=x0,y0,x1,y1&max=N answers points in image pixels
// (x right, y down) plus z in metres. Shown in metres: x_m = (x_px − cx)·gsd, y_m = −(y_px − cy)·gsd
// (north up; relative to the window centre (cx, cy) so float32 keeps its precision), z as is.

import type { Deck } from '@deck.gl/core';

import { get, ApiError } from './api';
import { asOrientedBox, boxCorners, headingVec } from './geo';
import type { HeadingMode, ImageView, Sample } from './types';
import { $, h } from './ui';

export interface PointsResponse {
  cloud: string;
  count: number;
  total: number;
  positions: number[];
  colors: number[];
  z_min: number;
  z_max: number;
  gsd_m: number;
}

export interface View3DDeps {
  image(): ImageView | null;
  samples(): Iterable<Sample>;
  selectedId(): number | null;
  /** The map view's centre and half-size, in image pixels. */
  viewWindow(): { cx: number; cy: number; half: number } | null;
  classColor(classId: number): string;
  headingMode(s: Sample): HeadingMode;
}

export interface SelectedHeight { id: number; z_lo: number; z_hi: number; ground: number; height: number; inside: number }

export interface View3DState {
  open: boolean;
  points: number;
  total: number;
  boxes: number;
  ready: boolean;
  error: string | null;
  selected: SelectedHeight | null;
  window: [number, number, number, number] | null;
}

type Rgb = [number, number, number];
interface Seg { s: [number, number, number]; t: [number, number, number]; c: Rgb; w: number }

const MAX_POINTS = 50000;

/** deck.gl is loaded on first use (its own chunk), so the map does not wait for it. */
type DeckLib = typeof import('@deck.gl/core') & typeof import('@deck.gl/layers');
let deckLib: Promise<DeckLib> | null = null;
function loadDeck(): Promise<DeckLib> {
  deckLib ??= Promise.all([import('@deck.gl/core'), import('@deck.gl/layers')]).then(([c, l]) => ({ ...c, ...l }) as DeckLib);
  return deckLib;
}
let lib: DeckLib | null = null;

function hexRgb(hex: string): Rgb {
  const m = /^#?([0-9a-f]{6})$/i.exec(hex.trim());
  if (!m) return [230, 25, 75];
  const v = parseInt(m[1], 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

/** A blue → cyan → green → yellow → red ramp, t in [0, 1]. */
function ramp(t: number): Rgb {
  const stops: Rgb[] = [[48, 18, 160], [30, 150, 230], [40, 200, 110], [240, 220, 40], [220, 40, 30]];
  const x = Math.max(0, Math.min(1, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const a = stops[i], b = stops[i + 1];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f].map(Math.round) as Rgb;
}

function percentile(sorted: Float32Array, p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(p * (sorted.length - 1))))];
}

export function createView3D(deps: View3DDeps) {
  const st: View3DState = { open: false, points: 0, total: 0, boxes: 0, ready: false, error: null, selected: null, window: null };
  let deck: Deck<any> | null = null;
  let seq = 0;
  let byHeight = false;
  // Data of the current window.
  let cur: {
    resp: PointsResponse; cx: number; cy: number; gsd: number; n: number;
    pos: Float32Array; rgb: Uint8Array; heightRgb: Uint8Array; segs: Seg[]; zMid: number; spanM: number;
  } | null = null;
  let awaitingFrame = false;

  const wrap = $('view3d');
  const canvasHost = $('view3d-canvas');
  const legend = $('view3d-legend');
  const heightToggle = $('view3d-height') as HTMLInputElement;
  const button = $('view3d-btn');

  heightToggle.addEventListener('change', () => { byHeight = heightToggle.checked; render(); });
  $('view3d-close').addEventListener('click', () => close());
  $('view3d-reset').addEventListener('click', () => { if (deck && cur) deck.setProps({ initialViewState: initialViewState() }); });

  function initialViewState(): any {
    const w = canvasHost.clientWidth || 800, hh = canvasHost.clientHeight || 600;
    const span = cur ? cur.spanM : 50;
    return {
      target: [0, 0, cur ? cur.zMid : 0] as [number, number, number],
      rotationX: 40,
      rotationOrbit: -25,
      zoom: Math.log2(Math.min(w, hh) / (span * 1.25)),
      minZoom: -10,
      maxZoom: 12,
    };
  }

  function toggle(): void { if (st.open) close(); else open(); }

  function open(): void {
    const img = deps.image();
    if (!img) return;
    st.open = true;
    wrap.classList.remove('hidden');
    button.classList.add('active');
    load(img).catch(() => { /* reported in load */ });
  }

  function close(): void {
    seq++;
    st.open = false;
    st.ready = false;
    wrap.classList.add('hidden');
    button.classList.remove('active');
    if (deck) { deck.finalize(); deck = null; }
    canvasHost.innerHTML = '';
    cur = null;
  }

  /** The window (image pixels) around the selected sample, or around the map view's centre. */
  function windowBox(img: ImageView): { cx: number; cy: number; half: number } {
    const id = deps.selectedId();
    const s = id !== null ? [...deps.samples()].find((x) => x.id === id) : undefined;
    if (s) {
      if (s.shape.kind === 'point') return { cx: s.shape.x, cy: s.shape.y, half: 40 };
      const b = asOrientedBox(s.shape)!;
      return { cx: b.cx, cy: b.cy, half: Math.max(40, 3 * Math.max(b.length, b.width)) };
    }
    const v = deps.viewWindow();
    if (v) return { cx: v.cx, cy: v.cy, half: Math.max(40, Math.min(v.half, 300)) };
    return { cx: img.width / 2, cy: img.height / 2, half: Math.min(300, Math.max(img.width, img.height) / 2) };
  }

  async function load(img: ImageView): Promise<void> {
    const my = ++seq;
    st.ready = false; st.error = null; st.points = 0; st.total = 0; st.boxes = 0; st.selected = null;
    legend.textContent = 'Loading points…';
    const win = windowBox(img);
    const x0 = Math.max(0, win.cx - win.half), y0 = Math.max(0, win.cy - win.half);
    const x1 = Math.min(img.width, win.cx + win.half), y1 = Math.min(img.height, win.cy + win.half);
    st.window = [x0, y0, x1, y1];
    let resp: PointsResponse;
    try {
      lib = await loadDeck();
      resp = await get<PointsResponse>(`/api/images/${img.id}/points?bbox=${[x0, y0, x1, y1].map((v) => Math.round(v * 100) / 100).join(',')}&max=${MAX_POINTS}`);
    } catch (e) {
      if (my !== seq) return;
      const msg = e instanceof ApiError && e.status === 404 ? `No point cloud for this image: ${e.message}` : (e as Error).message;
      st.error = msg;
      legend.textContent = msg;
      throw e;
    }
    if (my !== seq || !st.open) return;
    const gsd = resp.gsd_m || img.gsd_m || 1;
    const n = Math.min(resp.count ?? resp.positions.length / 3, Math.floor(resp.positions.length / 3));
    const pos = new Float32Array(n * 3);
    const rgb = new Uint8Array(n * 4);
    const zs = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      pos[3 * i] = (resp.positions[3 * i] - win.cx) * gsd;
      pos[3 * i + 1] = -(resp.positions[3 * i + 1] - win.cy) * gsd;
      pos[3 * i + 2] = resp.positions[3 * i + 2];
      zs[i] = resp.positions[3 * i + 2];
      rgb[4 * i] = resp.colors[3 * i] ?? 200;
      rgb[4 * i + 1] = resp.colors[3 * i + 1] ?? 200;
      rgb[4 * i + 2] = resp.colors[3 * i + 2] ?? 200;
      rgb[4 * i + 3] = 255;
    }
    const sorted = zs.slice().sort();
    const zLo = n ? percentile(sorted, 0.02) : resp.z_min;
    const zHi = n ? percentile(sorted, 0.98) : resp.z_max;
    const ground = n ? percentile(sorted, 0.05) : resp.z_min;
    const heightRgb = new Uint8Array(n * 4);
    for (let i = 0; i < n; i++) {
      const c = ramp((zs[i] - zLo) / Math.max(1e-6, zHi - zLo));
      heightRgb.set([c[0], c[1], c[2], 255], 4 * i);
    }

    // Boxes: every sample whose footprint meets the window.
    const segs: Seg[] = [];
    const selId = deps.selectedId();
    let boxes = 0;
    const zMin = isFinite(resp.z_min) ? resp.z_min : (n ? sorted[0] : 0);
    const toM = (x: number, y: number, z: number): [number, number, number] => [(x - win.cx) * gsd, -(y - win.cy) * gsd, z];
    for (const s of deps.samples()) {
      if (s.id < 0) continue;
      const b = asOrientedBox(s.shape);
      const bx = b ? b.cx : (s.shape as { x: number }).x;
      const by = b ? b.cy : (s.shape as { y: number }).y;
      const r = b ? Math.max(b.length, b.width) / 2 : 0;
      if (bx + r < x0 || bx - r > x1 || by + r < y0 || by - r > y1) continue;
      const selected = s.id === selId;
      const base: Rgb = s.polarity === 'negative' ? [150, 150, 150] : hexRgb(deps.classColor(s.class_id));
      const col: Rgb = selected ? [255, 235, 59] : base;
      const w = selected ? 3.5 : 1.6;
      const dashed = s.polarity === 'negative';
      const add = (a: [number, number, number], c: [number, number, number]) => {
        if (!dashed) { segs.push({ s: a, t: c, c: col, w }); return; }
        const len = Math.hypot(c[0] - a[0], c[1] - a[1], c[2] - a[2]);
        const k = Math.max(2, Math.round(len / 0.35));
        for (let i = 0; i < k; i += 2) {
          const f0 = i / k, f1 = Math.min(1, (i + 1) / k);
          segs.push({ s: [a[0] + (c[0] - a[0]) * f0, a[1] + (c[1] - a[1]) * f0, a[2] + (c[2] - a[2]) * f0], t: [a[0] + (c[0] - a[0]) * f1, a[1] + (c[1] - a[1]) * f1, a[2] + (c[2] - a[2]) * f1], c: col, w });
        }
      };
      if (!b) {
        // A point sample: a vertical post with a heading tick.
        const zTop = (n ? percentile(sorted, 0.5) : zMin) + 2;
        add(toM(bx, by, zMin), toM(bx, by, zTop));
        boxes++;
        continue;
      }
      // Points inside the footprint: project on the box's axes (pixels).
      const u = headingVec(b.heading_deg);
      const rv = [-u[1], u[0]];
      const hl = b.length / 2, hw = b.width / 2;
      let lo = Infinity, hi = -Infinity, inside = 0;
      for (let i = 0; i < n; i++) {
        const dx = resp.positions[3 * i] - b.cx, dy = resp.positions[3 * i + 1] - b.cy;
        const a = dx * u[0] + dy * u[1], c = dx * rv[0] + dy * rv[1];
        if (Math.abs(a) <= hl && Math.abs(c) <= hw) {
          const z = zs[i];
          if (z < lo) lo = z;
          if (z > hi) hi = z;
          inside++;
        }
      }
      if (!inside) { lo = zMin; hi = zMin + 1; }
      if (selected) st.selected = { id: s.id, z_lo: lo, z_hi: hi, ground, height: hi - ground, inside };
      const corners = boxCorners(b); // FL, FR, BR, BL
      const bot = corners.map(([x, y]) => toM(x, y, lo));
      const top = corners.map(([x, y]) => toM(x, y, hi));
      for (let i = 0; i < 4; i++) {
        add(bot[i], bot[(i + 1) % 4]);
        add(top[i], top[(i + 1) % 4]);
        add(bot[i], top[i]);
      }
      // Heading arrow on the top face: centre → front, with a head (a bare axis when the front is unknown).
      const zt = hi + 0.05;
      const fx = b.cx + u[0] * hl * 1.25, fy = b.cy + u[1] * hl * 1.25;
      if (deps.headingMode(s) === 'directed') {
        add(toM(b.cx, b.cy, zt), toM(fx, fy, zt));
        const hs = Math.min(hw, hl * 0.5);
        const bxh = fx - u[0] * hs, byh = fy - u[1] * hs;
        add(toM(fx, fy, zt), toM(bxh + rv[0] * hs * 0.7, byh + rv[1] * hs * 0.7, zt));
        add(toM(fx, fy, zt), toM(bxh - rv[0] * hs * 0.7, byh - rv[1] * hs * 0.7, zt));
      } else {
        add(toM(b.cx - u[0] * hl, b.cy - u[1] * hl, zt), toM(b.cx + u[0] * hl, b.cy + u[1] * hl, zt));
      }
      boxes++;
    }

    const spanM = Math.max(x1 - x0, y1 - y0) * gsd;
    cur = { resp, cx: win.cx, cy: win.cy, gsd, n, pos, rgb, heightRgb, segs, zMid: n ? percentile(sorted, 0.5) : 0, spanM };
    st.points = n;
    st.total = resp.total ?? n;
    st.boxes = boxes;
    renderLegend();
    const { Deck, OrbitView } = lib!;
    if (!deck) {
      canvasHost.innerHTML = '';
      const canvas = h('canvas', { 'data-testid': 'view3d-canvas' });
      canvasHost.appendChild(canvas);
      deck = new Deck({
        canvas,
        width: '100%',
        height: '100%',
        views: new OrbitView({ id: 'orbit', orbitAxis: 'Z', fovy: 40 } as any),
        initialViewState: initialViewState(),
        controller: true,
        useDevicePixels: 1,
        onAfterRender: () => {
          if (!awaitingFrame || !deck || my !== seq) return;
          const layers = (deck.props.layers ?? []) as { isLoaded?: boolean }[];
          if (layers.length && layers.every((l) => l.isLoaded !== false)) { awaitingFrame = false; st.ready = true; }
        },
        onError: (e: Error) => { st.error = e.message; legend.append(h('div', { class: 'inline-error', text: `WebGL: ${e.message}` })); },
      } as any);
    } else {
      deck.setProps({ initialViewState: initialViewState() });
    }
    render();
  }

  function render(): void {
    if (!deck || !cur || !lib) return;
    const c = cur;
    const { PointCloudLayer, LineLayer, COORDINATE_SYSTEM } = lib;
    awaitingFrame = true;
    deck.setProps({
      layers: [
        new PointCloudLayer({
          id: 'points',
          coordinateSystem: COORDINATE_SYSTEM.CARTESIAN,
          data: {
            length: c.n,
            attributes: {
              getPosition: { value: c.pos, size: 3 },
              getColor: { value: byHeight ? c.heightRgb : c.rgb, size: 4, normalized: true },
            },
          } as any,
          pointSize: 3,
          sizeUnits: 'pixels',
          material: false,
          updateTriggers: { getColor: byHeight },
        } as any),
        new LineLayer<Seg>({
          id: 'boxes',
          coordinateSystem: COORDINATE_SYSTEM.CARTESIAN,
          data: c.segs,
          getSourcePosition: (d) => d.s,
          getTargetPosition: (d) => d.t,
          getColor: (d) => d.c,
          getWidth: (d) => d.w,
          widthUnits: 'pixels',
          parameters: { depthCompare: 'always' } as any,
        }),
      ],
    });
    deck.redraw('data');
  }

  function renderLegend(): void {
    if (!cur) return;
    const r = cur.resp;
    const sel = st.selected;
    legend.innerHTML = '';
    legend.append(
      h('div', { 'data-testid': 'view3d-count', text: `${st.points.toLocaleString('en')} of ${st.total.toLocaleString('en')} points` }),
      h('div', { 'data-testid': 'view3d-zrange', text: `z ${r.z_min.toFixed(2)} – ${r.z_max.toFixed(2)} m · ${st.boxes} box${st.boxes === 1 ? '' : 'es'} · ${cur.gsd.toFixed(2)} m/px` }),
      sel
        ? h('div', { 'data-testid': 'view3d-selected', class: 'sel', text: `#${sel.id}: z ${sel.z_lo.toFixed(2)} – ${sel.z_hi.toFixed(2)} m, top ${sel.height.toFixed(2)} m above ground (${sel.ground.toFixed(2)} m)` })
        : h('div', { class: 'muted', text: deps.selectedId() !== null ? 'selected sample: no footprint' : 'no sample selected: around the view centre' }),
      h('div', { class: 'muted', text: 'drag: orbit · shift+drag: pan · wheel: zoom' }),
    );
  }

  return { state: st, toggle, open, close, reload: () => { const img = deps.image(); if (st.open && img) load(img).catch(() => {}); } };
}
