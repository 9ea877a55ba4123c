// Kestrel web app: image viewer, sample editor, training, detection and review against
// `kestrel serve`. Every edit is committed to the server at once; the page holds no state
// that a reload would not show again.

import 'ol/ol.css';
import './style.css';

import OlMap from 'ol/Map.js';
import View from 'ol/View.js';
import Feature from 'ol/Feature.js';
import TileLayer from 'ol/layer/Tile.js';
import VectorLayer from 'ol/layer/Vector.js';
import VectorSource from 'ol/source/Vector.js';
import XYZ from 'ol/source/XYZ.js';
import TileGrid from 'ol/tilegrid/TileGrid.js';
import Projection from 'ol/proj/Projection.js';
import ScaleLine from 'ol/control/ScaleLine.js';
import Zoom from 'ol/control/Zoom.js';
import Draw, { createBox } from 'ol/interaction/Draw.js';
import Point from 'ol/geom/Point.js';
import Polygon from 'ol/geom/Polygon.js';
import { getCenter, buffer as bufferExtent } from 'ol/extent.js';
import type { Coordinate } from 'ol/coordinate.js';
import type { Units } from 'ol/proj/Units.js';
import Transform from 'ol-ext/interaction/Transform';

import { ApiError, del, get, patch, post, put, withToken } from './api';
import { drawChart } from './chart';
import { Affine, draggedBox, polygonToBox, rotateHeading, shapeToGeometry, round3 } from './geo';
import { ctx, detectionStyle, setDetectionHeadingMode, sampleStyle, sketchStyle, scoreColor } from './styles';
import type {
  ClassInfo, ColourMethod, Detection, HeadingMode, HeightLayerInfo, ImageStats, ImageView, Job, ModelInfo, Polarity, Project,
  ReviewResult, Sample, Shape, TrainOptions,
} from './types';
import { isTerminal } from './types';
import { $, fmtNum, h, isTyping, toast } from './ui';
import { createView3D } from './view3d';

type Tool = 'select' | 'posbox' | 'pospoint' | 'negbox' | 'negpoint';

const TOOL_LABEL: Record<Tool, string> = {
  select: 'Select / edit',
  posbox: 'Positive box — drag',
  pospoint: 'Positive point — click',
  negbox: 'Negative box — drag',
  negpoint: 'Negative point — click',
};

// ---------------------------------------------------------------------------------------------
// State

const S = {
  project: null as Project | null,
  images: [] as ImageView[],
  image: null as ImageView | null,
  affine: null as Affine | null,
  stats: null as ImageStats | null,
  classes: [] as ClassInfo[],
  activeClassId: null as number | null,
  models: [] as ModelInfo[],
  samples: new Map<number, Sample>(),
  detections: new Map<number, Detection>(),
  tool: 'select' as Tool,
  frontKnown: true,
  reviewId: null as number | null,
  selectedId: null as number | null,
  display: { mode: 'rgb' as 'rgb' | 'grey', bands: [1, 2, 3], min: [] as number[], max: [] as number[], preset: 'p2p98' as string },
  trainJob: null as Job | null,
  detectJob: null as Job | null,
  ready: false,
  tilesPending: 0,
  tilesLoaded: 0,
  tilesFailed: 0,
  openSeq: 0,
};

const classById = (id: number | null | undefined) => S.classes.find((c) => c.id === id) ?? null;
ctx.classColor = (id) => classById(id)?.color ?? '#e6194b';
setDetectionHeadingMode((d) => classById(d.class_id)?.heading_mode ?? 'directed');

// ---------------------------------------------------------------------------------------------
// Map and layers

const samplesSource = new VectorSource();
const detectionsSource = new VectorSource();
const samplesLayer = new VectorLayer({ source: samplesSource, style: sampleStyle, zIndex: 20, updateWhileInteracting: true, updateWhileAnimating: true });
const detectionsLayer = new VectorLayer({ source: detectionsSource, style: detectionStyle, zIndex: 10, updateWhileInteracting: true, updateWhileAnimating: true });
samplesLayer.set('name', 'samples');
detectionsLayer.set('name', 'detections');
let tileLayer: TileLayer<XYZ> | null = null;

/** A layer of the image derived from its point cloud (e.g. nDSM), drawn over the imagery. */
interface HeightLayer {
  info: HeightLayerInfo;
  layer: TileLayer<XYZ>;
  source: XYZ;
  max: number;
  tilesPending: number;
  tilesLoaded: number;
  tilesFailed: number;
}
let heightLayers: HeightLayer[] = [];
/** Visibility and opacity by layer name, kept while switching images (not across reloads). */
const heightPrefs = new Map<string, { visible: boolean; opacity: number }>();
let scaleLine: ScaleLine | null = null;

const map = new OlMap({
  target: 'map',
  layers: [detectionsLayer, samplesLayer],
  controls: [new Zoom()],
  view: new View({ center: [0, 0], zoom: 2 }),
});

const transform = new Transform({
  layers: [samplesLayer],
  hitTolerance: 4,
  translateFeature: true,
  translate: true,
  rotate: true,
  scale: true,
  stretch: false,
  keepRectangle: true,
  noFlip: true,
  pointRadius: (f: Feature) => (f.getGeometry() instanceof Point ? 14 : 0),
});
map.addInteraction(transform);
/** ol-ext's own events (select, rotating, …end), untyped. */
const tx = transform as unknown as { on(type: string, listener: (e: any) => void): unknown };

let draw: Draw | null = null;

// 3D view of the point cloud around the selected sample (or the view's centre).
const view3d = createView3D({
  image: () => S.image,
  samples: () => S.samples.values(),
  sample: (id) => S.samples.get(id),
  selectedId: () => S.selectedId,
  viewWindow: () => {
    if (!S.affine) return null;
    const ext = map.getView().calculateExtent(map.getSize());
    const corners = [[ext[0], ext[1]], [ext[2], ext[3]], [ext[0], ext[3]], [ext[2], ext[1]]].map((c) => S.affine!.toPixel(c));
    const xs = corners.map((c) => c[0]), ys = corners.map((c) => c[1]);
    const cx = (Math.min(...xs) + Math.max(...xs)) / 2, cy = (Math.min(...ys) + Math.max(...ys)) / 2;
    return { cx, cy, half: Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys)) / 2 };
  },
  classColor: (id) => classById(id)?.color ?? '#e6194b',
  headingMode: (s) => s.heading_mode,
  // Heading modes as the map's tools give them: boxes by "front known", points by their class.
  create: (polarity, shape) => {
    if (shape.kind === 'point') return createSample(polarity, shape, classById(S.activeClassId)?.heading_mode ?? 'directed');
    const mode: HeadingMode = S.frontKnown ? 'directed' : 'axis';
    resetFrontKnown();
    return createSample(polarity, shape, mode);
  },
  update: (id, shape) => commitShape(id, shape),
  remove: (id) => deleteSample(id),
  select: (id) => {
    transform.select(null);
    const f = id !== null ? sampleFeature(id) : null;
    // The map's handles come with it where the map's tool edits.
    if (f && S.tool === 'select') transform.select(f, true);
    setSelected(id);
  },
  toggleFrontKnown: () => toggleFrontKnown(),
});

// ---------------------------------------------------------------------------------------------
// Helpers

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function reportError(e: unknown, context?: string): void {
  const msg = errText(e);
  toast(context ? `${context}: ${msg}` : msg, 'error');
  console.error(context ?? 'error', e);
}

/** Mutations run one after another, so each sees the versions the previous one left. */
let queue: Promise<unknown> = Promise.resolve();
let queueBusy = 0;
function enqueue<T>(fn: () => Promise<T>): Promise<T> {
  queueBusy++;
  const run = () => fn().finally(() => { queueBusy--; });
  const p = queue.then(run, run);
  queue = p.catch(() => undefined);
  return p;
}

const CLASS_COLORS = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6', '#bfef45', '#fabed4', '#469990'];

// ---------------------------------------------------------------------------------------------
// Samples on the map

function sampleFeature(id: number): Feature | null {
  return (samplesSource.getFeatureById(id) as Feature | null) ?? null;
}

function putSampleFeature(s: Sample): Feature {
  S.samples.set(s.id, s);
  let f = sampleFeature(s.id);
  const geom = shapeToGeometry(s.shape, S.affine!);
  if (f) {
    f.set('sample', s, true);
    f.set('rotDelta', 0, true);
    f.setGeometry(geom);
  } else {
    f = new Feature({ geometry: geom });
    f.setId(s.id);
    f.set('sample', s, true);
    samplesSource.addFeature(f);
  }
  scheduleSamplesPanel();
  view3d.refresh();
  return f;
}

function removeSampleFeature(id: number): void {
  S.samples.delete(id);
  const f = sampleFeature(id);
  if (f) {
    if (transform.getFeatures().getArray().includes(f)) transform.select(null);
    samplesSource.removeFeature(f);
  }
  if (S.selectedId === id) setSelected(null);
  scheduleSamplesPanel();
  view3d.refresh();
}

function setSelected(id: number | null): void {
  S.selectedId = id;
  ctx.selectedSampleId = id;
  samplesLayer.changed();
  renderSelectionInfo();
  document.querySelectorAll('.sample-card.selected').forEach((e) => e.classList.remove('selected'));
  if (id !== null) document.querySelector(`.sample-card[data-id="${id}"]`)?.classList.add('selected');
  view3d.refresh();
}

function shapeSummary(s: Shape): string {
  if (s.kind === 'point') return `point (${s.x.toFixed(1)}, ${s.y.toFixed(1)})` + (s.heading_deg === null ? '' : ` ${s.heading_deg.toFixed(1)}°`);
  if (s.kind === 'axis_box') return `box ${s.w.toFixed(1)}×${s.h.toFixed(1)} at (${s.cx.toFixed(1)}, ${s.cy.toFixed(1)})`;
  return `${s.length.toFixed(1)}×${s.width.toFixed(1)} px, heading ${s.heading_deg.toFixed(1)}°`;
}

function renderSelectionInfo(): void {
  const host = $('selection-info');
  const s = S.selectedId !== null ? S.samples.get(S.selectedId) : null;
  if (!s) { host.textContent = ''; host.classList.remove('on'); return; }
  host.classList.add('on');
  const c = classById(s.class_id);
  host.innerHTML = '';
  host.append(
    h('div', {}, h('b', { text: `#${s.id}` }), ` ${c?.name ?? '?'} · ${s.polarity} · ${s.heading_mode === 'directed' ? 'front known' : 'axis only'}`),
    h('div', { class: 'muted', text: `${shapeSummary(s.shape)} · ${s.origin} · v${s.version}` }),
  );
}

// ---------------------------------------------------------------------------------------------
// Undo / redo: inverse API operations

interface Op { label: string; review?: boolean; undo: () => Promise<void>; redo: () => Promise<void> }
const undoStack: Op[] = [];
const redoStack: Op[] = [];

/**
 * Operations refer to samples through handles, never bare ids: undoing a delete restores the
 * sample under a new id, and the server may give a deleted sample's id to a new one.
 */
interface Handle { id: number }
const handles = new Map<number, Handle>();
function handleOf(id: number): Handle {
  let h = handles.get(id);
  if (!h) { h = { id }; handles.set(id, h); }
  return h;
}
function freshHandle(id: number): Handle {
  const h = { id };
  handles.set(id, h);
  return h;
}

