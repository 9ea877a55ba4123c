// 3D view of the point cloud attached to the open image, around the selected sample (or the
// map view's centre), with every sample in that window drawn as a wireframe box. Samples are
// drawn here too (a box dragged on the ground from the object's back to its front, a point
// clicked on the cloud) and adjusted (moved, turned, resized, deleted); every edit goes through
// the deps, i.e. the same API calls, undo stack and selection as the map's.
//
// Server: GET /api/images/{id}/points?bbox=x0,y0,x1,y1&max=N answers points in image pixels
// (x right, y down) plus z in metres. Shown in metres: x_m = (x_px − cx)·gsd, y_m = −(y_px − cy)·gsd
// (north up; relative to the window centre (cx, cy) so float32 keeps its precision), z as is.

import type { Deck, Viewport } from '@deck.gl/core';

import { get, ApiError } from './api';
import { asOrientedBox, boxCorners, headingVec, normDeg, round3, vecHeading, type Vec } from './geo';
import type { HeadingMode, ImageView, OrientedBox, Polarity, Sample, Shape } from './types';
import { $, h, toast } from './ui';

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
  sample(id: number): Sample | undefined;
  selectedId(): number | null;
  /** The map view's centre and half-size, in image pixels. */
  viewWindow(): { cx: number; cy: number; half: number } | null;
  classColor(classId: number): string;
  headingMode(s: Sample): HeadingMode;
  /** A new sample of the active class, as one undoable edit: the stored sample, null if refused. */
  create(polarity: Polarity, shape: Shape): Promise<Sample | null>;
  /** A sample's new shape, as one undoable edit: the stored sample, null if refused. */
  update(id: number, shape: Shape): Promise<Sample | null>;
  remove(id: number): void;
  /** Selects a sample (or none) on the map and here. */
  select(id: number | null): void;
  /** Front known (directed heading) or not for the next box, as F does on the map. */
  toggleFrontKnown(): void;
}

export interface SelectedHeight { id: number; z_lo: number; z_hi: number; ground: number; height: number; inside: number }

/** Orbit: the camera (and selecting, moving); box / point: drawing with the mouse. */
export type Tool3D = 'orbit' | 'box' | 'point';

export interface View3DState {
  open: boolean;
  points: number;
  total: number;
  boxes: number;
  ready: boolean;
  error: string | null;
  selected: SelectedHeight | null;
  window: [number, number, number, number] | null;
  tool: Tool3D;
  polarity: Polarity;
  /** The ground height (m) drawn boxes are dragged on: the window's 5th percentile of z. */
  ground_m: number | null;
  lastCreatedId: number | null;
}

type Rgb = [number, number, number];
type Vec3 = [number, number, number];
interface Seg { s: Vec3; t: Vec3; c: Rgb; w: number }

/** deck.gl's binary data: the attributes as they are uploaded. */
interface PointsData { length: number; attributes: Record<string, { value: Float32Array | Uint8Array; size: number; normalized?: boolean }> }

/** A sample as drawn in the window, with the height range of the points in its footprint. */
interface Drawn { id: number; shape: Shape; lo: number; hi: number }

type Gesture =
  /** Orbit tool, a press off the selected box: the camera drags, a click selects. */
  | { kind: 'click'; x0: number; y0: number }
  | { kind: 'box'; pointerId: number; polarity: Polarity; a: Vec; b: Vec }
  | { kind: 'point'; pointerId: number; polarity: Polarity; x0: number; y0: number }
  /** The selected sample dragged on the horizontal plane through its middle (z_m); a click moves nothing. */
  | { kind: 'move'; pointerId: number; id: number; from: Shape; z_m: number; grab: Vec; x0: number; y0: number; moved: boolean };

const MAX_POINTS = 50000;
/** A drawn box's width before it is adjusted, as a share of its length: about a car's. */
const WIDTH_PER_LENGTH = 0.45;
const TURN_DEG = 5;
const TURN_FINE_DEG = 1;
const SCALE_STEP = 1.1;
const SCALE_FINE_STEP = 1.02;
/** A press that moves less than this (screen pixels) is a click. */
const CLICK_PX = 4;
/** How near (screen pixels) a click must be to a cloud point or a point sample's post. */
const PICK_PX = 8;