/** Review operations name detections, whose ids a new detection run may reuse: drop them. */
function dropReviewOps(): void {
  for (const st of [undoStack, redoStack]) {
    const keep = st.filter((op) => !op.review);
    st.length = 0;
    st.push(...keep);
  }
  updateUndoButtons();
}

function pushOp(op: Op): void {
  undoStack.push(op);
  if (undoStack.length > 200) undoStack.shift();
  redoStack.length = 0;
  updateUndoButtons();
}

function updateUndoButtons(): void {
  ($('undo-btn') as HTMLButtonElement).disabled = undoStack.length === 0;
  ($('redo-btn') as HTMLButtonElement).disabled = redoStack.length === 0;
  $('undo-btn').title = undoStack.length ? `Undo ${undoStack[undoStack.length - 1].label} (Ctrl+Z)` : 'Undo (Ctrl+Z)';
  $('redo-btn').title = redoStack.length ? `Redo ${redoStack[redoStack.length - 1].label} (Ctrl+Shift+Z / Ctrl+Y)` : 'Redo (Ctrl+Shift+Z / Ctrl+Y)';
}

function undo(): void {
  const op = undoStack.pop();
  if (!op) return;
  updateUndoButtons();
  enqueue(op.undo).then(
    () => { redoStack.push(op); updateUndoButtons(); toast(`Undone: ${op.label}`, 'info', 2000); },
    (e) => { handleConflict(e); reportError(e, `Undo ${op.label}`); },
  );
}

function redo(): void {
  const op = redoStack.pop();
  if (!op) return;
  updateUndoButtons();
  enqueue(op.redo).then(
    () => { undoStack.push(op); updateUndoButtons(); toast(`Redone: ${op.label}`, 'info', 2000); },
    (e) => { handleConflict(e); reportError(e, `Redo ${op.label}`); },
  );
}

/** A 409 carries the stored sample or detection: show it as it now is. */
function handleConflict(e: unknown): boolean {
  if (!(e instanceof ApiError) || e.status !== 409 || !e.body || typeof e.body !== 'object' || !e.body.current) return false;
  const cur = e.body.current;
  if (cur && typeof cur === 'object' && 'polarity' in cur && 'shape' in cur) {
    if (S.image && cur.image_id === S.image.id) putSampleFeature(cur as Sample);
    if (S.selectedId === cur.id) renderSelectionInfo();
    toast(`Sample #${cur.id} was changed elsewhere (now version ${cur.version}); it has been reloaded. ${e.message}`, 'error', 8000);
    return true;
  }
  if (cur && typeof cur === 'object' && 'score' in cur) {
    putDetection(cur as Detection);
    refreshReview(false);
    toast(`Detection #${cur.id} was reviewed elsewhere; it has been reloaded. ${e.message}`, 'error', 8000);
    return true;
  }
  return false;
}

// --- sample operations (each commits at once) ---

async function apiDeleteSample(id: number): Promise<Sample> {
  const cur = S.samples.get(id);
  if (!cur) throw new Error(`sample #${id} is not loaded`);
  await del<void>(`/api/samples/${id}?version=${cur.version}`);
  removeSampleFeature(id);
  return cur;
}

async function apiRestoreSample(before: Sample, h: Handle): Promise<Sample> {
  const s = await post<Sample>(`/api/samples/${before.id}/restore`, before);
  h.id = s.id;
  handles.set(s.id, h);
  if (S.image && s.image_id === S.image.id) putSampleFeature(s);
  return s;
}

async function apiUpdateSample(id: number, fields: Pick<Sample, 'class_id' | 'polarity' | 'shape' | 'heading_mode'>): Promise<Sample> {
  const cur = S.samples.get(id);
  if (!cur) throw new Error(`sample #${id} is not loaded`);
  const s = await put<Sample>(`/api/samples/${id}`, { version: cur.version, ...fields });
  putSampleFeature(s);
  if (S.selectedId === id) renderSelectionInfo();
  return s;
}

/** Creates a sample of the active class (one undoable edit); the stored sample, null if refused. */
function createSample(polarity: Polarity, shape: Shape, headingMode: HeadingMode): Promise<Sample | null> {
  const img = S.image;
  const cls = classById(S.activeClassId);
  if (!img || !cls) { toast('Add or choose a class first.', 'error'); return Promise.resolve(null); }
  // A provisional feature shows the box at once; the server's answer replaces it.
  const tempId = -Date.now();
  const temp: Sample = {
    id: tempId, image_id: img.id, class_id: cls.id, polarity, shape, heading_mode: headingMode,
    origin: 'drawn', version: 0,
  };
  const f = new Feature({ geometry: shapeToGeometry(shape, S.affine!) });
  f.setId(tempId);
  f.set('sample', temp);
  f.set('pending', true);
  samplesSource.addFeature(f);
  const body = { image_id: img.id, class_id: cls.id, polarity, shape, heading_mode: headingMode };
  return enqueue(() => post<Sample>('/api/samples', body)).then(
    (s) => {
      samplesSource.removeFeature(f);
      if (!S.image || S.image.id !== s.image_id) return null;
      putSampleFeature(s);
      bumpClassCount(s.class_id, s.polarity, 1);
      const h = freshHandle(s.id);
      let deleted: Sample | null = null;
      pushOp({
        label: `${polarity} ${shape.kind === 'point' ? 'point' : 'box'}`,
        undo: async () => { deleted = await apiDeleteSample(h.id); bumpClassCount(s.class_id, s.polarity, -1); },
        redo: async () => { if (deleted) { await apiRestoreSample(deleted, h); bumpClassCount(s.class_id, s.polarity, 1); } },
      });
      return s;
    },
    (e) => {
      samplesSource.removeFeature(f);
      reportError(e, 'Could not save the sample');
      return null;
    },
  );
}

function deleteSelected(): void {
  if (S.selectedId !== null) deleteSample(S.selectedId);
}

function deleteSample(id: number): void {
  if (!S.samples.has(id)) return;
  if (S.selectedId === id) {
    transform.select(null);
    setSelected(null);
  }
  enqueue(() => apiDeleteSample(id)).then(
    (deleted) => {
      bumpClassCount(deleted.class_id, deleted.polarity, -1);
      const h = handleOf(deleted.id);
      let snapshot = deleted;
      pushOp({
        label: `delete #${deleted.id}`,
        undo: async () => { const s = await apiRestoreSample(snapshot, h); bumpClassCount(s.class_id, s.polarity, 1); },
        redo: async () => { snapshot = await apiDeleteSample(h.id); bumpClassCount(snapshot.class_id, snapshot.polarity, -1); },
      });
    },
    (e) => { if (!handleConflict(e)) reportError(e, 'Could not delete'); },
  );
}

/** After a move, rotation or scale: the feature's geometry back into a shape, PUT at once. */
function commitTransform(f: Feature, rotationRad: number | null): void {
  const s = f.get('sample') as Sample | undefined;
  if (!s || s.id < 0 || !S.affine) return;
  const aff = S.affine;
  const geom = f.getGeometry();
  let shape: Shape;
  if (geom instanceof Point) {
    const [x, y] = aff.toPixel(geom.getCoordinates());
    const prev = s.shape.kind === 'point' ? s.shape.heading_deg : null;
    const heading = rotationRad !== null && rotationRad !== 0 ? rotateHeading(prev ?? 0, rotationRad, aff) : prev;
    shape = { kind: 'point', x: round3(x), y: round3(y), heading_deg: heading };
  } else if (geom instanceof Polygon) {
    const box = polygonToBox(geom, aff);
    if (s.shape.kind === 'axis_box' && Math.min(Math.abs(box.heading_deg), Math.abs(360 - box.heading_deg)) < 0.01) {
      shape = { kind: 'axis_box', cx: box.cx, cy: box.cy, w: box.width, h: box.length };
    } else {
      shape = box;
    }
  } else {
    return;
  }
  f.set('rotDelta', 0, true);
  commitShape(s.id, shape);
}

/**
 * A sample's new shape, PUT in the queue and pushed as one undoable edit (the map's transforms
 * and the 3D view's edits alike). The shape it replaces is read when the PUT runs, so edits
 * queued one after another undo one at a time. The stored sample, null if refused.
 */
function commitShape(id: number, shape: Shape): Promise<Sample | null> {
  const h = handleOf(id);
  let before: Sample | undefined;
  return enqueue(() => {
    before = S.samples.get(h.id);
    if (!before) throw new Error(`sample #${h.id} is not loaded`);
    return apiUpdateSample(h.id, { class_id: before.class_id, polarity: before.polarity, heading_mode: before.heading_mode, shape });
  }).then(
    (s) => {
      const prev = before!;
      const fields = { class_id: prev.class_id, polarity: prev.polarity, heading_mode: prev.heading_mode };
      pushOp({
        label: `edit #${id}`,
        undo: async () => { await apiUpdateSample(h.id, { ...fields, shape: prev.shape }); },
        redo: async () => { await apiUpdateSample(h.id, { ...fields, shape }); },
      });
      return s;
    },
    (e) => {
      if (!handleConflict(e)) {
        // Put the feature back where the server has it.
        const cur = S.samples.get(h.id);
        if (cur) putSampleFeature(cur);
        reportError(e, 'Could not save the edit');
      }
      return null;
    },
  );
}