/** Keys that adjust the selected sample: what and which way (shift: a finer step). */
const ADJUST_KEYS: Record<string, ['turn' | 'width' | 'length', 1 | -1]> = {
  '[': ['turn', -1], '{': ['turn', -1], ']': ['turn', 1], '}': ['turn', 1],
  ',': ['width', -1], '<': ['width', -1], '.': ['width', 1], '>': ['width', 1],
  '-': ['length', -1], '_': ['length', -1], '=': ['length', 1], '+': ['length', 1],
};

const TOOL_KEYS: Record<string, [Tool3D, Polarity | null]> = {
  v: ['orbit', null], o: ['orbit', null],
  b: ['box', 'positive'], n: ['box', 'negative'],
  p: ['point', 'positive'], m: ['point', 'negative'],
};

const TOOL_HELP: Record<Tool3D, string> = {
  orbit: 'drag: orbit · shift+drag: pan · wheel: zoom · click a box: select · drag the selected box: move',
  box: 'press on the ground at the object’s back, drag to its front (width 45 % of the length) · wheel: zoom',
  point: 'click a point of the cloud (or the ground) · wheel: zoom',
};

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

/** Screen position (CSS pixels, top-left origin) and depth (−1 near … 1 far) of a world point. */
function projectTo(vp: Viewport, p: Vec3): Vec3 | null {
  const m = vp.pixelProjectionMatrix;
  const w = m[3] * p[0] + m[7] * p[1] + m[11] * p[2] + m[15];
  if (w <= 0) return null; // behind the camera
  return [
    (m[0] * p[0] + m[4] * p[1] + m[8] * p[2] + m[12]) / w,
    (m[1] * p[0] + m[5] * p[1] + m[9] * p[2] + m[13]) / w,
    (m[2] * p[0] + m[6] * p[1] + m[10] * p[2] + m[14]) / w,
  ];
}

/** The convex hull of screen points (monotone chain), counter-clockwise in a y-down frame. */
function hull(pts: Vec[]): Vec[] {
  const p = pts.slice().sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const cross = (o: Vec, a: Vec, b: Vec) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const half = (list: Vec[]) => {
    const out: Vec[] = [];
    for (const q of list) {
      while (out.length >= 2 && cross(out[out.length - 2], out[out.length - 1], q) <= 0) out.pop();
      out.push(q);
    }
    out.pop();
    return out;
  };
  return [...half(p), ...half(p.slice().reverse())];
}

function insideConvex(poly: Vec[], q: Vec): boolean {
  if (poly.length < 3) return false;
  let sign = 0;
  for (let i = 0; i < poly.length; i++) {
    const a = poly[i], b = poly[(i + 1) % poly.length];
    const c = Math.sign((b[0] - a[0]) * (q[1] - a[1]) - (b[1] - a[1]) * (q[0] - a[0]));
    if (c === 0) continue;
    if (sign === 0) sign = c;
    else if (c !== sign) return false;
  }
  return true;
}

function distToSegment(q: Vec, a: Vec, b: Vec): number {
  const dx = b[0] - a[0], dy = b[1] - a[1];
  const l2 = dx * dx + dy * dy;
  const t = l2 > 0 ? Math.max(0, Math.min(1, ((q[0] - a[0]) * dx + (q[1] - a[1]) * dy) / l2)) : 0;
  return Math.hypot(q[0] - a[0] - t * dx, q[1] - a[1] - t * dy);
}

function shapeCentre(s: Shape): Vec {
  return s.kind === 'point' ? [s.x, s.y] : [s.cx, s.cy];
}

/** The box from a drag on the ground, back (a) to front (b), in image pixels. */
function draggedAlong(a: Vec, b: Vec): OrientedBox {
  const length = Math.hypot(b[0] - a[0], b[1] - a[1]);
  return {
    kind: 'oriented_box',
    cx: round3((a[0] + b[0]) / 2),
    cy: round3((a[1] + b[1]) / 2),
    length: round3(length),
    width: round3(length * WIDTH_PER_LENGTH),
    heading_deg: round3(vecHeading([b[0] - a[0], b[1] - a[1]])),
  };
}

function moved(s: Shape, dx: number, dy: number): Shape {
  if (s.kind === 'point') return { ...s, x: round3(s.x + dx), y: round3(s.y + dy) };
  return { ...s, cx: round3(s.cx + dx), cy: round3(s.cy + dy) };
}

/** A shape turned or resized by one key step; null where that does not apply (a point's size). */
function adjusted(s: Shape, what: 'turn' | 'width' | 'length', sign: 1 | -1, fine: boolean): Shape | null {
  if (what === 'turn') {
    const d_deg = sign * (fine ? TURN_FINE_DEG : TURN_DEG);
    if (s.kind === 'point') return { ...s, heading_deg: round3(normDeg((s.heading_deg ?? 0) + d_deg)) };
    const b = asOrientedBox(s)!;
    return { ...b, heading_deg: round3(normDeg(b.heading_deg + d_deg)) };
  }
  if (s.kind === 'point') return null;
  const f = (fine ? SCALE_FINE_STEP : SCALE_STEP) ** sign;
  const size = (v: number) => round3(Math.max(1, v * f));
  if (s.kind === 'axis_box') return what === 'width' ? { ...s, w: size(s.w) } : { ...s, h: size(s.h) };
  return what === 'width' ? { ...s, width: size(s.width) } : { ...s, length: size(s.length) };
}