tx.on('select', (e: any) => {
  const arr = (e.features?.getArray?.() ?? []) as Feature[];
  const f = arr[0];
  const s = f?.get('sample') as Sample | undefined;
  setSelected(s && s.id > 0 ? s.id : null);
});
tx.on('rotating', (e: any) => {
  const f = e.feature as Feature | undefined;
  if (!f || !(f.getGeometry() instanceof Point) || !S.affine) return;
  const s = f.get('sample') as Sample;
  const prev = s.shape.kind === 'point' ? s.shape.heading_deg ?? 0 : 0;
  f.set('rotDelta', e.angle || 1e-9, true);
  f.set('liveHeading', rotateHeading(prev, e.angle, S.affine), true);
  f.changed();
});
let lastRotation = 0;
tx.on('rotatestart', () => { lastRotation = 0; });
tx.on('rotating', (e: any) => { lastRotation = e.angle; });
for (const t of ['translateend', 'rotateend', 'scaleend']) {
  tx.on(t, (e: any) => {
    if (!e.transformed) return;
    for (const f of (e.features?.getArray?.() ?? [e.feature]) as Feature[]) {
      commitTransform(f, t === 'rotateend' ? lastRotation : null);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Drawing tools

function setTool(t: Tool): void {
  S.tool = t;
  if (draw) { map.removeInteraction(draw); draw = null; }
  transform.setActive(t === 'select');
  if (t !== 'select') { transform.select(null); setSelected(null); }
  document.querySelectorAll<HTMLButtonElement>('#tools button').forEach((b) => b.classList.toggle('active', b.dataset.tool === t));
  $('st-tool').textContent = TOOL_LABEL[t];
  $('map').classList.toggle('drawing', t !== 'select');
  if (t === 'select' || !S.image) return;
  const polarity: Polarity = t === 'posbox' || t === 'pospoint' ? 'positive' : 'negative';
  const isBox = t === 'posbox' || t === 'negbox';
  draw = isBox
    ? new Draw({ type: 'Circle', geometryFunction: createBox(), freehand: true, style: sketchStyle, stopClick: true })
    : new Draw({ type: 'Point', style: sketchStyle, stopClick: true });
  draw.on('drawend', (e) => {
    const geom = e.feature.getGeometry();
    if (!S.affine) return;
    if (isBox && geom instanceof Polygon) {
      const box = draggedBox(geom, S.affine);
      if (box.length < 2 || box.width < 1) { toast('Box too small: drag to draw a box.', 'info', 2500); return; }
      createSample(polarity, box, S.frontKnown ? 'directed' : 'axis');
      resetFrontKnown();
    } else if (geom instanceof Point) {
      const [x, y] = S.affine.toPixel(geom.getCoordinates());
      if (!insideImage(x, y)) { toast('That point is outside the image.', 'info', 2500); return; }
      const mode = classById(S.activeClassId)?.heading_mode ?? 'directed';
      createSample(polarity, { kind: 'point', x: round3(x), y: round3(y), heading_deg: null }, mode);
    }
  });
  map.addInteraction(draw);
}

function insideImage(x: number, y: number): boolean {
  return !!S.image && x >= 0 && y >= 0 && x <= S.image.width && y <= S.image.height;
}

function resetFrontKnown(): void {
  S.frontKnown = (classById(S.activeClassId)?.heading_mode ?? 'directed') === 'directed';
  ($('front-known') as HTMLInputElement).checked = S.frontKnown;
}

function toggleFrontKnown(): void {
  S.frontKnown = !S.frontKnown;
  ($('front-known') as HTMLInputElement).checked = S.frontKnown;
  toast(S.frontKnown ? 'Next box: front known (directed heading)' : 'Next box: axis only (front unknown)', 'info', 1800);
}

// ---------------------------------------------------------------------------------------------
// Images

async function loadImages(): Promise<void> {
  S.images = await get<ImageView[]>('/api/images');
  renderImages();
}

function renderImages(): void {
  const ul = $('image-list');
  ul.innerHTML = '';
  for (const img of S.images) {
    const li = h('li', { class: S.image?.id === img.id ? 'active' : '', 'data-testid': `image-${img.id}`, title: img.uri },
      h('span', { class: 'name', text: img.name }),
      h('span', { class: 'meta', text: `${img.width}×${img.height} · ${img.bands}b${img.gsd_m ? ' · ' + img.gsd_m.toFixed(2) + ' m' : ''}` }),
    );
    li.addEventListener('click', () => { if (S.image?.id !== img.id) openImage(img.id).catch((e) => reportError(e, 'Could not open the image')); });
    ul.appendChild(li);
  }
  $('map-empty').classList.toggle('hidden', S.images.length > 0);
  renderCloudInfo();
}

function renderCloudInfo(): void {
  const el = $('cloud-info');
  const img = S.image;
  const cloud = img ? (S.images.find((i) => i.id === img.id)?.cloud ?? img.cloud ?? null) : null;
  el.textContent = !img ? '' : cloud ? `Point cloud: ${cloud.split('/').pop()}` : 'No point cloud attached to this image.';
  el.title = cloud ?? '';
  ($('view3d-btn') as HTMLButtonElement).classList.toggle('no-cloud', !cloud);
}

async function attachCloud(ev: Event): Promise<void> {
  ev.preventDefault();
  const input = $('attach-cloud-input') as HTMLInputElement;
  const errBox = $('attach-cloud-error');
  const v = input.value.trim();
  errBox.textContent = '';
  if (!v || !S.image) return;
  const id = S.image.id;
  try {
    const r = await post<{ image_id: number; cloud: string; points: number }>(`/api/images/${id}/cloud`, { path: v });
    input.value = '';
    if (S.image && S.image.id === id) S.image.cloud = r.cloud;
    await loadImages();
    toast(`Attached ${r.cloud.split('/').pop()} (${r.points.toLocaleString('en')} points)`, 'ok', 3000);
    view3d.reload();
  } catch (e) {
    errBox.textContent = errText(e);
    reportError(e, 'Point cloud refused');
  }
}

async function openImage(id: number): Promise<void> {
  const seq = ++S.openSeq;
  S.ready = false;
  const [img, stats] = await Promise.all([
    get<ImageView>(`/api/images/${id}`),
    get<ImageStats>(`/api/images/${id}/stats`).catch((e) => { reportError(e, 'Band statistics'); return null; }),
  ]);
  if (seq !== S.openSeq) return;
  if (view3d.state.open) view3d.close();
  S.image = img;
  S.stats = stats;
  S.affine = new Affine(img.pixel_to_map);
  ctx.affine = S.affine;
  try { localStorage.setItem('kestrel.image', String(id)); } catch { /* ignore */ }

  transform.select(null);
  setSelected(null);
  samplesSource.clear();
  detectionsSource.clear();
  S.samples.clear();
  S.detections.clear();
  S.reviewId = null;
  undoStack.length = 0;
  redoStack.length = 0;
  handles.clear();
  updateUndoButtons();

  const units: Units = img.map_units === 'm' ? 'm' : img.map_units === 'degrees' ? 'degrees' : 'pixels';
  const projection = new Projection({ code: img.projection, units, extent: img.extent });
  const res = img.tiles.resolutions;
  const fine = res[res.length - 1];
  const view = new View({
    projection,
    extent: bufferExtent(img.extent, Math.max(img.extent[2] - img.extent[0], img.extent[3] - img.extent[1]) * 0.25),
    constrainOnlyCenter: true,
    maxResolution: res[0] * 2,
    minResolution: fine / 16,
    center: getCenter(img.extent),
    resolution: res[0],
    smoothExtentConstraint: true,
  });
  map.setView(view);
  view.fit(img.extent, { padding: [20, 20, 20, 20] });

  initDisplay(img, stats);
  if (tileLayer) map.removeLayer(tileLayer);
  const source = new XYZ({
    projection,
    tileGrid: new TileGrid({ origin: img.tiles.origin, resolutions: res, tileSize: img.tiles.size, extent: img.extent }),
    url: tileUrl(img),
    transition: 150,
    interpolate: true,
  });
  S.tilesPending = 0; S.tilesLoaded = 0; S.tilesFailed = 0;
  source.on('tileloadstart', () => { S.tilesPending++; });
  source.on('tileloadend', () => { S.tilesPending = Math.max(0, S.tilesPending - 1); S.tilesLoaded++; });
  source.on('tileloaderror', () => {
    S.tilesPending = Math.max(0, S.tilesPending - 1);
    if (S.tilesFailed++ === 0) toast('Some tiles could not be loaded (see the browser console).', 'error');
  });
  tileLayer = new TileLayer({ source, extent: img.extent, preload: 1, zIndex: 0 });
  map.addLayer(tileLayer);
  buildHeightLayers(img, projection);

  if (scaleLine) { map.removeControl(scaleLine); scaleLine = null; }
  if (units !== 'pixels') {
    scaleLine = new ScaleLine({ units: 'metric', bar: false, minWidth: 80 });
    map.addControl(scaleLine);
  }
  $('st-crs').textContent = img.crs ?? (img.georeferenced ? img.projection : 'pixels (no georeferencing)');
  renderImages();
  // Which bands can be trained on and which models can read this image.
  renderTrainOptions();
  renderModels();

  const [samples, detections] = await Promise.all([
    get<Sample[]>(`/api/samples?image_id=${id}`),
    get<Detection[]>(`/api/detections?image_id=${id}`).catch((e) => { reportError(e, 'Detections'); return [] as Detection[]; }),
  ]);
  if (seq !== S.openSeq) return;
  for (const s of samples) putSampleFeature(s);
  for (const d of detections) putDetection(d);
  applyDetectionsModel(detections);
  setTool(S.tool);
  renderSamplesPanel();
  refreshReview(false);
  renderExportLinks();
  S.ready = true;
}

// --- height layers (from the point cloud) ---

function heightTileUrl(img: ImageView, hl: { info: HeightLayerInfo; max: number }): string {
  const q = hl.max !== hl.info.max && isFinite(hl.max) && hl.max > 0 ? `?max=${hl.max}` : '';
  return withToken(`/api/images/${img.id}/layers/${encodeURIComponent(hl.info.name)}/tiles/{z}/{x}/{y}.png${q}`);
}

/** Drops the previous image's height layers and makes (hidden unless remembered) ones for `img`. */
function buildHeightLayers(img: ImageView, projection: Projection): void {
  for (const hl of heightLayers) map.removeLayer(hl.layer);
  heightLayers = [];
  const grid = new TileGrid({ origin: img.tiles.origin, resolutions: img.tiles.resolutions, tileSize: img.tiles.size, extent: img.extent });
  for (const info of img.layers ?? []) {
    const pref = heightPrefs.get(info.name) ?? { visible: false, opacity: 0.7 };
    const source = new XYZ({ projection, tileGrid: grid, url: heightTileUrl(img, { info, max: info.max }), transition: 0, interpolate: false });
    const hl: HeightLayer = {
      info, source, max: info.max, tilesPending: 0, tilesLoaded: 0, tilesFailed: 0,
      layer: new TileLayer({ source, extent: img.extent, preload: 0, zIndex: 5, opacity: pref.opacity, visible: pref.visible }),
    };
    hl.layer.set('name', `height:${info.name}`);
    source.on('tileloadstart', () => { hl.tilesPending++; });
    source.on('tileloadend', () => { hl.tilesPending = Math.max(0, hl.tilesPending - 1); hl.tilesLoaded++; });
    source.on('tileloaderror', () => {
      hl.tilesPending = Math.max(0, hl.tilesPending - 1);
      if (hl.tilesFailed++ === 0) toast(`Some tiles of the layer “${info.title}” could not be loaded.`, 'error');
    });
    map.addLayer(hl.layer);
    heightLayers.push(hl);
  }
  renderHeightLayers();
}

function setHeightVisible(i: number, visible: boolean): void {
  const hl = heightLayers[i];
  if (!hl) return;
  hl.layer.setVisible(visible);
  heightPrefs.set(hl.info.name, { visible, opacity: hl.layer.getOpacity() });
  const cb = document.querySelector<HTMLInputElement>(`#height-layers [data-layer="${hl.info.name}"] input[type=checkbox]`);
  if (cb) cb.checked = visible;
}

function toggleHeightLayer(i = 0): void {
  const hl = heightLayers[i];
  if (!hl) { toast(S.image?.cloud ? 'No height layer for this image.' : 'No height layer: this image has no point cloud.', 'info', 2500); return; }
  setHeightVisible(i, !hl.layer.getVisible());
}

function renderHeightLayers(): void {
  const host = $('height-layers');
  host.innerHTML = '';
  heightLayers.forEach((hl, i) => {
    const { info } = hl;
    const cb = h('input', { type: 'checkbox', 'data-testid': `layer-${info.name}` }) as HTMLInputElement;
    cb.checked = hl.layer.getVisible();
    cb.addEventListener('change', () => setHeightVisible(i, cb.checked));
    const op = h('input', { type: 'range', min: 0, max: 1, step: 0.05, 'data-testid': `layer-${info.name}-opacity` }) as HTMLInputElement;
    op.value = String(hl.layer.getOpacity());
    op.title = 'opacity';
    op.addEventListener('input', () => {
      hl.layer.setOpacity(Number(op.value));
      heightPrefs.set(info.name, { visible: hl.layer.getVisible(), opacity: Number(op.value) });
    });
    const top = h('span', { text: `${fmtLegend(hl.max)} ${info.unit}` });
    const mx = h('input', { type: 'number', min: 0.1, step: 0.5, 'data-testid': `layer-${info.name}-max` }) as HTMLInputElement;
    mx.value = String(hl.max);
    mx.title = `top of the colour ramp (${info.unit})`;
    mx.addEventListener('change', () => {
      const v = Number(mx.value);
      if (!isFinite(v) || v <= 0 || !S.image) { mx.value = String(hl.max); return; }
      hl.max = v;
      top.textContent = `${fmtLegend(v)} ${info.unit}`;
      hl.source.setUrl(heightTileUrl(S.image, hl));
    });
    host.appendChild(h('div', { class: 'height-layer', 'data-layer': info.name },
      h('label', { class: 'check', title: i === 0 ? `${info.title} (H)` : info.title }, cb, ` ${info.title}`, ...(i === 0 ? [h('kbd', { text: 'H' })] : [])),
      h('div', { class: 'hl-row' }, h('span', { text: 'opacity' }), op, h('span', { text: 'max' }), mx),
      h('div', { class: 'hl-legend', 'data-testid': `layer-${info.name}-legend`, title: 'colour ramp (transparent: ground or no data)' },
        h('span', { text: `0` }), h('span', { class: 'hl-ramp' }), top)));
  });
}

function fmtLegend(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function tileUrl(img: ImageView): string {
  const d = S.display;
  const q: string[] = [`bands=${d.bands.join(',')}`];
  if (d.min.length === d.bands.length && d.max.length === d.bands.length && d.min.every(isFinite) && d.max.every(isFinite)) {
    q.push(`min=${d.min.join(',')}`, `max=${d.max.join(',')}`);
  }
  return withToken(`/api/images/${img.id}/tiles/{z}/{x}/{y}.png?${q.join('&')}`);
}

async function addImage(ev: Event): Promise<void> {
  ev.preventDefault();
  const input = $('add-image-input') as HTMLInputElement;
  const errBox = $('add-image-error');
  const v = input.value.trim();
  errBox.textContent = '';
  if (!v) return;
  const body = /^(https?|s3|gs):\/\//i.test(v) ? { url: v } : { path: v };
  try {
    const img = await post<ImageView>('/api/images', body);
    input.value = '';
    await loadImages();
    await openImage(img.id);
    toast(`Added ${img.name}`, 'ok', 2500);
  } catch (e) {
    errBox.textContent = errText(e);
    reportError(e, 'Image refused');
  }
}

// --- band / stretch controls ---

function initDisplay(img: ImageView, stats: ImageStats | null): void {
  const key = `kestrel.display.${img.id}`;
  let saved: typeof S.display | null = null;
  try { saved = JSON.parse(localStorage.getItem(key) ?? 'null'); } catch { saved = null; }
  if (saved && saved.bands?.every((b: number) => b >= 1 && b <= img.bands)) {
    S.display = saved;
  } else {
    const mode = img.bands >= 3 ? 'rgb' : 'grey';
    const bands = mode === 'rgb' ? [1, 2, 3] : [1];
    S.display = { mode, bands, min: [], max: [], preset: 'p2p98' };
    resetStretch('linked');
  }
  renderDisplay();
}

function bandStat(b: number) {
  return S.stats?.bands.find((x) => x.band === b) ?? null;
}

type StretchPreset = 'p2p98' | 'linked' | 'minmax' | 'full' | 'custom';

/** Min/max per displayed band from a preset (default: each band's 2nd–98th percentile). */
function resetStretch(preset: StretchPreset = 'p2p98'): void {
  const d = S.display;
  const st = d.bands.map((b) => bandStat(b));
  const full = dataTypeRange(S.stats?.data_type ?? S.image?.data_type ?? '');
  if (preset === 'linked') {
    const lo = Math.min(...st.map((x) => x?.p2 ?? NaN));
    const hi = Math.max(...st.map((x) => x?.p98 ?? NaN));
    d.min = d.bands.map(() => lo);
    d.max = d.bands.map(() => hi);
  } else if (preset === 'minmax') {
    d.min = st.map((x) => x?.min ?? NaN);
    d.max = st.map((x) => x?.max ?? NaN);
  } else if (preset === 'full' && full) {
    d.min = d.bands.map(() => full[0]);
    d.max = d.bands.map(() => full[1]);
  } else {
    preset = 'p2p98';
    d.min = st.map((x) => x?.p2 ?? NaN);
    d.max = st.map((x) => x?.p98 ?? NaN);
  }
  d.preset = preset;
}

function dataTypeRange(t: string): [number, number] | null {
  const k = t.toLowerCase();
  if (k === 'u8' || k === 'uint8' || k === 'byte') return [0, 255];
  if (k === 'u16' || k === 'uint16') return [0, 65535];
  if (k === 'i16' || k === 'int16') return [-32768, 32767];
  return null;
}

function renderDisplay(): void {
  const img = S.image;
  if (!img) return;
  ($('band-mode') as HTMLSelectElement).value = S.display.mode;
  ($('stretch-preset') as HTMLSelectElement).value = S.display.preset ?? 'p2p98';
  ($('band-mode') as HTMLSelectElement).querySelector<HTMLOptionElement>('option[value=rgb]')!.disabled = img.bands < 3;
  ($('stretch-preset') as HTMLSelectElement).querySelector<HTMLOptionElement>('option[value=full]')!.disabled = !dataTypeRange(S.stats?.data_type ?? img.data_type);
  const host = $('band-rows');
  host.innerHTML = '';
  const names = S.display.mode === 'rgb' ? ['R', 'G', 'B'] : ['Grey'];
  const step = /^(u8|u16|i16|u32|i32|uint|int)/i.test(S.stats?.data_type ?? img.data_type) ? '1' : 'any';
  names.forEach((name, i) => {
    const sel = h('select', { 'data-testid': `band-${name.toLowerCase()}` });
    for (let b = 1; b <= img.bands; b++) sel.appendChild(h('option', { value: b, text: `${b}` }));
    sel.title = 'band';
    sel.value = String(S.display.bands[i]);
    const mn = h('input', { type: 'number', step, value: fmtStretch(S.display.min[i]), 'data-testid': `min-${name.toLowerCase()}`, title: 'value shown as 0' });
    const mx = h('input', { type: 'number', step, value: fmtStretch(S.display.max[i]), 'data-testid': `max-${name.toLowerCase()}`, title: 'value shown as 255' });
    sel.addEventListener('change', () => {
      S.display.bands[i] = Number(sel.value);
      resetStretch(S.display.preset === 'custom' ? 'p2p98' : S.display.preset as StretchPreset);
      renderDisplay();
      applyDisplay();
    });
    const edited = () => { S.display.preset = 'custom'; ($('stretch-preset') as HTMLSelectElement).value = 'custom'; applyDisplay(); };
    mn.addEventListener('change', () => { S.display.min[i] = Number(mn.value); edited(); });
    mx.addEventListener('change', () => { S.display.max[i] = Number(mx.value); edited(); });
    host.appendChild(h('div', { class: 'band-row' }, h('span', { class: 'band-name ' + name.toLowerCase(), text: name }), sel, mn, mx));
  });
}

function fmtStretch(v: number | undefined): string {
  return typeof v === 'number' && isFinite(v) ? String(Math.round(v * 1000) / 1000) : '';
}

function applyDisplay(): void {
  const img = S.image;
  if (!img || !tileLayer) return;
  try { localStorage.setItem(`kestrel.display.${img.id}`, JSON.stringify(S.display)); } catch { /* ignore */ }
  tileLayer.getSource()?.setUrl(tileUrl(img));
}

// ---------------------------------------------------------------------------------------------
// Classes

async function loadClasses(): Promise<void> {
  S.classes = await get<ClassInfo[]>('/api/classes');
  let stored: number | null = null;
  try { stored = Number(localStorage.getItem('kestrel.class')) || null; } catch { /* ignore */ }
  if (!classById(S.activeClassId)) S.activeClassId = classById(stored)?.id ?? S.classes[0]?.id ?? null;
  renderClasses();
  resetFrontKnown();
  renderTrainOptions();
  samplesLayer.changed();
}

function renderClasses(): void {
  const ul = $('class-list');
  ul.innerHTML = '';
  for (const c of S.classes) {
    const color = h('input', { type: 'color', value: c.color, title: 'Change the colour', 'data-testid': `class-color-${c.id}` });
    color.addEventListener('click', (e) => e.stopPropagation());
    color.addEventListener('change', async () => {
      try {
        const nc = await patch<ClassInfo>(`/api/classes/${c.id}`, { color: color.value });
        Object.assign(c, nc);
        renderClasses();
        samplesLayer.changed();
      } catch (e) { reportError(e, 'Colour'); }
    });
    const counts = c.samples ? `${c.samples.positive}+ / ${c.samples.negative}−` : '';
    const li = h('li', { class: c.id === S.activeClassId ? 'active' : '', 'data-testid': `class-${c.name}`, title: 'Draw samples of this class' },
      h('label', { class: 'swatch', style: `background:${c.color}` }, color),
      h('span', { class: 'name', text: c.name }),
      h('span', { class: 'mode', title: c.heading_mode === 'directed' ? 'front known (directed heading)' : 'axis only', text: c.heading_mode === 'directed' ? '→' : '↔' }),
      h('span', { class: 'meta', text: counts }),
    );
    li.addEventListener('click', () => setActiveClass(c.id));
    ul.appendChild(li);
  }
  const sel = $('train-class') as HTMLSelectElement;
  sel.innerHTML = '';
  for (const c of S.classes) sel.appendChild(h('option', { value: c.id, text: c.name }));
  if (S.activeClassId !== null) sel.value = String(S.activeClassId);
}

function setActiveClass(id: number): void {
  S.activeClassId = id;
  try { localStorage.setItem('kestrel.class', String(id)); } catch { /* ignore */ }
  resetFrontKnown();
  renderClasses();
  renderModels();
  renderTrainOptions();
}

function bumpClassCount(classId: number, polarity: Polarity, d: number): void {
  const c = classById(classId);
  if (c?.samples) {
    c.samples[polarity] = Math.max(0, c.samples[polarity] + d);
    renderClassCountsSoon();
  }
}
let classRenderTimer = 0;
function renderClassCountsSoon(): void {
  clearTimeout(classRenderTimer);
  classRenderTimer = window.setTimeout(renderClasses, 150);
}

async function addClass(ev: Event): Promise<void> {
  ev.preventDefault();
  const name = ($('add-class-name') as HTMLInputElement).value.trim();
  if (!name) return;
  const directed = ($('add-class-front') as HTMLInputElement).checked;
  const color = CLASS_COLORS[S.classes.length % CLASS_COLORS.length];
  try {
    const c = await post<ClassInfo>('/api/classes', { name, heading_mode: directed ? 'directed' : 'axis', color });
    ($('add-class-name') as HTMLInputElement).value = '';
    await loadClasses();
    setActiveClass(c.id);
  } catch (e) { reportError(e, 'Class refused'); }
}

// ---------------------------------------------------------------------------------------------
// Samples panel (normalized chips)

let samplesPanelTimer = 0;
function scheduleSamplesPanel(): void {
  clearTimeout(samplesPanelTimer);
  samplesPanelTimer = window.setTimeout(renderSamplesPanel, 120);
}

function renderSamplesPanel(): void {
  const grid = $('sample-grid');
  const list = [...S.samples.values()].sort((a, b) => b.id - a.id);
  const pos = list.filter((s) => s.polarity === 'positive').length;
  $('samples-count').textContent = `${list.length} samples on this image · ${pos} positive · ${list.length - pos} negative`;
  const existing = new Map<number, HTMLElement>();
  grid.querySelectorAll<HTMLElement>('.sample-card').forEach((e) => existing.set(Number(e.dataset.id), e));
  const frag = document.createDocumentFragment();
  for (const s of list) {
    let card = existing.get(s.id);
    const key = `${s.version}`;
    if (!card || card.dataset.v !== key) {
      const c = classById(s.class_id);
      card = h('div', {
        class: `sample-card ${s.polarity}`, 'data-id': s.id, 'data-v': key, 'data-testid': `sample-${s.id}`,
        title: `#${s.id} ${c?.name ?? ''} ${s.polarity} · ${s.origin}\n${shapeSummary(s.shape)}`,
      },
        h('img', { loading: 'lazy', alt: '', src: withToken(`/api/samples/${s.id}/chip.png?v=${s.version}`) }),
        h('span', { class: 'tag', style: `background:${s.polarity === 'positive' ? c?.color ?? '#888' : '#7a3b36'}`, text: s.polarity === 'positive' ? '+' : '−' }),
        h('span', { class: 'cap', text: `#${s.id} ${originShort(s.origin)}` }),
      );
      const img = card.querySelector('img')!;
      img.addEventListener('error', () => img.classList.add('broken'), { once: true });
      const id = s.id;
      card.addEventListener('click', () => focusSample(id));
    }
    card.classList.toggle('selected', s.id === S.selectedId);
    frag.appendChild(card);
  }
  grid.innerHTML = '';
  grid.appendChild(frag);
}

function originShort(o: string): string {
  return ({ drawn: 'drawn', imported: 'imp.', auto_negative: 'auto', accepted_detection: 'acc.', rejected_detection: 'rej.' } as Record<string, string>)[o] ?? o;
}

function focusSample(id: number): void {
  const f = sampleFeature(id);
  if (!f) return;
  setTool('select');
  transform.setSelection([f]);
  setSelected(id);
  const ext = f.getGeometry()!.getExtent();
  const fine = S.image!.tiles.resolutions[S.image!.tiles.resolutions.length - 1];
  map.getView().fit(bufferExtent(ext, 40 * fine), { duration: 200, maxZoom: undefined, minResolution: fine / 2 });
}

// ---------------------------------------------------------------------------------------------
// Jobs

const jobWatchers = new Map<number, Promise<Job>>();
let statusJob: Job | null = null;

function followJob(job: Job, onUpdate: (j: Job) => void): Promise<Job> {
  const known = jobWatchers.get(job.id);
  if (known) return known;
  const p = new Promise<Job>((resolve) => {
    let done = false;
    const update = (j: Job) => {
      if (done) return;
      onUpdate(j);
      showJobStatus(j);
      if (isTerminal(j.state)) { done = true; resolve(j); }
    };
    update(job);
    if (done) return;
    let es: EventSource | null = null;
    const poll = async () => {
      while (!done) {
        try { update(await get<Job>(`/api/jobs/${job.id}`)); } catch (e) { console.warn('poll job', e); }
        if (!done) await new Promise((r) => setTimeout(r, 1000));
      }
    };
    try {
      es = new EventSource(withToken(`/api/jobs/${job.id}/events`));
      es.onmessage = (m) => {
        try { update(JSON.parse(m.data) as Job); } catch (e) { console.warn('bad job event', e); }
        if (done) es?.close();
      };
      es.onerror = () => {
        es?.close();
        if (!done) poll();
      };
    } catch {
      poll();
    }
  });
  jobWatchers.set(job.id, p);
  p.finally(() => jobWatchers.delete(job.id));
  return p;
}

function showJobStatus(j: Job): void {
  if (statusJob && statusJob.id !== j.id && !isTerminal(statusJob.state) && isTerminal(j.state)) return;
  statusJob = j;
  const bar = $('st-job-bar');
  const pct = Math.round(Math.max(0, Math.min(1, j.progress ?? 0)) * 100);
  bar.style.width = (isTerminal(j.state) ? 100 : pct) + '%';
  $('st-job').className = `job ${j.state}`;
  const what = j.kind === 'train' ? 'Training' : 'Detection';
  let detail = j.message && j.message !== j.state ? j.message : '';
  if (j.state === 'done' && j.kind === 'detect' && typeof j.result?.detections === 'number') detail = `${j.result.detections} detections`;
  if (j.state === 'done' && j.kind === 'train' && j.result?.model_id) detail = `model ${j.result.model_id}`;
  const msg = j.state === 'failed' ? `${what} failed: ${j.error ?? j.message}` : `${what} ${j.state}${detail ? ': ' + detail : ''}`;
  $('st-job-msg').textContent = `${msg}${isTerminal(j.state) ? '' : ` (${pct}%)`}`;
}

async function resumeJobs(): Promise<void> {
  const jobs = await get<Job[]>('/api/jobs').catch(() => [] as Job[]);
  for (const j of jobs) {
    if (isTerminal(j.state)) continue;
    if (j.kind === 'train' && !S.trainJob) watchTrain(j);
    if (j.kind === 'detect' && !S.detectJob) watchDetect(j);
  }
}

// --- training options ---

const COLOUR_HINT: Record<ColourMethod, string> = {
  quantile: 'Quantile: invariant to gamma and bit depth.',
  stretch: 'Stretch: 2–98 % linear; transferred better between streets.',
};
const DEFAULT_TRAIN_OPTIONS: TrainOptions = { bands: null, height_bands: [], colour: 'quantile', mine_rounds: 0, gsd_m: null, widths: [16, 32, 64], members: 1 };
const MINE_ROUNDS_MAX = 5;
/** Ensemble sizes the panel offers (the server takes 1–4). */
const MEMBER_CHOICES = [1, 2, 3];
/** The network widths the panel offers (the server takes any three from 1 to 512). */
const WIDTH_CHOICES = ['16,32,64', '24,48,96', '32,64,128'];

let trainOpts: TrainOptions = { ...DEFAULT_TRAIN_OPTIONS };
/** The class whose options `trainOpts` holds (they are kept per project and class). */
let trainOptsClassId: number | null = null;

function trainOptionsKey(classId: number): string {
  return `kestrel.train.${S.project?.dir ?? ''}.${classId}`;
}

function isBandList(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((b) => Number.isInteger(b) && b >= 1);
}

function loadTrainOptions(classId: number): TrainOptions {
  let saved: Partial<TrainOptions> | null = null;
  try { saved = JSON.parse(localStorage.getItem(trainOptionsKey(classId)) ?? 'null'); } catch { saved = null; }
  const o: TrainOptions = { ...DEFAULT_TRAIN_OPTIONS };
  if (!saved || typeof saved !== 'object') return o;
  if (isBandList(saved.bands) && saved.bands.length) o.bands = saved.bands;
  if (isBandList(saved.height_bands)) o.height_bands = saved.height_bands;
  if (saved.colour === 'quantile' || saved.colour === 'stretch') o.colour = saved.colour;
  if (Number.isInteger(saved.mine_rounds)) o.mine_rounds = Math.max(0, Math.min(MINE_ROUNDS_MAX, saved.mine_rounds!));
  if (typeof saved.gsd_m === 'number' && Number.isFinite(saved.gsd_m) && saved.gsd_m > 0) o.gsd_m = saved.gsd_m;
  if (Array.isArray(saved.widths) && WIDTH_CHOICES.includes(saved.widths.join(','))) o.widths = [...saved.widths] as [number, number, number];
  if (typeof saved.members === 'number' && MEMBER_CHOICES.includes(saved.members)) o.members = saved.members;
  return o;
}

function saveTrainOptions(): void {
  if (trainOptsClassId === null) return;
  try { localStorage.setItem(trainOptionsKey(trainOptsClassId), JSON.stringify(trainOpts)); } catch { /* storage may be disabled */ }
}

/**
 * Bands the network can read: those every image of the project has (the server trains on the
 * samples of all images and refuses others), at most the open image's.
 */
function trainableBandCount(): number {
  const all = S.images.map((i) => i.bands);
  if (S.image) all.push(S.image.bands);
  return all.length ? Math.min(...all) : 0;
}

function defaultBands(usable: number): number[] {
  return Array.from({ length: Math.min(3, usable) }, (_, i) => i + 1);
}

/** The chosen bands that exist in every image; the default when none is left. */
function effectiveBands(o: TrainOptions, usable: number): number[] {
  const kept = (o.bands ?? []).filter((b) => b <= usable);
  return kept.length ? kept : defaultBands(usable);
}

/** "bands 1,2,3,4 · 4 = height", as the options and the models list name what a network reads. */
function bandsText(bands: number[], heightBands: number[]): string {
  const heights = heightBands.filter((b) => bands.includes(b));
  return `bands ${bands.join(',')}${heights.length ? ` · ${heights.join(',')} = height` : ''}`;
}

/** The Training options panel for the active class and the open image. */
function renderTrainOptions(): void {
  const classId = S.activeClassId;
  if (classId !== trainOptsClassId) {
    trainOptsClassId = classId;
    trainOpts = classId === null ? { ...DEFAULT_TRAIN_OPTIONS } : loadTrainOptions(classId);
  }
  const usable = trainableBandCount();
  const bands = effectiveBands(trainOpts, usable);
  const host = $('train-bands');
  host.innerHTML = '';
  if (!usable) host.appendChild(h('div', { class: 'muted', text: 'Add an image to choose its bands.' }));
  const shown = S.image?.bands ?? usable;
  for (let b = 1; b <= shown; b++) {
    const read = bands.includes(b);
    const lacking = b > usable;
    const cb = h('input', { type: 'checkbox', 'data-testid': `train-band-${b}`, disabled: lacking }) as HTMLInputElement;
    cb.checked = read && !lacking;
    const height = h('input', { type: 'checkbox', 'data-testid': `train-height-${b}`, disabled: !read || lacking }) as HTMLInputElement;
    height.checked = read && trainOpts.height_bands.includes(b);
    cb.addEventListener('change', () => {
      const next = cb.checked ? [...bands, b].sort((x, y) => x - y) : bands.filter((x) => x !== b);
      if (!next.length) {
        cb.checked = true;
        toast('The network reads at least one band.', 'info', 2500);
        return;
      }
      trainOpts.bands = next;
      trainOpts.height_bands = trainOpts.height_bands.filter((x) => next.includes(x));
      saveTrainOptions();
      renderTrainOptions();
    });
    height.addEventListener('change', () => {
      trainOpts.bands = bands;
      trainOpts.height_bands = height.checked
        ? [...trainOpts.height_bands.filter((x) => x !== b), b].sort((x, y) => x - y)
        : trainOpts.height_bands.filter((x) => x !== b);
      saveTrainOptions();
      renderTrainOptions();
    });
    host.appendChild(h('div', { class: 'train-band' + (read ? ' read' : ''), 'data-band': b },
      h('label', { class: 'check', title: lacking ? 'Not every image of the project has this band' : `The network reads band ${b}` }, cb, ` band ${b}`),
      h('label', { class: 'check height', title: 'Heights in metres (an nDSM stacked with the photo): kept in metres, not colour-normalized' }, height, ' height (m)'),
    ));
  }
  if (shown > usable && usable > 0) {
    host.appendChild(h('div', { class: 'hint', text: `Bands above ${usable}: not in every image of the project.` }));
  }
  ($('train-colour') as HTMLSelectElement).value = trainOpts.colour;
  $('train-colour-hint').textContent = COLOUR_HINT[trainOpts.colour];
  ($('train-mine') as HTMLInputElement).value = String(trainOpts.mine_rounds);
  const gsdInput = $('train-gsd') as HTMLInputElement;
  if (document.activeElement !== gsdInput) gsdInput.value = trainOpts.gsd_m === null ? '' : String(trainOpts.gsd_m);
  ($('train-widths') as HTMLSelectElement).value = trainOpts.widths.join(',');
  ($('train-members') as HTMLSelectElement).value = String(trainOpts.members);
  const widthsDefault = trainOpts.widths.join(',') === DEFAULT_TRAIN_OPTIONS.widths.join(',');
  const summary = [
    usable ? bandsText(bands, trainOpts.height_bands) : '',
    trainOpts.colour,
    trainOpts.mine_rounds ? `mining ×${trainOpts.mine_rounds}` : '',
    trainOpts.gsd_m !== null ? `${trainOpts.gsd_m} m` : '',
    widthsDefault ? '' : `widths ${trainOpts.widths.join('·')}`,
    trainOpts.members > 1 ? `ensemble of ${trainOpts.members}` : '',
  ];
  $('train-options-summary').textContent = summary.filter(Boolean).join(' · ');
}

function setTrainColour(colour: ColourMethod): void {
  trainOpts.colour = colour;
  saveTrainOptions();
  renderTrainOptions();
}

/** The network's GSD from the panel's field: blank (or not a positive number) is the median. */
function setTrainGsd(text: string): void {
  const value = Number(text);
  trainOpts.gsd_m = text.trim() !== '' && Number.isFinite(value) && value > 0 ? value : null;
  if (text.trim() !== '' && trainOpts.gsd_m === null) toast('The network GSD is a distance in metres above 0; left at the median.', 'info', 3000);
  saveTrainOptions();
  renderTrainOptions();
}

function setTrainWidths(value: string): void {
  if (WIDTH_CHOICES.includes(value)) trainOpts.widths = value.split(',').map(Number) as [number, number, number];
  saveTrainOptions();
  renderTrainOptions();
}

function setTrainMembers(value: number): void {
  if (MEMBER_CHOICES.includes(value)) trainOpts.members = value;
  saveTrainOptions();
  renderTrainOptions();
}

function setMineRounds(value: number): void {
  trainOpts.mine_rounds = Number.isFinite(value) ? Math.max(0, Math.min(MINE_ROUNDS_MAX, Math.round(value))) : 0;
  saveTrainOptions();
  renderTrainOptions();
}

// --- training ---

async function startTraining(): Promise<void> {
  if (S.trainJob && !isTerminal(S.trainJob.state)) { toast('A training job is already running.', 'info'); return; }
  const classId = Number(($('train-class') as HTMLSelectElement).value) || S.activeClassId;
  if (!classId) { toast('Add a class first.', 'error'); return; }
  const epochs = Number(($('train-epochs') as HTMLInputElement).value);
  const body: Record<string, unknown> = { class_id: classId };
  if (epochs > 0) body.epochs = Math.round(epochs);
  const usable = trainableBandCount();
  if (usable > 0) {
    // Sent whole, so the job does what the panel shows even if the server's defaults change.
    const bands = effectiveBands(trainOpts, usable);
    body.bands = bands;
    body.height_bands = trainOpts.height_bands.filter((b) => bands.includes(b));
  }
  body.colour = trainOpts.colour;
  body.mine_rounds = trainOpts.mine_rounds;
  if (trainOpts.gsd_m !== null) body.gsd_m = trainOpts.gsd_m;
  body.widths = trainOpts.widths;
  if (trainOpts.members > 1) body.members = trainOpts.members;
  showTab('train');
  try {
    const job = await post<Job>('/api/jobs/train', body);
    watchTrain(job);
  } catch (e) { reportError(e, 'Training refused'); }
}

function watchTrain(job: Job): void {
  S.trainJob = job;
  ($('train-cancel') as HTMLButtonElement).disabled = false;
  ($('train-btn') as HTMLButtonElement).disabled = true;
  $('train-metrics').innerHTML = '';
  followJob(job, renderTrain).then(async (j) => {
    ($('train-cancel') as HTMLButtonElement).disabled = true;
    ($('train-btn') as HTMLButtonElement).disabled = false;
    if (j.state === 'done') {
      await loadModels().catch((e) => reportError(e, 'Models'));
      const id = j.result?.model_id;
      if (id) { selectModel(id); await showModelMetrics(id); }
      toast(`Training done${id ? ': ' + id : ''}`, 'ok', 4000);
    } else if (j.state === 'failed') {
      toast(`Training failed: ${j.error ?? j.message}`, 'error', 10000);
    }
  });
}

const trainEpochsTotal = new Map<number, number>();

function renderTrain(j: Job): void {
  S.trainJob = j;
  const st = $('train-state');
  st.className = `job-state ${j.state}`;
  st.dataset.state = j.state;
  st.textContent = `Job ${j.id}: ${j.state}${j.message && j.message !== j.state ? ' — ' + j.message : ''}${j.error ? ' — ' + j.error : ''}`;
  const total = /epoch\s+(\d+)\s*\/\s*(\d+)/i.exec(j.message ?? '');
  if (total) trainEpochsTotal.set(j.id, Number(total[2]));
  drawChart($('train-chart'), j.epochs ?? [], trainEpochsTotal.get(j.id));
}

async function showModelMetrics(id: string): Promise<void> {
  try {
    const m = await get<ModelInfo>(`/api/models/${encodeURIComponent(id)}`);
    const host = $('train-metrics');
    host.innerHTML = '';
    const reads = modelReads(m);
    host.append(
      h('div', { class: 'model-title', text: m.id }),
      ...(reads ? [h('div', { class: 'model-reads', 'data-testid': 'model-metrics-reads', text: `reads ${reads}` })] : []),
      metricGrid([
        ['F1', fmtNum(m.f1)], ['precision', fmtNum(m.precision)], ['recall', fmtNum(m.recall)],
        ['threshold', fmtNum(m.default_threshold, 3)], ['positives', String(m.positives)], ['negatives', String(m.negatives)],
        ['epochs', String(m.epochs)],
        ['heading err.', m.metrics?.length ? fmtNum(m.metrics[m.metrics.length - 1].heading_error_deg, 1) + '°' : '–'],
      ]),
    );
    if (m.metrics?.length && (!S.trainJob || !S.trainJob.epochs?.length)) drawChart($('train-chart'), m.metrics, m.epochs);
  } catch (e) { reportError(e, 'Model'); }
}

function metricGrid(rows: [string, string][]): HTMLElement {
  const g = h('div', { class: 'metric-grid' });
  for (const [k, v] of rows) g.append(h('span', { class: 'k', text: k }), h('span', { class: 'v', text: v }));
  return g;
}

async function cancelTraining(): Promise<void> {
  const j = S.trainJob;
  if (!j || isTerminal(j.state)) return;
  try { renderTrain(await post<Job>(`/api/jobs/${j.id}/cancel`)); } catch (e) { reportError(e, 'Cancel'); }
}

// --- models ---

async function loadModels(): Promise<void> {
  S.models = await get<ModelInfo[]>('/api/models');
  S.models.sort((a, b) => b.created_unix_s - a.created_unix_s);
  renderModels();
}

function renderModels(): void {
  const ul = $('model-list');
  const sel = $('detect-model') as HTMLSelectElement;
  const prev = sel.value;
  ul.innerHTML = '';
  sel.innerHTML = '';
  if (!S.models.length) {
    ul.appendChild(h('li', { class: 'muted', text: 'No model yet: draw samples, then Train.' }));
    sel.appendChild(h('option', { value: '', text: '(no model)' }));
  }
  for (const m of S.models) {
    const unfit = modelMismatch(m);
    sel.appendChild(h('option', { value: m.id, text: `${m.id}${m.f1 !== null ? ` (F1 ${fmtNum(m.f1)})` : ''}${unfit ? ' · not for this image' : ''}` }));
    const reads = modelReads(m);
    const li = h('li', { class: (m.id === prev ? 'active' : '') + (unfit ? ' unfit' : ''), 'data-testid': `model-${m.id}`, title: unfit ?? 'Use for detection' },
      h('span', { class: 'name', text: m.id }),
      h('span', { class: 'meta', 'data-testid': `model-meta-${m.id}`, text: modelMeta(m) }),
      reads ? h('span', { class: 'meta reads', 'data-testid': `model-reads-${m.id}`, text: reads }) : null,
    );
    li.addEventListener('click', () => { selectModel(m.id); showModelMetrics(m.id); });
    ul.appendChild(li);
  }
  const cls = classById(S.activeClassId);
  const pick = S.models.find((m) => m.id === prev) ?? S.models.find((m) => m.class === cls?.name) ?? S.models[0];
  if (pick) sel.value = pick.id;
  updateDetectButtons();
}

/** A model's validation figures; an ensemble's are its first member's, its threshold the members' mean. */
function modelMeta(m: ModelInfo): string {
  const scores = `F1 ${fmtNum(m.f1)} · P ${fmtNum(m.precision)} · R ${fmtNum(m.recall)}`;
  const rest = `${m.positives}+/${m.negatives}−`;
  if ((m.members ?? 1) > 1) return `ensemble of ${m.members} · thr ${fmtNum(m.default_threshold, 3)} · first member ${scores} · ${rest}`;
  return `${scores} · thr ${fmtNum(m.default_threshold, 3)} · ${rest}`;
}

/** What a model reads, e.g. "bands 1,2,3,4 · 4 = height · directed heading"; '' for models that do not say. */
function modelReads(m: ModelInfo): string {
  const parts: string[] = [];
  if (m.bands?.length) parts.push(bandsText(m.bands, m.height_bands ?? []));
  if (m.heading_mode) parts.push(m.heading_mode === 'directed' ? 'directed heading' : 'axis only');
  return parts.join(' · ');
}

/** Why the model cannot run on the open image (it reads a band the image lacks), or null. */
function modelMismatch(m: ModelInfo | undefined): string | null {
  const img = S.image;
  const missing = img && m?.bands ? m.bands.filter((b) => b > img.bands) : [];
  if (!img || !m || !missing.length) return null;
  return `${m.id} reads ${bandsText(m.bands!, m.height_bands ?? [])}; this image has ${img.bands} band${img.bands === 1 ? '' : 's'} (no band ${missing.join(', ')}). Pick a model trained on bands it has.`;
}

const DETECT_TITLES: Record<string, string> = { 'detect-view': 'Detect in view (D)', 'detect-all': 'Detect in the whole image' };

/** The Detect buttons work while no detection runs and the chosen model can read the open image. */
function updateDetectButtons(): void {
  const running = !!S.detectJob && !isTerminal(S.detectJob.state);
  const m = S.models.find((x) => x.id === ($('detect-model') as HTMLSelectElement).value);
  const why = modelMismatch(m);
  for (const [id, title] of Object.entries(DETECT_TITLES)) {
    const b = $(id) as HTMLButtonElement;
    b.disabled = running || why !== null;
    b.title = why ?? title;
  }
  const note = $('detect-model-note');
  note.textContent = why ?? (m && modelReads(m) ? `reads ${modelReads(m)}` : '');
  note.classList.toggle('unfit', why !== null);
}

function selectModel(id: string): void {
  const sel = $('detect-model') as HTMLSelectElement;
  sel.value = id;
  document.querySelectorAll('#model-list li').forEach((li) => li.classList.toggle('active', li.getAttribute('data-testid') === `model-${id}`));
  const m = S.models.find((x) => x.id === id);
  if (m?.default_threshold !== null && m?.default_threshold !== undefined && !S.detections.size) setThreshold(m.default_threshold);
  updateDetectButtons();
}

// --- detection ---

function viewBboxPixels(): [number, number, number, number] | null {
  if (!S.image || !S.affine) return null;
  const ext = map.getView().calculateExtent(map.getSize());
  const corners: Coordinate[] = [[ext[0], ext[1]], [ext[0], ext[3]], [ext[2], ext[1]], [ext[2], ext[3]]];
  const px = corners.map((c) => S.affine!.toPixel(c));
  const x0 = Math.max(0, Math.floor(Math.min(...px.map((p) => p[0]))));
  const y0 = Math.max(0, Math.floor(Math.min(...px.map((p) => p[1]))));
  const x1 = Math.min(S.image.width, Math.ceil(Math.max(...px.map((p) => p[0]))));
  const y1 = Math.min(S.image.height, Math.ceil(Math.max(...px.map((p) => p[1]))));
  if (x1 <= x0 || y1 <= y0) return null;
  return [x0, y0, x1, y1];
}

async function startDetection(inView: boolean): Promise<void> {
  if (!S.image) return;
  if (S.detectJob && !isTerminal(S.detectJob.state)) { toast('A detection job is already running.', 'info'); return; }
  const modelId = ($('detect-model') as HTMLSelectElement).value;
  if (!modelId) { toast('No model: train one first.', 'error'); return; }
  const unfit = modelMismatch(S.models.find((x) => x.id === modelId));
  if (unfit) { toast(unfit, 'error'); return; }
  const body: Record<string, unknown> = { model_id: modelId, image_id: S.image.id };
  if (inView) {
    const bbox = viewBboxPixels();
    if (!bbox) { toast('The view does not show the image.', 'error'); return; }
    body.bbox = bbox;
  }
  showTab('detect');
  try {
    watchDetect(await post<Job>('/api/jobs/detect', body));
  } catch (e) { reportError(e, 'Detection refused'); }
}

function watchDetect(job: Job): void {
  S.detectJob = job;
  updateDetectButtons();
  followJob(job, (j) => {
    S.detectJob = j;
    const st = $('detect-state');
    st.className = `job-state ${j.state}`;
    st.dataset.state = j.state;
    st.textContent = `Job ${j.id}: ${j.state}${j.message && j.message !== j.state ? ' — ' + j.message : ''}${j.error ? ' — ' + j.error : ''}`;
  }).then(async (j) => {
    updateDetectButtons();
    if (j.state === 'done') {
      const imageId = j.result?.image_id ?? S.image?.id;
      if (S.image && imageId === S.image.id) await reloadDetections();
      const m = S.models.find((x) => x.id === j.result?.model_id);
      const thr = j.result?.threshold ?? m?.default_threshold;
      if (typeof thr === 'number' && isFinite(thr)) setThreshold(thr);
      S.reviewId = null;
      refreshReview(false);
      toast(`Detection done: ${j.result?.detections ?? '?'} detections`, 'ok', 3000);
    } else if (j.state === 'failed') {
      toast(`Detection failed: ${j.error ?? j.message}`, 'error', 10000);
    }
  });
}

function putDetection(d: Detection): void {
  S.detections.set(d.id, d);
  let f = detectionsSource.getFeatureById(d.id) as Feature | null;
  if (!f) {
    f = new Feature({ geometry: shapeToGeometry(d.shape, S.affine!) });
    f.setId(d.id);
    f.set('detection', d, true);
    detectionsSource.addFeature(f);
  } else {
    f.set('detection', d, true);
    f.changed();
  }
}

async function reloadDetections(): Promise<void> {
  if (!S.image) return;
  const list = await get<Detection[]>(`/api/detections?image_id=${S.image.id}`);
  dropReviewOps();
  detectionsSource.clear();
  S.detections.clear();
  for (const d of list) putDetection(d);
}

/**
 * With detections on the image: select the model that made its pending ones and start the
 * threshold at that model's default (what the detection job used).
 */
function applyDetectionsModel(list: Detection[]): void {
  const pending = list.filter((d) => d.status === 'pending');
  const id = (pending[0] ?? list[0])?.model_id;
  const m = S.models.find((x) => x.id === id);
  if (!m) return;
  ($('detect-model') as HTMLSelectElement).value = m.id;
  document.querySelectorAll('#model-list li').forEach((li) => li.classList.toggle('active', li.getAttribute('data-testid') === `model-${m.id}`));
  if (typeof m.default_threshold === 'number' && isFinite(m.default_threshold)) setThreshold(m.default_threshold);
  updateDetectButtons();
}

function setThreshold(v: number): void {
  const t = Math.max(0, Math.min(1, v));
  ctx.threshold = t;
  ($('threshold') as HTMLInputElement).value = String(t);
  $('threshold-value').textContent = t.toFixed(3);
  detectionsLayer.changed();
  refreshReview(false);
}

// ---------------------------------------------------------------------------------------------
// Review

function pendingList(): Detection[] {
  return [...S.detections.values()]
    .filter((d) => d.status === 'pending' && d.score >= ctx.threshold)
    .sort((a, b) => b.score - a.score || a.id - b.id);
}

function currentDetection(): Detection | null {
  const list = pendingList();
  if (S.reviewId !== null) {
    const d = list.find((x) => x.id === S.reviewId);
    if (d) return d;
  }
  return null;
}

function refreshReview(center: boolean): void {
  const list = pendingList();
  if (S.reviewId === null || !list.some((d) => d.id === S.reviewId)) S.reviewId = list[0]?.id ?? null;
  ctx.currentDetectionId = S.reviewId;
  detectionsLayer.changed();
  const all = [...S.detections.values()];
  const counts = { pending: 0, accepted: 0, rejected: 0 };
  for (const d of all) counts[d.status]++;
  const hidden = counts.pending - list.length;
  $('review-counts').innerHTML = '';
  $('review-counts').append(
    h('span', { class: 'c pending', 'data-testid': 'count-pending', text: `${list.length} to review` }),
    h('span', { class: 'c accepted', 'data-testid': 'count-accepted', text: `${counts.accepted} accepted` }),
    h('span', { class: 'c rejected', 'data-testid': 'count-rejected', text: `${counts.rejected} rejected` }),
    ...(hidden > 0 ? [h('span', { class: 'c muted', text: `${hidden} below threshold` })] : []),
  );
  $('detect-counts').textContent = all.length
    ? `${all.length} detections on this image: ${list.length} pending above ${ctx.threshold.toFixed(3)}, ${counts.accepted} accepted, ${counts.rejected} rejected`
    : 'No detections on this image.';
  const d = currentDetection();
  const cur = $('review-current');
  cur.innerHTML = '';
  if (!d) {
    cur.textContent = counts.pending ? 'Nothing above the threshold.' : 'No pending detection.';
  } else {
    const idx = list.indexOf(d);
    cur.append(
      h('div', { class: 'big' }, h('span', { class: 'score', style: `background:${scoreColor(d.score)}`, text: d.score.toFixed(3) }), ` ${idx + 1} / ${list.length}`),
      h('div', { class: 'muted', text: `#${d.id} · ${d.shape.length.toFixed(1)}×${d.shape.width.toFixed(1)} px · heading ${d.shape.heading_deg.toFixed(0)}°${d.match_score !== null && d.match_score !== undefined ? ` · match ${d.match_score.toFixed(2)}` : ''}` }),
    );
    cur.dataset.detectionId = String(d.id);
    if (center) centerOn(d);
  }
  if (!d) delete cur.dataset.detectionId;
}

function centerOn(d: Detection): void {
  const f = detectionsSource.getFeatureById(d.id) as Feature | null;
  if (!f) return;
  const view = map.getView();
  const ext = f.getGeometry()!.getExtent();
  const size = Math.max(ext[2] - ext[0], ext[3] - ext[1]);
  const res = view.getResolution() ?? 1;
  const px = size / res;
  const fine = S.image ? S.image.tiles.resolutions[S.image.tiles.resolutions.length - 1] : res;
  const opts: Record<string, unknown> = { center: getCenter(ext), duration: 120 };
  // Zoom only when the box would be too small or too large to judge: about 60 screen pixels,
  // never past twice the native resolution.
  if (px < 20 || px > 400) opts.resolution = Math.max(size / 60, fine / 2);
  view.cancelAnimations();
  view.animate(opts);
}

function stepReview(delta: number): void {
  const list = pendingList();
  if (!list.length) return;
  let i = list.findIndex((d) => d.id === S.reviewId);
  i = i < 0 ? 0 : Math.max(0, Math.min(list.length - 1, i + delta));
  S.reviewId = list[i].id;
  refreshReview(true);
}

function review(action: 'accept' | 'reject'): void {
  const d = currentDetection();
  if (!d) { toast('No pending detection to review.', 'info', 2000); return; }
  const list = pendingList();
  const i = list.indexOf(d);
  const next = list[i + 1] ?? list[i - 1] ?? null;
  // Optimistic: mark it and move on before the server answers.
  const before = { ...d };
  putDetection({ ...d, status: action === 'accept' ? 'accepted' : 'rejected' });
  S.reviewId = next?.id ?? null;
  refreshReview(true);
  enqueue(() => post<ReviewResult>(`/api/detections/${d.id}/${action}`, { version: d.version })).then(
    (r) => {
      putDetection(r.detection);
      if (r.sample && S.image && r.sample.image_id === S.image.id) {
        putSampleFeature(r.sample);
        bumpClassCount(r.sample.class_id, r.sample.polarity, 1);
      }
      refreshReview(false);
      pushOp({
        label: `${action} detection #${d.id}`,
        review: true,
        undo: async () => {
          const cur = S.detections.get(d.id)!;
          const res = await post<ReviewResult>(`/api/detections/${d.id}/reset`, { version: cur.version });
          if (cur.sample_id !== null) removeSampleFeature(cur.sample_id);
          if (r.sample) bumpClassCount(r.sample.class_id, r.sample.polarity, -1);
          putDetection(res.detection);
          S.reviewId = d.id;
          refreshReview(true);
        },
        redo: async () => {
          const cur = S.detections.get(d.id)!;
          const res = await post<ReviewResult>(`/api/detections/${d.id}/${action}`, { version: cur.version });
          putDetection(res.detection);
          if (res.sample) { putSampleFeature(res.sample); bumpClassCount(res.sample.class_id, res.sample.polarity, 1); }
          refreshReview(true);
        },
      });
    },
    (e) => {
      if (!handleConflict(e)) {
        putDetection(before);
        S.reviewId = before.id;
        refreshReview(true);
        reportError(e, `Could not ${action}`);
      }
    },
  );
}

// ---------------------------------------------------------------------------------------------
// Export

function renderExportLinks(): void {
  const ul = $('export-links');
  ul.innerHTML = '';
  const only = ($('export-this-image') as HTMLInputElement).checked && S.image;
  const q = only ? `?image_id=${S.image!.id}` : '';
  const items: [string, string][] = [
    ['samples.geojson', 'Samples (GeoJSON)'], ['samples.gpkg', 'Samples (GeoPackage)'],
    ['detections.geojson', 'Detections (GeoJSON)'], ['detections.gpkg', 'Detections (GeoPackage)'],
  ];
  for (const [file, label] of items) {
    ul.appendChild(h('li', {}, h('a', { href: withToken(`/api/export/${file}${q}`), download: file, 'data-testid': `export-${file}`, text: label })));
  }
}

// ---------------------------------------------------------------------------------------------
// Tabs, help, keyboard, status bar

function showTab(name: string): void {
  document.querySelectorAll<HTMLButtonElement>('#tabs button').forEach((b) => b.classList.toggle('active', b.dataset.tab === name));
  document.querySelectorAll<HTMLElement>('.tab-body').forEach((p) => p.classList.toggle('hidden', p.dataset.pane !== name));
  if (name === 'review') refreshReview(true);
}

function toggleHelp(show?: boolean): void {
  const el = $('help');
  const on = show ?? el.classList.contains('hidden');
  el.classList.toggle('hidden', !on);
}

function onKey(e: KeyboardEvent): void {
  if (isTyping(e)) {
    if (e.key === 'Escape') (e.target as HTMLElement).blur();
    return;
  }
  const ctrl = e.ctrlKey || e.metaKey;
  const k = e.key;
  if (ctrl && !e.altKey) {
    const lk = k.toLowerCase();
    if (lk === 'z' && !e.shiftKey) { e.preventDefault(); undo(); }
    else if ((lk === 'z' && e.shiftKey) || lk === 'y') { e.preventDefault(); redo(); }
    return;
  }
  if (e.altKey) return;
  if (k === '?') { e.preventDefault(); toggleHelp(); return; }
  if (k === '3' && !e.shiftKey) { e.preventDefault(); view3d.toggle(); return; }
  if (k === 'Escape') {
    if (!$('help').classList.contains('hidden')) { toggleHelp(false); return; }
    if (view3d.state.open) { view3d.escape(); return; }
    if (draw) draw.abortDrawing();
    transform.select(null);
    setSelected(null);
    return;
  }
  // The 3D view has keys of its own; the map's wait until the map is back.
  if (view3d.state.open) {
    if (view3d.onKey(e)) e.preventDefault();
    return;
  }
  if (k === 'Delete' || k === 'Backspace') { e.preventDefault(); deleteSelected(); return; }
  const handled: Record<string, () => void> = {
    v: () => setTool('select'),
    b: () => setTool('posbox'),
    p: () => setTool('pospoint'),
    n: () => setTool('negbox'),
    m: () => setTool('negpoint'),
    f: () => toggleFrontKnown(),
    j: () => { showTab('review'); stepReview(1); },
    k: () => { showTab('review'); stepReview(-1); },
    a: () => review('accept'),
    r: () => review('reject'),
    t: () => { startTraining(); },
    d: () => { startDetection(true); },
    h: () => toggleHeightLayer(0),
  };
  const fn = handled[k.toLowerCase()];
  if (fn && !e.shiftKey) { e.preventDefault(); fn(); }
}

function fmtCoord(v: number): string {
  if (!S.image) return String(v);
  return S.image.map_units === 'degrees' ? v.toFixed(6) : v.toFixed(2);
}

map.on('pointermove', (e) => {
  if (!S.affine) return;
  const c = e.coordinate;
  const [px, py] = S.affine.toPixel(c);
  $('st-map').textContent = `${fmtCoord(c[0])}, ${fmtCoord(c[1])}`;
  $('st-px').textContent = `px ${px.toFixed(1)}, ${py.toFixed(1)}${insideImage(px, py) ? '' : ' (outside)'}`;
});

map.on('singleclick', (e) => {
  if (S.tool !== 'select') return;
  let hitSample = false;
  map.forEachFeatureAtPixel(e.pixel, () => { hitSample = true; return true; }, { layerFilter: (l) => l === samplesLayer, hitTolerance: 4 });
  if (hitSample) return;
  const hit = map.forEachFeatureAtPixel(e.pixel, (f) => f, { layerFilter: (l) => l === detectionsLayer, hitTolerance: 3 });
  const d = hit?.get('detection') as Detection | undefined;
  if (d && d.status === 'pending' && d.score >= ctx.threshold) {
    S.reviewId = d.id;
    refreshReview(false);
  }
});

// ---------------------------------------------------------------------------------------------
// Wiring

function wire(): void {
  document.addEventListener('keydown', onKey);
  $('help-btn').addEventListener('click', () => toggleHelp());
  $('help-close').addEventListener('click', () => toggleHelp(false));
  $('help').addEventListener('click', (e) => { if (e.target === $('help')) toggleHelp(false); });
  $('add-image-form').addEventListener('submit', (e) => { addImage(e); });
  $('add-class-form').addEventListener('submit', (e) => { addClass(e); });
  $('attach-cloud-form').addEventListener('submit', (e) => { attachCloud(e); });
  $('view3d-btn').addEventListener('click', () => view3d.toggle());
  document.querySelectorAll<HTMLButtonElement>('#tools button').forEach((b) => b.addEventListener('click', () => setTool(b.dataset.tool as Tool)));
  $('front-known').addEventListener('change', () => { S.frontKnown = ($('front-known') as HTMLInputElement).checked; });
  $('undo-btn').addEventListener('click', undo);
  $('redo-btn').addEventListener('click', redo);
  $('delete-btn').addEventListener('click', deleteSelected);
  $('band-mode').addEventListener('change', () => {
    const mode = ($('band-mode') as HTMLSelectElement).value as 'rgb' | 'grey';
    S.display.mode = mode;
    const n = S.image?.bands ?? 1;
    S.display.bands = mode === 'rgb' ? [1, 2, 3].map((b) => Math.min(b, n)) : [S.display.bands[0] ?? 1];
    resetStretch(S.display.preset === 'custom' ? 'p2p98' : S.display.preset as StretchPreset);
    renderDisplay();
    applyDisplay();
  });
  $('stretch-preset').addEventListener('change', () => {
    resetStretch(($('stretch-preset') as HTMLSelectElement).value as StretchPreset);
    renderDisplay();
    applyDisplay();
  });
  document.querySelectorAll<HTMLButtonElement>('#tabs button').forEach((b) => b.addEventListener('click', () => showTab(b.dataset.tab!)));
  $('train-btn').addEventListener('click', () => { startTraining(); });
  $('train-cancel').addEventListener('click', () => { cancelTraining(); });
  $('train-class').addEventListener('change', () => setActiveClass(Number(($('train-class') as HTMLSelectElement).value)));
  $('train-colour').addEventListener('change', () => setTrainColour(($('train-colour') as HTMLSelectElement).value as ColourMethod));
  $('train-mine').addEventListener('change', () => setMineRounds(Number(($('train-mine') as HTMLInputElement).value)));
  $('train-gsd').addEventListener('change', () => setTrainGsd(($('train-gsd') as HTMLInputElement).value));
  $('train-widths').addEventListener('change', () => setTrainWidths(($('train-widths') as HTMLSelectElement).value));
  $('train-members').addEventListener('change', () => setTrainMembers(Number(($('train-members') as HTMLSelectElement).value)));
  $('detect-view').addEventListener('click', () => { startDetection(true); });
  $('detect-all').addEventListener('click', () => { startDetection(false); });
  $('detect-model').addEventListener('change', () => selectModel(($('detect-model') as HTMLSelectElement).value));
  $('threshold').addEventListener('input', () => setThreshold(Number(($('threshold') as HTMLInputElement).value)));
  $('review-prev').addEventListener('click', () => stepReview(-1));
  $('review-next').addEventListener('click', () => stepReview(1));
  $('review-accept').addEventListener('click', () => review('accept'));
  $('review-reject').addEventListener('click', () => review('reject'));
  $('export-this-image').addEventListener('change', renderExportLinks);
  drawChart($('train-chart'), []);
  updateUndoButtons();
  setThreshold(0.5);
}

function rotateHandleScreen(): [number, number] | null {
  const src = transform.overlayLayer_?.getSource();
  const f = src?.getFeatures().find((x: Feature) => x.get('handle') === 'rotate');
  if (!f) return null;
  const p = map.getPixelFromCoordinate((f.getGeometry() as Point).getCoordinates());
  if (!p) return null;
  const r = map.getTargetElement()!.getBoundingClientRect();
  // The handle is drawn displaced by (+12, +12) CSS pixels from the corner (ol-ext default).
  return [r.left + p[0] + 12, r.top + p[1] + 12];
}

function pixelToScreen(px: number, py: number): [number, number] {
  if (!S.affine) throw new Error('no image open');
  const p = map.getPixelFromCoordinate(S.affine.toMap(px, py));
  const r = map.getTargetElement()!.getBoundingClientRect();
  return [r.left + p[0], r.top + p[1]];
}

function screenToPixel(x: number, y: number): [number, number] {
  if (!S.affine) throw new Error('no image open');
  const r = map.getTargetElement()!.getBoundingClientRect();
  const c = map.getCoordinateFromPixel([x - r.left, y - r.top]);
  return S.affine.toPixel(c);
}

declare global {
  interface Window { kestrel: Record<string, unknown> }
}

window.kestrel = {
  map,
  samplesLayer,
  detectionsLayer,
  transform,
  pixelToScreen,
  screenToPixel,
  rotateHandleScreen,
  get ready() { return S.ready; },
  get selectedId() { return S.selectedId; },
  get imageId() { return S.image?.id ?? null; },
  get reviewId() { return S.reviewId; },
  get tool() { return S.tool; },
  get tilesPending() { return S.tilesPending; },
  get tilesLoaded() { return S.tilesLoaded; },
  get threshold() { return ctx.threshold; },
  get heightLayer() {
    const hl = heightLayers[0];
    return hl
      ? { name: hl.info.name, visible: hl.layer.getVisible(), opacity: hl.layer.getOpacity(), max: hl.max, tilesLoaded: hl.tilesLoaded, tilesPending: hl.tilesPending, tilesFailed: hl.tilesFailed }
      : { name: null, visible: false, opacity: 0, max: null, tilesLoaded: 0, tilesPending: 0, tilesFailed: 0 };
  },
  get heightLayers() { return heightLayers.map((hl) => ({ name: hl.info.name, visible: hl.layer.getVisible(), tilesLoaded: hl.tilesLoaded })); },
  get busy() { return queueBusy; },
  get view3d() {
    return { ...view3d.state, selectedId: S.selectedId };
  },
  view3dPixelToScreen: (px: number, py: number, z_m: number) => view3d.pixelToScreen(px, py, z_m),
  state: S,
};

async function main(): Promise<void> {
  wire();
  setTool('select');
  try {
    S.project = await get<Project>('/api/project');
    $('project-name').textContent = S.project.name + (S.project.demo ? ' (demo)' : '');
    document.title = `Kestrel — ${S.project.name}`;
  } catch (e) {
    reportError(e, 'Cannot load the project');
    $('project-name').textContent = 'server unreachable';
    return;
  }
  await Promise.all([
    loadImages().catch((e) => reportError(e, 'Images')),
    loadClasses().catch((e) => reportError(e, 'Classes')),
    loadModels().catch((e) => reportError(e, 'Models')),
  ]);
  renderExportLinks();
  let want: number | null = null;
  try { want = Number(localStorage.getItem('kestrel.image')) || null; } catch { /* ignore */ }
  const img = S.images.find((i) => i.id === want) ?? S.images[0];
  if (img) {
    await openImage(img.id).catch((e) => reportError(e, 'Could not open the image'));
  } else {
    S.ready = true;
  }
  const m = S.models.find((x) => x.id === ($('detect-model') as HTMLSelectElement).value);
  if (m && typeof m.default_threshold === 'number' && !S.detections.size) setThreshold(m.default_threshold);
  resumeJobs();
}

main();