export function createView3D(deps: View3DDeps) {
  const st: View3DState = {
    open: false, points: 0, total: 0, boxes: 0, ready: false, error: null, selected: null, window: null,
    tool: 'orbit', polarity: 'positive', ground_m: null, lastCreatedId: null,
  };
  let deck: Deck<any> | null = null;
  let seq = 0;
  let byHeight = false;
  // Data of the current window.
  let cur: {
    resp: PointsResponse; cx: number; cy: number; gsd: number; n: number; bounds: [number, number, number, number];
    pos: Float32Array; zs: Float32Array; segs: Seg[];
    /** The points layer's data, kept while only the boxes change (a new object re-uploads the points). */
    pointsData: { rgb: PointsData; height: PointsData };
    zMin: number; zMid: number; ground: number; spanM: number;
  } | null = null;
  /** The samples drawn in the window, as last built. */
  let drawn: Drawn[] = [];
  /** Shapes shown instead of the stored ones: the sample being dragged, and edits not yet answered. */
  const overrides = new Map<number, Shape>();
  /** The box being drawn, or a new sample not yet answered. */
  let sketch: { polarity: Polarity; shape: Shape } | null = null;
  let gesture: Gesture | null = null;
  let hoverSelected = false;
  let rebuildQueued = false;
  let awaitingFrame = false;

  const wrap = $('view3d');
  const canvasHost = $('view3d-canvas');
  const legend = $('view3d-legend');
  const heightToggle = $('view3d-height') as HTMLInputElement;
  const negativeToggle = $('view3d-negative') as HTMLInputElement;
  const button = $('view3d-btn');

  heightToggle.addEventListener('change', () => { byHeight = heightToggle.checked; render(); });
  negativeToggle.addEventListener('change', () => setTool(st.tool, negativeToggle.checked ? 'negative' : 'positive'));
  wrap.querySelectorAll<HTMLButtonElement>('[data-tool3d]').forEach((b) => b.addEventListener('click', () => setTool(b.dataset.tool3d as Tool3D)));
  $('view3d-close').addEventListener('click', () => close());
  $('view3d-reset').addEventListener('click', () => { if (deck && cur) deck.setProps({ initialViewState: initialViewState() }); });
  // Capture phase: a press this view handles (drawing, moving the selected box) never reaches
  // deck.gl's camera controller, which listens on the canvas below.
  canvasHost.addEventListener('pointerdown', onPointerDown, true);
  canvasHost.addEventListener('pointermove', onPointerMove, true);
  canvasHost.addEventListener('pointerup', onPointerUp, true);
  canvasHost.addEventListener('pointercancel', () => cancelGesture(), true);

  function initialViewState(): any {
    const w = canvasHost.clientWidth || 800, hh = canvasHost.clientHeight || 600;
    const span = cur ? cur.spanM : 50;
    return {
      target: [0, 0, cur ? cur.zMid : 0] as Vec3,
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
    gesture = null;
    overrides.clear();
    sketch = null;
    wrap.classList.add('hidden');
    button.classList.remove('active');
    if (deck) { deck.finalize(); deck = null; }
    canvasHost.innerHTML = '';
    cur = null;
    drawn = [];
  }

  function setTool(tool: Tool3D, polarity: Polarity = st.polarity): void {
    cancelGesture();
    st.tool = tool;
    st.polarity = polarity;
    negativeToggle.checked = polarity === 'negative';
    wrap.querySelectorAll<HTMLButtonElement>('[data-tool3d]').forEach((b) => b.classList.toggle('active', b.dataset.tool3d === tool));
    renderLegend();
  }

  /** The window (image pixels) around the selected sample, or around the map view's centre. */
  function windowBox(img: ImageView): { cx: number; cy: number; half: number } {
    const id = deps.selectedId();
    const s = id !== null ? deps.sample(id) : undefined;
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
    st.ready = false; st.error = null; st.points = 0; st.total = 0; st.boxes = 0; st.selected = null; st.ground_m = null;
    awaitingFrame = false;
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

    const pointsData = (colors: Uint8Array): PointsData => ({
      length: n,
      attributes: { getPosition: { value: pos, size: 3 }, getColor: { value: colors, size: 4, normalized: true } },
    });
    cur = {
      resp, cx: win.cx, cy: win.cy, gsd, n, bounds: [x0, y0, x1, y1], pos, zs, segs: [],
      pointsData: { rgb: pointsData(rgb), height: pointsData(heightRgb) },
      zMin: isFinite(resp.z_min) ? resp.z_min : (n ? sorted[0] : 0),
      zMid: n ? percentile(sorted, 0.5) : 0,
      ground,
      spanM: Math.max(x1 - x0, y1 - y0) * gsd,
    };
    st.points = n;
    st.total = resp.total ?? n;
    st.ground_m = ground;
    buildBoxes();
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
        // The keys belong to this view's tools ([, ], -, = …), not to the camera.
        controller: { keyboard: false },
        getCursor: ({ isDragging }: { isDragging: boolean }) => {
          if (gesture?.kind === 'move') return 'grabbing';
          if (st.tool !== 'orbit') return 'crosshair';
          return hoverSelected ? 'move' : isDragging ? 'grabbing' : 'grab';
        },
        useDevicePixels: 1,
        onAfterRender: () => {
          if (!awaitingFrame || !deck) return;
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

  // --- pixels ↔ metres ↔ screen ---

  function toM(x_px: number, y_px: number, z_m: number): Vec3 {
    const c = cur!;
    return [(x_px - c.cx) * c.gsd, -(y_px - c.cy) * c.gsd, z_m];
  }

  function toPx(m: Vec): Vec {
    const c = cur!;
    return [m[0] / c.gsd + c.cx, -m[1] / c.gsd + c.cy];
  }

  function viewport(): Viewport | null {
    return deck?.getViewports()[0] ?? null;
  }

  /** Canvas pixel of a pointer event. */
  function local(e: PointerEvent): Vec {
    const r = canvasHost.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }

  /**
   * Where the ray under a canvas pixel meets the horizontal plane z = z_m (metres in the view),
   * or null above the horizon. OrbitViewport.unproject ignores `targetZ`, so the ray is
   * unprojected at the near (−1) and far (1) depths and cut here.
   */
  function onPlane(x: number, y: number, z_m: number): Vec | null {
    const vp = viewport();
    if (!vp) return null;
    const a = vp.unproject([x, y, -1]), b = vp.unproject([x, y, 1]);
    const dz = b[2] - a[2];
    if (Math.abs(dz) < 1e-12) return null;
    const t = (z_m - a[2]) / dz;
    if (!(t >= 0)) return null;
    return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t];
  }

  /** The screen position (client pixels) of an image pixel at height z_m, for tests and tooling. */
  function pixelToScreen(x_px: number, y_px: number, z_m: number): Vec | null {
    const vp = viewport();
    if (!vp || !cur) return null;
    const p = projectTo(vp, toM(x_px, y_px, z_m));
    if (!p) return null;
    const r = canvasHost.getBoundingClientRect();
    return [r.left + p[0], r.top + p[1]];
  }

  /** The front-most drawn sample under a canvas pixel (only `onlyId` when given). */
  function hitSample(x: number, y: number, onlyId?: number): Drawn | null {
    const vp = viewport();
    if (!vp || !cur) return null;
    let best: Drawn | null = null, bestDepth = Infinity;
    for (const d of drawn) {
      if (onlyId !== undefined && d.id !== onlyId) continue;
      let depth: number;
      if (d.shape.kind === 'point') {
        const a = projectTo(vp, toM(d.shape.x, d.shape.y, d.lo)), b = projectTo(vp, toM(d.shape.x, d.shape.y, d.hi));
        if (!a || !b || distToSegment([x, y], [a[0], a[1]], [b[0], b[1]]) > PICK_PX) continue;
        depth = Math.min(a[2], b[2]);
      } else {
        const corners = boxCorners(asOrientedBox(d.shape)!);
        const pts = [d.lo, d.hi].flatMap((z) => corners.map(([cx, cy]) => projectTo(vp, toM(cx, cy, z))));
        if (pts.some((p) => !p)) continue;
        if (!insideConvex(hull(pts.map((p) => [p![0], p![1]] as Vec)), [x, y])) continue;
        const [cx, cy] = shapeCentre(d.shape);
        depth = projectTo(vp, toM(cx, cy, (d.lo + d.hi) / 2))?.[2] ?? Infinity;
      }
      if (depth < bestDepth) { best = d; bestDepth = depth; }
    }
    return best;
  }

  /** The image pixel of the front-most cloud point within PICK_PX of a canvas pixel. */
  function pickCloudPoint(x: number, y: number): Vec | null {
    const vp = viewport();
    if (!vp || !cur) return null;
    const c = cur;
    let best = -1, bestDepth = Infinity;
    for (let i = 0; i < c.n; i++) {
      const p = projectTo(vp, [c.pos[3 * i], c.pos[3 * i + 1], c.pos[3 * i + 2]]);
      if (!p || Math.abs(p[0] - x) > PICK_PX || Math.abs(p[1] - y) > PICK_PX || Math.hypot(p[0] - x, p[1] - y) > PICK_PX) continue;
      if (p[2] < bestDepth) { best = i; bestDepth = p[2]; }
    }
    return best < 0 ? null : [c.resp.positions[3 * best], c.resp.positions[3 * best + 1]];
  }

  // --- mouse ---

  function take(e: PointerEvent): void {
    e.preventDefault();
    e.stopPropagation();
    canvasHost.setPointerCapture(e.pointerId);
  }

  function onPointerDown(e: PointerEvent): void {
    if (!deck || !cur || e.button !== 0) return;
    if (gesture && gesture.kind !== 'click') return;
    const [x, y] = local(e);
    if (st.tool === 'orbit') {
      const sel = deps.selectedId();
      const hit = sel !== null && !e.shiftKey ? hitSample(x, y, sel) : null;
      if (!hit) { gesture = { kind: 'click', x0: x, y0: y }; return; }
      const z_m = (hit.lo + hit.hi) / 2;
      const grab = onPlane(x, y, z_m);
      if (!grab) return;
      take(e);
      gesture = { kind: 'move', pointerId: e.pointerId, id: hit.id, from: hit.shape, z_m, grab, x0: x, y0: y, moved: false };
      return;
    }
    take(e);
    if (st.tool === 'box') {
      const a = onPlane(x, y, cur.ground);
      if (!a) { toast('Press on the ground: that is above the horizon.', 'info', 2500); return; }
      gesture = { kind: 'box', pointerId: e.pointerId, polarity: st.polarity, a, b: a };
    } else {
      gesture = { kind: 'point', pointerId: e.pointerId, polarity: st.polarity, x0: x, y0: y };
    }
  }

  function onPointerMove(e: PointerEvent): void {
    if (!cur) return;
    const [x, y] = local(e);
    const g = gesture;
    if (!g || g.kind === 'click') {
      const sel = deps.selectedId();
      hoverSelected = st.tool === 'orbit' && sel !== null && !!hitSample(x, y, sel);
      return;
    }
    if (g.kind === 'box') {
      g.b = onPlane(x, y, cur.ground) ?? g.b;
      sketch = { polarity: g.polarity, shape: draggedAlong(toPx(g.a), toPx(g.b)) };
      refresh();
    } else if (g.kind === 'move') {
      const p = onPlane(x, y, g.z_m);
      g.moved ||= Math.hypot(x - g.x0, y - g.y0) >= CLICK_PX;
      if (!p || !g.moved) return;
      // Metres on the plane → image pixels (y flips).
      const dx_px = (p[0] - g.grab[0]) / cur.gsd, dy_px = -(p[1] - g.grab[1]) / cur.gsd;
      overrides.set(g.id, moved(g.from, dx_px, dy_px));
      refresh();
    }
  }

  function onPointerUp(e: PointerEvent): void {
    const g = gesture;
    if (!g || !cur) return;
    const [x, y] = local(e);
    if (g.kind === 'click') {
      gesture = null;
      if (Math.hypot(x - g.x0, y - g.y0) < CLICK_PX) deps.select(hitSample(x, y)?.id ?? null);
      return;
    }
    if (e.pointerId !== g.pointerId) return;
    gesture = null;
    if (g.kind === 'box') {
      g.b = onPlane(x, y, cur.ground) ?? g.b;
      const shape = draggedAlong(toPx(g.a), toPx(g.b));
      if (shape.length < 3) {
        sketch = null;
        refresh();
        toast('Box too small: press at the object’s back and drag to its front.', 'info', 2500);
        return;
      }
      createSample(g.polarity, shape);
    } else if (g.kind === 'point') {
      if (Math.hypot(x - g.x0, y - g.y0) >= CLICK_PX) return;
      const m = onPlane(x, y, cur.ground);
      const at = pickCloudPoint(x, y) ?? (m ? toPx(m) : null);
      if (!at) { toast('Click on the cloud or the ground.', 'info', 2500); return; }
      createSample(g.polarity, { kind: 'point', x: round3(at[0]), y: round3(at[1]), heading_deg: null });
    } else {
      const shape = overrides.get(g.id);
      if (g.moved && shape) commit(g.id, shape);
      else overrides.delete(g.id);
    }
  }

  /** Drops a drawing or a move under way; false when there is none. */
  function cancelGesture(): boolean {
    const g = gesture;
    gesture = null;
    if (!g || g.kind === 'click') return false;
    if (g.kind === 'box') sketch = null;
    if (g.kind === 'move') overrides.delete(g.id);
    refresh();
    return true;
  }

  // --- edits (each one API call through the deps) ---

  function createSample(polarity: Polarity, shape: Shape): void {
    // The window lies inside the image; outside it the new sample would not be drawn here.
    const [x0, y0, x1, y1] = cur!.bounds;
    const [x, y] = shapeCentre(shape);
    if (x < x0 || y < y0 || x > x1 || y > y1) {
      sketch = null;
      refresh();
      toast('That is outside the points shown here: draw on the cloud.', 'info', 2500);
      return;
    }
    // The sketch stays until the server has answered: then the stored sample replaces it.
    const mine = { polarity, shape };
    sketch = mine;
    refresh();
    deps.create(polarity, shape).then((s) => {
      if (sketch === mine) sketch = null;
      if (s) { st.lastCreatedId = s.id; deps.select(s.id); }
      refresh();
    });
  }

  /** Shows the new shape at once and stores it; the stored sample (or, refused, the old one) follows. */
  function commit(id: number, shape: Shape): void {
    overrides.set(id, shape);
    refresh();
    deps.update(id, shape).then(() => {
      if (overrides.get(id) === shape) overrides.delete(id);
      refresh();
    });
  }

  /** Keys while the view is open (the map's wait); true when the key was this view's. */
  function onKey(e: KeyboardEvent): boolean {
    const k = e.key;
    const tool = e.shiftKey ? undefined : TOOL_KEYS[k.toLowerCase()];
    if (tool) { setTool(tool[0], tool[1] ?? st.polarity); return true; }
    if (k.toLowerCase() === 'f' && !e.shiftKey) { deps.toggleFrontKnown(); return true; }
    const id = deps.selectedId();
    if (k === 'Delete' || k === 'Backspace') { if (id !== null) deps.remove(id); return true; }
    const adjust = ADJUST_KEYS[k];
    if (!adjust) return false;
    const s = id !== null ? deps.sample(id) : undefined;
    if (!s || gesture?.kind === 'move') return true;
    // From the shape last asked for, so that quick repeats add up before the server answers.
    const next = adjusted(overrides.get(s.id) ?? s.shape, adjust[0], adjust[1], e.shiftKey);
    if (next) commit(s.id, next);
    return true;
  }

  /** Esc: drops a drawing or move under way, else closes the view. */
  function escape(): void {
    if (!cancelGesture()) close();
  }

  // --- drawing ---

  /** Rebuilds the boxes (not the points) on the next frame, after samples or the selection changed. */
  function refresh(): void {
    if (!st.open || !cur || rebuildQueued) return;
    rebuildQueued = true;
    requestAnimationFrame(() => {
      rebuildQueued = false;
      if (!st.open || !cur) return;
      buildBoxes();
      renderLegend();
      render();
    });
  }

  /** Every sample whose footprint meets the window, as line segments, plus the sketch. */
  function buildBoxes(): void {
    if (!cur) return;
    const c = cur;
    const [x0, y0, x1, y1] = c.bounds;
    const segs: Seg[] = [];
    const list: Drawn[] = [];
    const selId = deps.selectedId();
    st.selected = null;
    for (const s of deps.samples()) {
      if (s.id < 0) continue;
      const shape = overrides.get(s.id) ?? s.shape;
      const b = asOrientedBox(shape);
      const [bx, by] = shapeCentre(shape);
      const r = b ? Math.max(b.length, b.width) / 2 : 0;
      if (bx + r < x0 || bx - r > x1 || by + r < y0 || by - r > y1) continue;
      const selected = s.id === selId;
      const base: Rgb = s.polarity === 'negative' ? [150, 150, 150] : hexRgb(deps.classColor(s.class_id));
      const { lo, hi, inside } = addShape(segs, shape, selected ? [255, 235, 59] : base, selected ? 3.5 : 1.6,
        s.polarity === 'negative', deps.headingMode(s) === 'directed');
      if (selected && b) st.selected = { id: s.id, z_lo: lo, z_hi: hi, ground: c.ground, height: hi - c.ground, inside };
      list.push({ id: s.id, shape, lo, hi });
    }
    if (sketch) addShape(segs, sketch.shape, [255, 255, 255], 2.5, sketch.polarity === 'negative', true);
    c.segs = segs;
    drawn = list;
    st.boxes = list.length;
  }

  /** The lines of one shape (box with heading arrow, or a point's post); its height range. */
  function addShape(segs: Seg[], shape: Shape, col: Rgb, w: number, dashed: boolean, directed: boolean): { lo: number; hi: number; inside: number } {
    const c = cur!;
    const add = (a: Vec3, t: Vec3) => {
      if (!dashed) { segs.push({ s: a, t, c: col, w }); return; }
      const len = Math.hypot(t[0] - a[0], t[1] - a[1], t[2] - a[2]);
      const k = Math.max(2, Math.round(len / 0.35));
      for (let i = 0; i < k; i += 2) {
        const f0 = i / k, f1 = Math.min(1, (i + 1) / k);
        segs.push({ s: [a[0] + (t[0] - a[0]) * f0, a[1] + (t[1] - a[1]) * f0, a[2] + (t[2] - a[2]) * f0], t: [a[0] + (t[0] - a[0]) * f1, a[1] + (t[1] - a[1]) * f1, a[2] + (t[2] - a[2]) * f1], c: col, w });
      }
    };
    const b = asOrientedBox(shape);
    if (!b) {
      // A point sample: a vertical post.
      const [px, py] = shapeCentre(shape);
      const zTop = c.zMid + 2;
      add(toM(px, py, c.zMin), toM(px, py, zTop));
      return { lo: c.zMin, hi: zTop, inside: 0 };
    }
    // Points inside the footprint: project on the box's axes (pixels).
    const u = headingVec(b.heading_deg);
    const rv = [-u[1], u[0]];
    const hl = b.length / 2, hw = b.width / 2;
    const pos = c.resp.positions;
    let lo = Infinity, hi = -Infinity, inside = 0;
    for (let i = 0; i < c.n; i++) {
      const dx = pos[3 * i] - b.cx, dy = pos[3 * i + 1] - b.cy;
      const a = dx * u[0] + dy * u[1], cr = dx * rv[0] + dy * rv[1];
      if (Math.abs(a) <= hl && Math.abs(cr) <= hw) {
        const z = c.zs[i];
        if (z < lo) lo = z;
        if (z > hi) hi = z;
        inside++;
      }
    }
    if (!inside) { lo = c.zMin; hi = c.zMin + 1; }
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
    if (directed) {
      add(toM(b.cx, b.cy, zt), toM(fx, fy, zt));
      const hs = Math.min(hw, hl * 0.5);
      const bxh = fx - u[0] * hs, byh = fy - u[1] * hs;
      add(toM(fx, fy, zt), toM(bxh + rv[0] * hs * 0.7, byh + rv[1] * hs * 0.7, zt));
      add(toM(fx, fy, zt), toM(bxh - rv[0] * hs * 0.7, byh - rv[1] * hs * 0.7, zt));
    } else {
      add(toM(b.cx - u[0] * hl, b.cy - u[1] * hl, zt), toM(b.cx + u[0] * hl, b.cy + u[1] * hl, zt));
    }
    return { lo, hi, inside };
  }

  function render(): void {
    if (!deck || !cur || !lib) return;
    const c = cur;
    const { PointCloudLayer, LineLayer, COORDINATE_SYSTEM } = lib;
    // Ready again once a frame shows these layers.
    awaitingFrame = true;
    st.ready = false;
    deck.setProps({
      layers: [
        new PointCloudLayer({
          id: 'points',
          coordinateSystem: COORDINATE_SYSTEM.CARTESIAN,
          data: byHeight ? c.pointsData.height : c.pointsData.rgb,
          pointSize: 3,
          sizeUnits: 'pixels',
          material: false,
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
  }

  function renderLegend(): void {
    if (!cur) return;
    const r = cur.resp;
    const sel = st.selected;
    const selId = deps.selectedId();
    legend.innerHTML = '';
    legend.append(
      h('div', { 'data-testid': 'view3d-count', text: `${st.points.toLocaleString('en')} of ${st.total.toLocaleString('en')} points` }),
      h('div', { 'data-testid': 'view3d-zrange', text: `z ${r.z_min.toFixed(2)} – ${r.z_max.toFixed(2)} m · ground ${cur.ground.toFixed(2)} m · ${st.boxes} box${st.boxes === 1 ? '' : 'es'} · ${cur.gsd.toFixed(2)} m/px` }),
      sel
        ? h('div', { 'data-testid': 'view3d-selected', class: 'sel', text: `#${sel.id}: z ${sel.z_lo.toFixed(2)} – ${sel.z_hi.toFixed(2)} m, top ${sel.height.toFixed(2)} m above ground (${sel.ground.toFixed(2)} m)` })
        : h('div', { class: 'muted', text: selId !== null ? 'selected sample: no footprint' : 'no sample selected' }),
      h('div', { class: 'muted', 'data-testid': 'view3d-help', text: `${st.tool === 'orbit' ? 'Orbit' : `Draw ${st.polarity} ${st.tool}`}: ${TOOL_HELP[st.tool]}` }),
      withKeys('{V} orbit · {B} / {N} box + / − · {P} / {M} point + / − · {F} front known'),
      selId !== null
        ? withKeys('selected: {[} {]} turn 5° · {,} {.} width · {-} {=} length 10 % (shift: 1°, 2 %) · {Del} delete · {Ctrl+Z} undo')
        : withKeys('{Esc} / {3} back to the map · {Ctrl+Z} undo'),
    );
  }

  /** A muted legend line with each {key} as a <kbd>. */
  function withKeys(text: string): HTMLElement {
    return h('div', { class: 'muted' }, ...text.split(/\{([^}]+)\}/).map((part, i) => (i % 2 ? h('kbd', { text: part }) : part)));
  }

  return {
    state: st, toggle, open, close, onKey, escape, refresh, pixelToScreen,
    reload: () => { const img = deps.image(); if (st.open && img) load(img).catch(() => {}); },
  };
}
