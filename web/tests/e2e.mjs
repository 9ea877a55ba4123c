// End-to-end test of the Kestrel web app against a running `kestrel serve` (demo project).
//
//   KESTREL_URL=http://127.0.0.1:8091 node web/tests/e2e.mjs
//
// Env: KESTREL_URL (base URL, default http://127.0.0.1:8091), KESTREL_TOKEN (if the server wants
// one), KESTREL_SCREENSHOTS (folder, default web/screenshots), CHROMIUM (default /usr/bin/chromium),
// KESTREL_TRAIN_TIMEOUT_S (default 360).
//
// Draws with real mouse events; reads positions from the page's debug hook `window.kestrel`.

import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.KESTREL_URL || 'http://127.0.0.1:8091').replace(/\/+$/, '');
const TOKEN = process.env.KESTREL_TOKEN || '';
const SHOTS = process.env.KESTREL_SCREENSHOTS || join(here, '..', 'screenshots');
const TRAIN_TIMEOUT_MS = Number(process.env.KESTREL_TRAIN_TIMEOUT_S || 360) * 1000;
mkdirSync(SHOTS, { recursive: true });

const t0 = Date.now();
const log = (msg) => console.log(`[e2e ${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${msg}`);

class Fail extends Error {}
function check(cond, msg) {
  if (!cond) throw new Fail(msg);
}

// --- API from node -------------------------------------------------------------------------

async function api(method, path, body) {
  const headers = {};
  if (TOKEN) headers.Authorization = `Bearer ${TOKEN}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(BASE + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = text; }
  if (!res.ok) throw new Fail(`${method} ${path} → HTTP ${res.status}: ${text.slice(0, 300)}`);
  return json;
}
const apiGet = (p) => api('GET', p);

async function until(what, fn, timeoutMs = 15000, everyMs = 250) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      if (e instanceof Fail) last = e.message; else throw e;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Fail(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}${typeof last === 'string' ? ` (${last})` : ''}`);
}

const angleDiff = (a, b) => ((((a - b) % 360) + 540) % 360) - 180; // a − b in (−180, 180]

// --- browser -------------------------------------------------------------------------------

let browser;
let page;
let shotNo = 0;
const pageErrors = [];
const toasts = [];
const tileResponses = [];

async function shot(name) {
  shotNo++;
  await page.waitForTimeout(300); // let debounced panels and fading toasts settle
  const file = join(SHOTS, `${String(shotNo).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  log(`  screenshot ${file}`);
}

/** A screenshot between two numbered steps (e.g. 04b-…), leaving the numbering of the others as it was. */
async function extraShot(name) {
  await page.waitForTimeout(300);
  const file = join(SHOTS, `${String(shotNo).padStart(2, '0')}b-${name}.png`);
  await page.screenshot({ path: file });
  log(`  screenshot ${file}`);
}

async function waitReady(what) {
  await page.waitForFunction(() => window.kestrel && window.kestrel.ready === true, null, { timeout: 30000 })
    .catch(() => { throw new Fail(`${what}: the page never became ready (window.kestrel.ready)`); });
  await waitTiles(what);
}

async function waitTiles(what) {
  await page.waitForFunction(() => window.kestrel.tilesLoaded > 0 && window.kestrel.tilesPending === 0, null, { timeout: 30000 })
    .catch(() => { throw new Fail(`${what}: map tiles did not finish loading`); });
  // Let OpenLayers render the last frame.
  await page.evaluate(() => new Promise((r) => { window.kestrel.map.once('rendercomplete', () => r()); window.kestrel.map.render(); }));
}

async function waitQueueIdle() {
  await page.waitForFunction(() => window.kestrel.busy === 0, null, { timeout: 15000 });
}

const toScreen = (px, py) => page.evaluate(([x, y]) => window.kestrel.pixelToScreen(x, y), [px, py]);

/** A real mouse drag from one image pixel to another. */
async function dragPixels(a, b, steps = 12) {
  const [x0, y0] = await toScreen(a[0], a[1]);
  const [x1, y1] = await toScreen(b[0], b[1]);
  await page.mouse.move(x0, y0);
  await page.mouse.down();
  for (let i = 1; i <= steps; i++) {
    await page.mouse.move(x0 + ((x1 - x0) * i) / steps, y0 + ((y1 - y0) * i) / steps);
  }
  await page.mouse.up();
}

async function samplesOf(imageId) {
  return apiGet(`/api/samples?image_id=${imageId}`);
}

/** Draws a box with the current tool and waits until the server has it; returns the new sample. */
async function drawBox(imageId, known, cx, cy, w, h) {
  const before = new Set(known);
  await dragPixels([cx - w / 2, cy - h / 2], [cx + w / 2, cy + h / 2]);
  const s = await until(`the box at (${cx}, ${cy}) to be saved`, async () => {
    const list = await samplesOf(imageId);
    return list.find((x) => !before.has(x.id) && x.origin === 'drawn'
      && x.shape.kind === 'oriented_box' && Math.abs(x.shape.cx - cx) < 4 && Math.abs(x.shape.cy - cy) < 4);
  });
  known.push(s.id);
  return s;
}

// --- the test ------------------------------------------------------------------------------

async function run() {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic',
      // WebGL for the 3D view without a GPU: ANGLE on SwiftShader (software).
      '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist'],
    // playwright gives every launch a fresh, temporary profile (user data dir) of its own.
  });
  {
    const context = await browser.newContext({ viewport: { width: 1600, height: 1000 }, deviceScaleFactor: 1 });
    page = await context.newPage();
    page.on('pageerror', (e) => { pageErrors.push(String(e)); log(`  PAGE ERROR: ${e}`); });
    page.on('console', (m) => { if (m.type() === 'error') log(`  console error: ${m.text()}`); });
    page.on('response', (r) => {
      const u = r.url();
      if (!u.includes('/api/')) return;
      if (/\/tiles\//.test(u)) { tileResponses.push([u, r.status()]); }
      if (r.status() >= 400 && r.status() !== 409) log(`  HTTP ${r.status()} for ${r.request().method()} ${u.replace(BASE, '')}`);
    });
    await page.exposeFunction('__e2eToast', (t) => { toasts.push(t); log(`  toast: ${t}`); });

    // 1. Open the page
    log('step 1: open the page');
    const project = await apiGet('/api/project');
    const images = await apiGet('/api/images');
    check(images.length > 0, 'the demo project has no image');
    const classes = await apiGet('/api/classes');
    const vehicle = classes.find((c) => c.name === 'vehicle') ?? classes[0];
    check(vehicle, 'the demo project has no class');
    await page.goto(BASE + '/' + (TOKEN ? `?token=${encodeURIComponent(TOKEN)}` : ''));
    await page.evaluate(() => {
      new MutationObserver((ms) => ms.forEach((m) => m.addedNodes.forEach((n) => {
        if (n.classList?.contains('toast')) window.__e2eToast(`${n.className}: ${n.textContent}`);
      }))).observe(document.getElementById('toasts'), { childList: true });
    });
    await waitReady('open');
    const imageId = await page.evaluate(() => window.kestrel.imageId);
    const image = images.find((i) => i.id === imageId);
    check(image, `the page opened image ${imageId}, which the API does not list`);
    const projectName = await page.textContent('[data-testid=project-name]');
    check(projectName.includes(project.name), `project name shown is "${projectName}", expected "${project.name}"`);
    const existing = await samplesOf(imageId);
    const featureCount0 = await page.evaluate(() => window.kestrel.samplesLayer.getSource().getFeatures().length);
    check(featureCount0 === existing.length, `the samples layer has ${featureCount0} features, the API lists ${existing.length}`);
    // Tiles: the page asks for tile rows counted downward from the top (the API's convention).
    const levels = image.tiles.resolutions.length;
    const bad = tileResponses.filter(([, st]) => st !== 200);
    check(tileResponses.length > 0, 'the page requested no tile');
    check(bad.length === 0, `tile requests failed: ${bad.slice(0, 3).map(([u, st]) => `${st} ${u.replace(BASE, '')}`).join(', ')}`);
    for (const [u] of tileResponses) {
      const m = /\/tiles\/(\d+)\/(\d+)\/(\d+)\.png/.exec(u);
      check(m, `unexpected tile URL ${u}`);
      const [z, x, y] = m.slice(1).map(Number);
      const per = image.tiles.size * (image.tiles.resolutions[z] / image.tiles.resolutions[levels - 1]);
      check(z < levels && x >= 0 && y >= 0 && x < Math.ceil(image.width / per) && y < Math.ceil(image.height / per), `tile ${z}/${x}/${y} lies outside the image`);
    }
    log(`  ${tileResponses.length} tiles loaded, all inside the image's tile grid`);
    log(`  project "${project.name}", image ${image.id} ${image.name} ${image.width}×${image.height} ${image.projection}, ${existing.length} samples, class "${vehicle.name}" (${vehicle.heading_mode})`);
    await shot('open');

    // Zoom to the native resolution on an empty part of the image, so boxes are drawn at real size.
    const known = existing.map((s) => s.id);
    const centres = existing.map((s) => s.shape.kind === 'point' ? [s.shape.x, s.shape.y] : [s.shape.cx, s.shape.cy]);
    const mapSize = await page.evaluate(() => window.kestrel.map.getSize());
    const fine = image.tiles.resolutions[image.tiles.resolutions.length - 1];
    // Show about 1.4 image pixels per screen pixel (or the whole image if it is small).
    let scale = Math.max(1, Math.min(1.4, Math.max(image.width / mapSize[0], image.height / mapSize[1])));
    const viewW = mapSize[0] * scale, viewH = mapSize[1] * scale;
    // Five slots (3 positives, 2 negatives) in a 3×2 grid around a view centre far from existing samples.
    const slotOffsets = [[-0.3, -0.22], [0, -0.22], [0.3, -0.22], [-0.15, 0.22], [0.15, 0.22]].map(([fx, fy]) => [fx * viewW, fy * viewH]);
    const clear = (x, y) => centres.every(([sx, sy]) => Math.hypot(sx - x, sy - y) > 70);
    // Candidate view centres, nearest to the image centre first; the first with the most free slots wins.
    const candidates = [];
    for (let gy = 0.2; gy <= 0.801; gy += 0.05) {
      for (let gx = 0.2; gx <= 0.801; gx += 0.05) candidates.push([Math.round(image.width * gx), Math.round(image.height * gy)]);
    }
    candidates.sort((a, b) => Math.hypot(a[0] - image.width / 2, a[1] - image.height / 2) - Math.hypot(b[0] - image.width / 2, b[1] - image.height / 2));
    let best = null;
    for (const c of candidates) {
      const slots = slotOffsets.map(([dx, dy]) => [Math.round(c[0] + dx), Math.round(c[1] + dy)]);
      const inside = slots.every(([x, y]) => x > 40 && y > 40 && x < image.width - 40 && y < image.height - 40);
      const free = slots.filter(([x, y]) => clear(x, y)).length;
      if (inside && (!best || free > best.free)) best = { c, slots, free };
    }
    check(best, 'could not place five boxes inside the image');
    // The demo's answer key (KESTREL_DEMO_UNLABELLED, written beside the demo project): when
    // given, the positives are drawn on real unlabelled vehicles — two lying near 0° or 90°
    // (drawn as an upright or a flat box) and one between 20° and 70° (drawn upright, then
    // turned by its heading with the rotate handle) — with the whole image in view.
    let vehicles = null;
    if (process.env.KESTREL_DEMO_UNLABELLED) {
      const all = JSON.parse(readFileSync(process.env.KESTREL_DEMO_UNLABELLED, 'utf8'))[image.name] || [];
      const free = all.filter((v) => clear(v.cx, v.cy) && v.cx > 30 && v.cy > 30 && v.cx < image.width - 30 && v.cy < image.height - 30);
      const near = (v, h) => Math.abs(angleDiff(v.heading_deg, h)) < 12;
      const straight = free.filter((v) => near(v, 0) || near(v, 90));
      const slanted = free.filter((v) => v.heading_deg >= 20 && v.heading_deg <= 70);
      if (straight.length >= 2 && slanted.length >= 1) {
        vehicles = [straight[0], slanted[0], straight[1]];
        best.c = [Math.round(image.width / 2), Math.round(image.height / 2)];
        scale = Math.max(image.width / mapSize[0], image.height / mapSize[1]) * 1.02;
        log(`  drawing on unlabelled vehicles at ${vehicles.map((v) => `(${Math.round(v.cx)}, ${Math.round(v.cy)}) ${Math.round(v.heading_deg)}°`).join(', ')}`);
      }
    }
    await page.evaluate(([cx, cy, res]) => {
      const k = window.kestrel;
      const aff = k.state.affine;
      const view = k.map.getView();
      view.setCenter(aff.toMap(cx, cy));
      view.setResolution(res);
    }, [best.c[0], best.c[1], fine * scale]);
    await waitTiles('zoom in');

    // 2. Three positive boxes
    log('step 2: draw three positive boxes');
    await page.click('[data-testid=tool-posbox]');
    const pos = [];
    const boxDims = [[46, 20], [20, 44], [18, 40]]; // wider than tall → heading 90; taller → 0
    for (let i = 0; i < 3; i++) {
      if (i > 0) await page.keyboard.press('b');
      let [x, y] = best.slots[i];
      let [w, h] = boxDims[i];
      if (vehicles) {
        const v = vehicles[i];
        [x, y] = [Math.round(v.cx), Math.round(v.cy)];
        const flat = i !== 1 && Math.abs(angleDiff(v.heading_deg, 90)) < 12;
        [w, h] = flat ? [Math.round(v.length), Math.round(v.width)] : [Math.round(v.width), Math.round(v.length)];
      }
      const s = await drawBox(imageId, known, x, y, w, h);
      check(s.polarity === 'positive', `box ${i + 1} was saved as ${s.polarity}`);
      check(s.class_id === vehicle.id || classes.length > 1, `box ${i + 1} has class ${s.class_id}`);
      const expHeading = w > h ? 90 : 0;
      check(Math.abs(angleDiff(s.shape.heading_deg, expHeading)) < 0.5, `box ${i + 1} heading ${s.shape.heading_deg}, expected ${expHeading}`);
      check(Math.abs(s.shape.length - Math.max(w, h)) < 4 && Math.abs(s.shape.width - Math.min(w, h)) < 4,
        `box ${i + 1} is ${s.shape.length}×${s.shape.width}, expected about ${Math.max(w, h)}×${Math.min(w, h)}`);
      pos.push(s);
      log(`  positive #${s.id}: centre (${s.shape.cx}, ${s.shape.cy}) ${s.shape.length}×${s.shape.width} heading ${s.shape.heading_deg}`);
    }
    const drawnPos = (await samplesOf(imageId)).filter((s) => pos.some((p) => p.id === s.id) && s.origin === 'drawn' && s.polarity === 'positive');
    check(drawnPos.length === 3, `the API lists ${drawnPos.length} of the 3 new drawn positives`);
    await waitQueueIdle();
    await shot('positives');

    // 3. Rotate one box with the ol-ext rotate handle
    log('step 3: rotate a box by dragging the rotate handle');
    const target = pos[1];
    await page.keyboard.press('v');
    const [sx, sy] = await toScreen(target.shape.cx, target.shape.cy);
    await page.mouse.click(sx, sy);
    await until('the box to be selected', () => page.evaluate((id) => window.kestrel.selectedId === id, target.id), 5000);
    let handle = await page.evaluate(() => window.kestrel.rotateHandleScreen());
    check(handle, 'no rotate handle is shown for the selected box');
    // Make sure the pointer is really over the handle: the map's cursor turns into the rotate cursor.
    const tryAt = [[0, 0], [-3, -3], [-6, -6], [3, 3], [-3, 0], [0, -3], [-9, -6]];
    let found = null;
    for (const [dx, dy] of tryAt) {
      await page.mouse.move(handle[0] + dx, handle[1] + dy);
      const over = await page.evaluate(([x, y]) => {
        const k = window.kestrel;
        const r = k.map.getTargetElement().getBoundingClientRect();
        let hit = null;
        k.map.forEachFeatureAtPixel([x - r.left, y - r.top], (f, layer) => {
          if (!layer && f.get('handle')) { hit = f.get('handle'); return true; }
          return false;
        }, { hitTolerance: k.transform.get('hitTolerance') });
        return hit;
      }, [handle[0] + dx, handle[1] + dy]);
      if (over === 'rotate') { found = [handle[0] + dx, handle[1] + dy]; break; }
    }
    check(found, `the rotate handle is not under the pointer near (${handle.map(Math.round)})`);
    handle = found;
    // Drag the handle 40° clockwise (screen) around the box centre.
    const r0 = Math.hypot(handle[0] - sx, handle[1] - sy);
    const a0 = Math.atan2(handle[1] - sy, handle[0] - sx);
    const dragDeg = vehicles ? Math.round(vehicles[1].heading_deg) : 40;
    await page.mouse.down();
    const steps = 16;
    for (let i = 1; i <= steps; i++) {
      const a = a0 + ((dragDeg * Math.PI) / 180) * (i / steps);
      await page.mouse.move(sx + r0 * Math.cos(a), sy + r0 * Math.sin(a));
    }
    await page.mouse.up();
    const rotated = await until('the rotation to be saved', async () => {
      const s = (await samplesOf(imageId)).find((x) => x.id === target.id);
      return s && s.version > target.version ? s : null;
    });
    const turned = angleDiff(rotated.shape.heading_deg, target.shape.heading_deg);
    const headingTol = 4;
    if (vehicle.heading_mode === 'axis') {
      const t180 = ((turned % 180) + 180) % 180;
      check(Math.min(Math.abs(t180 - dragDeg), Math.abs(t180 - dragDeg - 180)) < headingTol, `heading turned by ${turned}°, expected about ${dragDeg}° (axis)`);
    } else {
      check(Math.abs(turned - dragDeg) < headingTol, `heading went from ${target.shape.heading_deg}° to ${rotated.shape.heading_deg}° (${turned.toFixed(1)}°), expected about +${dragDeg}°`);
    }
    check(Math.abs(rotated.shape.cx - target.shape.cx) < 1.5 && Math.abs(rotated.shape.cy - target.shape.cy) < 1.5, 'the rotation moved the box centre');
    check(Math.abs(rotated.shape.length - target.shape.length) < 1 && Math.abs(rotated.shape.width - target.shape.width) < 1, 'the rotation changed the box size');
    log(`  #${target.id} heading ${target.shape.heading_deg}° → ${rotated.shape.heading_deg}° (dragged ${dragDeg}°), version ${rotated.version}`);
    await waitQueueIdle();
    await shot('rotated');
    await page.keyboard.press('Escape');

    // 4. Two negative boxes
    log('step 4: draw two negative boxes');
    await page.keyboard.press('n');
    const neg = [];
    for (let i = 0; i < 2; i++) {
      if (i > 0) await page.click('[data-testid=tool-negbox]');
      const [x, y] = best.slots[3 + i];
      const s = await drawBox(imageId, known, x, y, 36, 36);
      check(s.polarity === 'negative', `negative box ${i + 1} was saved as ${s.polarity}`);
      neg.push(s);
      log(`  negative #${s.id}: centre (${s.shape.cx}, ${s.shape.cy})`);
    }
    await waitQueueIdle();
    await shot('negatives');
    await page.keyboard.press('v');

    // 5. Train
    log('step 5: train');
    await page.click('[data-testid=tab-train]');
    await page.selectOption('[data-testid=train-class]', String(vehicle.id));
    // Training options: one band checkbox per band of the image, the first three ticked; colour
    // "stretch"; no mining (it would retrain on the slow test machine).
    await page.click('[data-testid=train-options-toggle]');
    check(await page.isVisible('[data-testid=train-colour]'), 'opening the training options shows no colour choice');
    const bandBoxes = await page.$$eval('[data-testid^=train-band-]', (els) => els.map((e) => ({ id: e.dataset.testid, checked: e.checked, disabled: e.disabled })));
    check(bandBoxes.length === image.bands, `the training options offer ${bandBoxes.length} band checkboxes, the image has ${image.bands} bands`);
    check(!(await page.$(`[data-testid=train-band-${image.bands + 1}]`)), `a checkbox for band ${image.bands + 1} is offered on a ${image.bands}-band image`);
    const expBands = Array.from({ length: Math.min(3, image.bands) }, (_, i) => i + 1);
    const ticked = bandBoxes.filter((b) => b.checked).map((b) => Number(b.id.replace('train-band-', '')));
    check(JSON.stringify(ticked) === JSON.stringify(expBands), `bands ticked by default: ${JSON.stringify(ticked)}, expected ${JSON.stringify(expBands)}`);
    await page.selectOption('[data-testid=train-colour]', 'stretch');
    await page.fill('[data-testid=train-mine]', '0');
    await page.dispatchEvent('[data-testid=train-mine]', 'change');
    const colourHint = await page.textContent('[data-testid=train-colour-hint]');
    check(/2–98/.test(colourHint), `the colour hint for "stretch" reads "${colourHint}"`);
    const optSummary = await page.textContent('[data-testid=train-options-summary]');
    check(optSummary.includes(`bands ${expBands.join(',')}`) && optSummary.includes('stretch'), `the options summary reads "${optSummary}"`);
    log(`  options: ${bandBoxes.length} band checkboxes, ${optSummary}`);
    // The network's GSD and widths: shown in the summary while set, then back to the defaults
    // (a coarser or wider network would change what later steps find, or slow them).
    await page.fill('[data-testid=train-gsd]', '0.3');
    await page.dispatchEvent('[data-testid=train-gsd]', 'change');
    await page.selectOption('[data-testid=train-widths]', '24,48,96');
    await page.selectOption('[data-testid=train-members]', '2');
    const sizedSummary = await page.textContent('[data-testid=train-options-summary]');
    check(sizedSummary.includes('0.3 m') && sizedSummary.includes('widths 24·48·96') && sizedSummary.includes('ensemble of 2'), `with GSD 0.3, widths 24,48,96 and two networks the options summary reads "${sizedSummary}"`);
    await page.fill('[data-testid=train-gsd]', '');
    await page.dispatchEvent('[data-testid=train-gsd]', 'change');
    await page.selectOption('[data-testid=train-widths]', '16,32,64');
    await page.selectOption('[data-testid=train-members]', '1');
    await extraShot('train-options');
    const trainRequest = page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith('/api/jobs/train'), { timeout: 15000 });
    await page.click('[data-testid=train-button]');
    const trainBody = JSON.parse((await trainRequest).postData() || '{}');
    check(trainBody.colour === 'stretch', `the train request asks for colour ${JSON.stringify(trainBody.colour)}, expected "stretch"`);
    check(JSON.stringify(trainBody.bands) === JSON.stringify(expBands), `the train request asks for bands ${JSON.stringify(trainBody.bands)}, expected ${JSON.stringify(expBands)}`);
    check(trainBody.mine_rounds === 0, `the train request asks for ${JSON.stringify(trainBody.mine_rounds)} mining rounds, expected 0`);
    check((trainBody.height_bands ?? []).length === 0, `the train request marks height bands ${JSON.stringify(trainBody.height_bands)}`);
    check(!('gsd_m' in trainBody) && JSON.stringify(trainBody.widths) === '[16,32,64]', `the train request asks for gsd_m ${JSON.stringify(trainBody.gsd_m)} and widths ${JSON.stringify(trainBody.widths)}, expected none and [16,32,64]`);
    check(!('members' in trainBody), `the train request asks for ${JSON.stringify(trainBody.members)} networks, expected one (no members field)`);
    log(`  POST /api/jobs/train ${JSON.stringify(trainBody)}`);
    await until('a training job to start', () => page.evaluate(() => {
      const s = document.querySelector('[data-testid=train-state]').dataset.state;
      return s && s !== '';
    }), 15000);
    let lastMsg = '';
    const trainState = await until('training to finish', async () => {
      const st = await page.evaluate(() => ({
        state: document.querySelector('[data-testid=train-state]').dataset.state,
        text: document.querySelector('[data-testid=train-state]').textContent,
        points: document.querySelectorAll('[data-testid=train-chart] polyline').length,
      }));
      if (st.text !== lastMsg) { lastMsg = st.text; log(`  ${st.text}`); }
      if (st.state === 'failed' || st.state === 'cancelled') throw new Fail(`training ${st.state}: ${st.text}`);
      return st.state === 'done' ? st : null;
    }, TRAIN_TIMEOUT_MS, 1000);
    const trainJobId = await page.evaluate(() => window.kestrel.state.trainJob?.id);
    check(trainJobId !== undefined, 'the page does not know its training job');
    const trainJob = await apiGet(`/api/jobs/${trainJobId}`);
    check(trainJob.kind === 'train' && trainJob.state === 'done', `job ${trainJobId} is ${trainJob.kind} ${trainJob.state}`);
    check(trainJob?.result?.model_id, 'the finished training job names no model');
    const modelId = trainJob.result.model_id;
    check(trainJob.epochs.length > 0, 'the training job reported no epochs');
    check(trainState.points >= 1, 'the training chart has no line');
    await until('the new model to be listed and selected', () => page.evaluate((id) =>
      document.querySelector('[data-testid=detect-model]').value === id && !!document.querySelector(`[data-testid="model-${id}"]`), modelId), 10000);
    log(`  model ${modelId}: ${trainJob.epochs.length} epochs, last F1 ${trainJob.epochs[trainJob.epochs.length - 1].f1}`);
    // What the model reads, in the API and in the models list.
    const listed = (await apiGet('/api/models')).find((m) => m.id === modelId);
    check(listed, `GET /api/models does not list ${modelId}`);
    check(JSON.stringify(listed.bands) === JSON.stringify(expBands) && (listed.height_bands ?? []).length === 0,
      `GET /api/models gives ${modelId} bands ${JSON.stringify(listed.bands)} and height bands ${JSON.stringify(listed.height_bands)}, expected ${JSON.stringify(expBands)} and none`);
    const entry = await page.textContent(`[data-testid="model-${modelId}"]`);
    check(entry.includes(`bands ${expBands.join(',')}`), `the models list entry reads "${entry}", without "bands ${expBands.join(',')}"`);
    check(!(await page.isDisabled('[data-testid=detect-all]')), `Detect is disabled for a model that reads the image's bands: ${await page.getAttribute('[data-testid=detect-all]', 'title')}`);
    log(`  models list: ${await page.textContent(`[data-testid="model-reads-${modelId}"]`)}`);
    await shot('trained');

    // 6. Detect whole image
    log('step 6: detect in the whole image');
    await page.click('[data-testid=tab-detect]');
    await page.click('[data-testid=detect-all]');
    await until('detection to finish', async () => {
      const st = await page.evaluate(() => document.querySelector('[data-testid=detect-state]').dataset.state);
      if (st === 'failed' || st === 'cancelled') {
        throw new Fail(`detection ${st}: ${await page.textContent('[data-testid=detect-state]')}`);
      }
      return st === 'done';
    }, 300000, 500);
    const dets = await apiGet(`/api/detections?image_id=${imageId}`);
    check(dets.length >= 2, `detection found ${dets.length} objects, need at least 2 to review`);
    await until('the detections to be drawn', () => page.evaluate((n) =>
      window.kestrel.detectionsLayer.getSource().getFeatures().length === n, dets.length), 10000);
    const thr = await page.evaluate(() => window.kestrel.threshold);
    let pending = dets.filter((d) => d.status === 'pending' && d.score >= thr);
    log(`  ${dets.length} detections (scores ${dets[dets.length - 1].score.toFixed(3)}–${dets[0].score.toFixed(3)}), threshold ${thr.toFixed(3)}, ${pending.length} pending above it`);
    if (pending.length < 2) {
      // Lower the threshold with the slider so that two can be reviewed.
      const lower = Math.max(0, Math.floor((dets.filter((d) => d.status === 'pending')[1]?.score ?? 0) * 100) / 100);
      await page.evaluate((v) => {
        const el = document.querySelector('[data-testid=threshold]');
        el.value = String(v);
        el.dispatchEvent(new Event('input', { bubbles: true }));
      }, lower);
      pending = dets.filter((d) => d.status === 'pending' && d.score >= lower);
      log(`  lowered the threshold to ${lower}: ${pending.length} pending`);
    }
    check(pending.length >= 2, 'fewer than two pending detections to review');
    // Zoom out to show them all
    await page.evaluate(() => {
      const k = window.kestrel;
      k.map.getView().fit(k.state.image.extent, { padding: [20, 20, 20, 20] });
    });
    await waitTiles('detections');
    await shot('detections');

    // 7. Review: accept one (A), reject another (R)
    log('step 7: review — accept one, reject one');
    await page.click('[data-testid=tab-review]');
    const first = await until('a current detection', () => page.evaluate(() => window.kestrel.reviewId), 5000);
    check(first === pending[0].id, `review starts at detection ${first}, expected the highest-scoring pending one ${pending[0].id}`);
    await page.locator('body').focus().catch(() => {});
    await page.keyboard.press('a');
    const accepted = await until(`detection ${first} to be accepted`, async () => {
      const d = (await apiGet(`/api/detections?image_id=${imageId}`)).find((x) => x.id === first);
      return d && d.status === 'accepted' ? d : null;
    });
    const second = await until('the review to move on', () => page.evaluate((f) => {
      const id = window.kestrel.reviewId;
      return id !== null && id !== f ? id : null;
    }, first), 5000);
    check(second === pending[1].id, `after accepting, review moved to ${second}, expected ${pending[1].id}`);
    await page.keyboard.press('r');
    const rejected = await until(`detection ${second} to be rejected`, async () => {
      const d = (await apiGet(`/api/detections?image_id=${imageId}`)).find((x) => x.id === second);
      return d && d.status === 'rejected' ? d : null;
    });
    await waitQueueIdle();
    // The review's current detection is highlighted and centred in the map.
    const centred = await until('the current detection to be centred', () => page.evaluate(() => {
      const k = window.kestrel;
      const view = k.map.getView();
      const d = k.state.detections.get(k.reviewId);
      if (!d || view.getAnimating()) return null;
      const p = k.map.getPixelFromCoordinate(k.state.affine.toMap(d.shape.cx, d.shape.cy));
      const size = k.map.getSize();
      return { id: d.id, off: Math.hypot(p[0] - size[0] / 2, p[1] - size[1] / 2) };
    }), 5000);
    check(centred.off < 3, `the current detection #${centred.id} is ${centred.off.toFixed(0)} px off the map centre`);
    log(`  accepted #${accepted.id} (score ${accepted.score.toFixed(3)}) → sample #${accepted.sample_id}; rejected #${rejected.id} (score ${rejected.score.toFixed(3)}) → sample #${rejected.sample_id}`);
    await waitTiles('review');
    await shot('review');

    // 8. Reload and check that everything persisted
    log('step 8: reload and verify');
    await page.reload();
    await waitReady('reload');
    const after = await samplesOf(imageId);
    const byId = new Map(after.map((s) => [s.id, s]));
    for (const p of pos) {
      const s = byId.get(p.id);
      check(s && s.origin === 'drawn' && s.polarity === 'positive', `drawn positive #${p.id} is missing after reload`);
    }
    check(Math.abs(angleDiff(byId.get(target.id).shape.heading_deg, rotated.shape.heading_deg)) < 0.01,
      `rotated box #${target.id} has heading ${byId.get(target.id).shape.heading_deg}, expected ${rotated.shape.heading_deg}`);
    for (const n of neg) {
      const s = byId.get(n.id);
      check(s && s.origin === 'drawn' && s.polarity === 'negative', `drawn negative #${n.id} is missing after reload`);
    }
    const accSample = byId.get(accepted.sample_id);
    check(accSample && accSample.origin === 'accepted_detection' && accSample.polarity === 'positive',
      `the accepted detection's sample #${accepted.sample_id} is missing or wrong: ${JSON.stringify(accSample)}`);
    const rejSample = byId.get(rejected.sample_id);
    check(rejSample && rejSample.origin === 'rejected_detection' && rejSample.polarity === 'negative',
      `the rejected detection's sample #${rejected.sample_id} is missing or wrong: ${JSON.stringify(rejSample)}`);
    const detsAfter = await apiGet(`/api/detections?image_id=${imageId}`);
    check(detsAfter.find((d) => d.id === first)?.status === 'accepted', `detection ${first} is not accepted after reload`);
    check(detsAfter.find((d) => d.id === second)?.status === 'rejected', `detection ${second} is not rejected after reload`);
    const newDrawn = after.filter((s) => s.origin === 'drawn' && !existing.some((e) => e.id === s.id));
    check(newDrawn.filter((s) => s.polarity === 'positive').length === 3 && newDrawn.filter((s) => s.polarity === 'negative').length === 2,
      `expected 3 new drawn positives and 2 negatives, found ${newDrawn.map((s) => s.polarity).join(', ')}`);
    const pageCounts = await page.evaluate(() => ({
      samples: window.kestrel.samplesLayer.getSource().getFeatures().length,
      detections: window.kestrel.detectionsLayer.getSource().getFeatures().length,
    }));
    check(pageCounts.samples === after.length, `after reload the samples layer has ${pageCounts.samples} features, the API lists ${after.length}`);
    check(pageCounts.detections === detsAfter.length, `after reload the detections layer has ${pageCounts.detections} features, the API lists ${detsAfter.length}`);
    const model = await apiGet(`/api/models/${encodeURIComponent(modelId)}`);
    const thrAfter = await page.evaluate(() => window.kestrel.threshold);
    check(typeof model.default_threshold !== 'number' || Math.abs(thrAfter - model.default_threshold) < 1e-6,
      `after reload the threshold is ${thrAfter}, expected the model's default ${model.default_threshold}`);
    log(`  ${after.length} samples on the image (layer ${pageCounts.samples}), ${detsAfter.length} detections (layer ${pageCounts.detections}); all persisted`);
    const colourAfter = await page.$eval('[data-testid=train-colour]', (e) => e.value);
    check(colourAfter === 'stretch', `after reload the training colour is "${colourAfter}", expected the "stretch" chosen before`);
    // Show the reviewed and drawn ones
    await page.evaluate(([cx, cy, res]) => {
      const k = window.kestrel;
      k.map.getView().setCenter(k.state.affine.toMap(cx, cy));
      k.map.getView().setResolution(res);
    }, [best.c[0], best.c[1], fine * scale]);
    await waitTiles('reload view');
    await shot('reloaded');

    // 9. 3D view of the point cloud around a selected drawn positive
    log('step 9: 3D view of the point cloud');
    const imgNow = await apiGet(`/api/images/${imageId}`);
    if (!imgNow.cloud) {
      log(`  image ${imageId} has no point cloud (cloud: ${JSON.stringify(imgNow.cloud)}): step skipped`);
    } else {
      // Select the first drawn positive with a real click in select mode.
      const pick = byId.get(pos[0].id);
      await page.keyboard.press('v');
      const [px3, py3] = await toScreen(pick.shape.cx, pick.shape.cy);
      await page.mouse.click(px3, py3);
      await until(`positive #${pick.id} to be selected`, () => page.evaluate((id) => window.kestrel.selectedId === id, pick.id), 5000);
      await page.keyboard.press('3');
      let v3 = null;
      try {
        v3 = await until('the 3D view to be ready', async () => {
          const v = await page.evaluate(() => window.kestrel.view3d);
          if (v.error) throw new Fail(`3D view error: ${v.error}`);
          return v.open && v.ready && v.points > 1000 && v.boxes >= 1 ? v : null;
        }, 60000, 300);
      } catch (e) {
        log(`  view3d state: ${JSON.stringify(await page.evaluate(() => window.kestrel.view3d))}`);
        throw e;
      }
      check(await page.isVisible('[data-testid=view3d]'), 'the 3D view is not shown');
      check(v3.selected && v3.selected.id === pick.id, `the 3D view reports the height of ${JSON.stringify(v3.selected)}, expected sample #${pick.id}`);
      const height = v3.selected.height;
      check(height >= 1.0 && height <= 2.2,
        `the selected positive #${pick.id} rises ${height.toFixed(2)} m above the ground (z ${v3.selected.z_lo.toFixed(2)}–${v3.selected.z_hi.toFixed(2)}, ground ${v3.selected.ground.toFixed(2)}), expected 1.0–2.2 m (a 1.5 m vehicle)`);
      const legend = await page.textContent('[data-testid=view3d-legend]');
      check(/of [\d,]+ points/.test(legend), `the legend does not give the point count: "${legend}"`);
      log(`  ${v3.points} of ${v3.total} points, ${v3.boxes} boxes in window ${v3.window.map((x) => Math.round(x)).join(',')}; #${pick.id} z ${v3.selected.z_lo.toFixed(2)}–${v3.selected.z_hi.toFixed(2)} m, ${height.toFixed(2)} m above ground (${v3.selected.inside} points inside)`);
      // Something was drawn: the WebGL canvas is not blank.
      const lit = await page.evaluate(() => new Promise((resolve) => {
        const c = document.querySelector('[data-testid=view3d-canvas]');
        requestAnimationFrame(() => {
          const t = document.createElement('canvas');
          t.width = 200; t.height = 200;
          const g = t.getContext('2d');
          g.drawImage(c, 0, 0, 200, 200);
          const d = g.getImageData(0, 0, 200, 200).data;
          let n = 0;
          for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 60) n++;
          resolve(n);
        });
      }));
      log(`  ${lit} of 40000 sampled canvas pixels lit`);
      await shot('3d');
      await page.keyboard.press('Escape');
      await until('the map to come back', () => page.evaluate(() => !window.kestrel.view3d.open
        && document.querySelector('[data-testid=view3d]').classList.contains('hidden')), 5000);
      check(await page.isVisible('[data-testid=map]'), 'the map is not visible after closing the 3D view');
      await page.evaluate(() => new Promise((r) => { window.kestrel.map.once('rendercomplete', () => r()); window.kestrel.map.render(); }));
      log('  closed the 3D view; the map is back');
    }

    // 10. In the 3D view, around a still unlabelled vehicle of the answer key: draw a box on it
    // (dragged on the ground from its back to its front), turn it with ], move it with the mouse,
    // undo the move; all with real events, all checked through the API.
    log('step 10: draw and adjust a box in the 3D view');
    if (!imgNow.cloud || !process.env.KESTREL_DEMO_UNLABELLED) {
      log(`  ${imgNow.cloud ? 'no answer key (KESTREL_DEMO_UNLABELLED)' : 'no point cloud'}: step skipped`);
    } else {
      const labelled = await samplesOf(imageId);
      const centreOf = (s) => s.shape.kind === 'point' ? [s.shape.x, s.shape.y] : [s.shape.cx, s.shape.cy];
      const free = (JSON.parse(readFileSync(process.env.KESTREL_DEMO_UNLABELLED, 'utf8'))[image.name] || [])
        .filter((v) => v.cx > 60 && v.cy > 60 && v.cx < image.width - 60 && v.cy < image.height - 60
          && labelled.every((s) => Math.hypot(centreOf(s)[0] - v.cx, centreOf(s)[1] - v.cy) > 40));
      // Rather one lying askew, so that the heading says something.
      const car = free.find((v) => Math.abs(angleDiff(v.heading_deg, Math.round(v.heading_deg / 90) * 90)) > 20) ?? free[0];
      check(car, 'the answer key has no unlabelled vehicle left');
      // No selection, the map centred on the vehicle about 90 px either way: the 3D window is around it.
      await page.keyboard.press('Escape');
      await page.evaluate(([cx, cy, res]) => {
        const k = window.kestrel;
        k.map.getView().setCenter(k.state.affine.toMap(cx, cy));
        k.map.getView().setResolution(res);
      }, [car.cx, car.cy, (fine * 180) / Math.max(...mapSize)]);
      await page.keyboard.press('3');
      const v0 = await until('the 3D view around the vehicle to be ready', async () => {
        const v = await page.evaluate(() => window.kestrel.view3d);
        if (v.error) throw new Fail(`3D view error: ${v.error}`);
        return v.open && v.ready && v.points > 1000 && v.selectedId === null ? v : null;
      }, 60000, 300);
      check(v0.window[0] < car.cx && car.cx < v0.window[2] && v0.window[1] < car.cy && car.cy < v0.window[3],
        `the 3D window ${v0.window.map(Math.round)} misses the vehicle at (${Math.round(car.cx)}, ${Math.round(car.cy)})`);
      const to3d = (px, py, z) => page.evaluate(([x, y, zz]) => window.kestrel.view3dPixelToScreen(x, y, zz), [px, py, z]);
      // (a) Draw box: press at the back on the ground, drag to the front.
      await page.click('[data-testid=view3d-tool-box]');
      check((await page.evaluate(() => window.kestrel.view3d.tool)) === 'box', 'the Draw box button did not select the box tool');
      const u = [Math.sin((car.heading_deg * Math.PI) / 180), -Math.cos((car.heading_deg * Math.PI) / 180)];
      const back = await to3d(car.cx - (u[0] * car.length) / 2, car.cy - (u[1] * car.length) / 2, v0.ground_m);
      const front = await to3d(car.cx + (u[0] * car.length) / 2, car.cy + (u[1] * car.length) / 2, v0.ground_m);
      const probe = await to3d(car.cx, car.cy, v0.ground_m);
      log(`  vehicle (${car.cx.toFixed(1)}, ${car.cy.toFixed(1)}) ${car.length.toFixed(1)}×${car.width.toFixed(1)} px heading ${car.heading_deg.toFixed(1)}°; drag (${back.map(Math.round)}) → (${front.map(Math.round)}) on the ground at ${v0.ground_m.toFixed(2)} m`);
      await page.mouse.move(back[0], back[1]);
      await page.mouse.down();
      for (let i = 1; i <= 12; i++) await page.mouse.move(back[0] + ((front[0] - back[0]) * i) / 12, back[1] + ((front[1] - back[1]) * i) / 12);
      await page.mouse.up();
      const before3d = new Set(labelled.map((s) => s.id));
      const drawn3d = await until('the box drawn in 3D to be saved', async () =>
        (await samplesOf(imageId)).find((x) => !before3d.has(x.id) && x.origin === 'drawn'));
      const dShape = drawn3d.shape;
      const off = Math.hypot(dShape.cx - car.cx, dShape.cy - car.cy);
      const dHead = vehicle.heading_mode === 'axis'
        ? Math.min(Math.abs(angleDiff(dShape.heading_deg, car.heading_deg)), Math.abs(angleDiff(dShape.heading_deg, car.heading_deg + 180)))
        : Math.abs(angleDiff(dShape.heading_deg, car.heading_deg));
      check(drawn3d.polarity === 'positive' && dShape.kind === 'oriented_box', `the box drawn in 3D is ${drawn3d.polarity} ${dShape.kind}`);
      check(off < 3, `the box drawn in 3D is centred at (${dShape.cx}, ${dShape.cy}), ${off.toFixed(1)} px off the vehicle`);
      check(dHead < 10, `the box drawn in 3D has heading ${dShape.heading_deg}°, the vehicle ${car.heading_deg.toFixed(1)}°`);
      check(Math.abs(dShape.length - car.length) < 3 && Math.abs(dShape.width - 0.45 * dShape.length) < 0.1,
        `the box drawn in 3D is ${dShape.length}×${dShape.width} px, expected about ${car.length.toFixed(1)} long and 45 % as wide`);
      const probeAfter = await to3d(car.cx, car.cy, v0.ground_m);
      check(Math.hypot(probeAfter[0] - probe[0], probeAfter[1] - probe[1]) < 0.01, 'the camera moved while drawing');
      const v1 = await until('the new box to be selected and drawn in 3D', async () => {
        const v = await page.evaluate(() => window.kestrel.view3d);
        return v.ready && v.lastCreatedId === drawn3d.id && v.selectedId === drawn3d.id && v.selected?.id === drawn3d.id && v.boxes === v0.boxes + 1 ? v : null;
      }, 5000);
      log(`  #${drawn3d.id}: centre ${off.toFixed(2)} px off, heading ${dShape.heading_deg}° (${dHead.toFixed(1)}° off), ${dShape.length}×${dShape.width} px, z ${v1.selected.z_lo.toFixed(2)}–${v1.selected.z_hi.toFixed(2)} m (${v1.selected.inside} points inside)`);
      check(v1.selected.height >= 1.0 && v1.selected.height <= 2.2, `the box drawn in 3D rises ${v1.selected.height.toFixed(2)} m above the ground, expected a 1.5 m vehicle`);
      await shot('3d-drawn');
      // (b) ] three times: +15°, three versions.
      for (let i = 0; i < 3; i++) await page.keyboard.press(']');
      const turned3d = await until('the turn to be saved', async () => {
        const s = (await samplesOf(imageId)).find((x) => x.id === drawn3d.id);
        return s && s.version >= drawn3d.version + 3 ? s : null;
      });
      await waitQueueIdle();
      const dTurn = angleDiff(turned3d.shape.heading_deg, dShape.heading_deg);
      check(Math.abs(dTurn - 15) <= 0.5, `] ×3 turned the box by ${dTurn.toFixed(2)}°, expected +15°`);
      check(Math.abs(turned3d.shape.cx - dShape.cx) < 0.01 && Math.abs(turned3d.shape.length - dShape.length) < 0.01, 'turning moved or resized the box');
      log(`  ] ×3: heading ${dShape.heading_deg}° → ${turned3d.shape.heading_deg}°, version ${drawn3d.version} → ${turned3d.version}`);
      // Move: drag the selected box by (12, −8) image pixels on the plane through its middle.
      await page.keyboard.press('v');
      const sel = await until('the turned box to be drawn', async () => {
        const v = await page.evaluate(() => window.kestrel.view3d);
        return v.selected?.id === drawn3d.id && v.tool === 'orbit' ? v.selected : null;
      }, 5000);
      const zMid = (sel.z_lo + sel.z_hi) / 2;
      const [mdx, mdy] = [12, -8];
      const grab = await to3d(turned3d.shape.cx, turned3d.shape.cy, zMid);
      const drop = await to3d(turned3d.shape.cx + mdx, turned3d.shape.cy + mdy, zMid);
      await page.mouse.move(grab[0], grab[1]);
      await page.mouse.down();
      for (let i = 1; i <= 10; i++) await page.mouse.move(grab[0] + ((drop[0] - grab[0]) * i) / 10, grab[1] + ((drop[1] - grab[1]) * i) / 10);
      await page.mouse.up();
      const moved3d = await until('the move to be saved', async () => {
        const s = (await samplesOf(imageId)).find((x) => x.id === drawn3d.id);
        return s && s.version > turned3d.version ? s : null;
      });
      await waitQueueIdle();
      const [gotDx, gotDy] = [moved3d.shape.cx - turned3d.shape.cx, moved3d.shape.cy - turned3d.shape.cy];
      check(Math.abs(gotDx - mdx) < 1.5 && Math.abs(gotDy - mdy) < 1.5, `the drag moved the box by (${gotDx.toFixed(2)}, ${gotDy.toFixed(2)}) px, expected (${mdx}, ${mdy})`);
      check(Math.abs(angleDiff(moved3d.shape.heading_deg, turned3d.shape.heading_deg)) < 0.01, 'the move turned the box');
      check(Math.hypot(...(await to3d(car.cx, car.cy, v0.ground_m)).map((v, i) => v - probe[i])) < 0.01, 'the camera moved while the box was dragged');
      log(`  dragged by (${gotDx.toFixed(2)}, ${gotDy.toFixed(2)}) px, version ${moved3d.version}`);
      // Ctrl+Z undoes the move (the map's undo stack).
      await page.keyboard.press('Control+z');
      const undone3d = await until('the move to be undone', async () => {
        const s = (await samplesOf(imageId)).find((x) => x.id === drawn3d.id);
        return s && s.version > moved3d.version ? s : null;
      });
      await waitQueueIdle();
      check(Math.abs(undone3d.shape.cx - turned3d.shape.cx) < 0.01 && Math.abs(undone3d.shape.cy - turned3d.shape.cy) < 0.01
        && Math.abs(angleDiff(undone3d.shape.heading_deg, turned3d.shape.heading_deg)) < 0.01,
        `Ctrl+Z left the box at (${undone3d.shape.cx}, ${undone3d.shape.cy}) ${undone3d.shape.heading_deg}°, expected (${turned3d.shape.cx}, ${turned3d.shape.cy}) ${turned3d.shape.heading_deg}°`);
      // The map has the same sample as the API.
      const onMap = await page.evaluate((id) => window.kestrel.samplesLayer.getSource().getFeatureById(id)?.get('sample'), drawn3d.id);
      check(onMap && onMap.version === undone3d.version && onMap.shape.cx === undone3d.shape.cx, `the map's sample #${drawn3d.id} is ${JSON.stringify(onMap)}, the API's version ${undone3d.version}`);
      log(`  Ctrl+Z: back at (${undone3d.shape.cx}, ${undone3d.shape.cy}), version ${undone3d.version}; the map agrees`);
      await page.waitForFunction(() => window.kestrel.view3d.ready, null, { timeout: 10000 });
      await shot('3d-adjusted');
      await page.keyboard.press('Escape');
      await until('the map to come back', () => page.evaluate(() => !window.kestrel.view3d.open), 5000);
      await page.evaluate(() => new Promise((r) => { window.kestrel.map.once('rendercomplete', () => r()); window.kestrel.map.render(); }));
    }

    // 11. Height layer (nDSM from the point cloud) over the imagery: H shows it, H hides it.
    log('step 11: height layer over the image');
    const layers = imgNow.layers ?? [];
    if (!layers.length) {
      log(`  image ${imageId} has no height layer (layers: ${JSON.stringify(imgNow.layers)}): step skipped`);
    } else {
      const info = layers[0];
      const layerTiles = () => tileResponses.filter(([u]) => u.includes(`/layers/${info.name}/tiles/`));
      const hl0 = await page.evaluate(() => window.kestrel.heightLayer);
      check(hl0.name === info.name && hl0.visible === false, `before H the height layer is ${JSON.stringify(hl0)}, expected "${info.name}" hidden`);
      check(await page.isVisible(`[data-testid=layer-${info.name}]`), `the Display panel has no checkbox for the layer "${info.name}"`);
      const legend = await page.textContent(`[data-testid=layer-${info.name}-legend]`);
      check(legend.includes(String(info.max)), `the legend "${legend}" does not give the layer's max ${info.max}`);
      await page.locator('body').focus().catch(() => {});
      await page.keyboard.press('h');
      const hl = await until('the height layer tiles to load', async () => {
        const v = await page.evaluate(() => window.kestrel.heightLayer);
        if (v.tilesFailed) throw new Fail(`${v.tilesFailed} height tiles failed`);
        return v.visible && v.tilesLoaded > 0 && v.tilesPending === 0 ? v : null;
      }, 30000, 250);
      await page.evaluate(() => new Promise((r) => { window.kestrel.map.once('rendercomplete', () => r()); window.kestrel.map.render(); }));
      const badLayer = layerTiles().filter(([, st]) => st !== 200);
      check(layerTiles().length > 0, 'no height layer tile was requested');
      check(badLayer.length === 0, `height tile requests failed: ${badLayer.slice(0, 3).map(([u, st]) => `${st} ${u.replace(BASE, '')}`).join(', ')}`);
      check(await page.isChecked(`[data-testid=layer-${info.name}]`), 'H showed the height layer but its checkbox is not ticked');
      // The layer sits above the imagery and below the detections and samples.
      const z = await page.evaluate(() => {
        const ls = window.kestrel.map.getLayers().getArray();
        const hz = ls.find((l) => String(l.get('name')).startsWith('height:')).getZIndex();
        return { height: hz, samples: window.kestrel.samplesLayer.getZIndex(), detections: window.kestrel.detectionsLayer.getZIndex() };
      });
      check(z.height > 0 && z.height < z.detections && z.height < z.samples, `height layer z-order is wrong: ${JSON.stringify(z)}`);
      log(`  "${info.title}" (max ${info.max} ${info.unit}): ${hl.tilesLoaded} tiles loaded, opacity ${hl.opacity}; ${layerTiles().length} tile responses, all 200`);
      await shot('height');
      await page.keyboard.press('h');
      const off = await page.evaluate(() => window.kestrel.heightLayer);
      check(off.visible === false, `the second H left the height layer ${JSON.stringify(off)}`);
      check(!(await page.isChecked(`[data-testid=layer-${info.name}]`)), 'the height layer is hidden but its checkbox is still ticked');
      log('  H again: the height layer is hidden');
    }

    check(pageErrors.length === 0, `uncaught errors in the page: ${pageErrors.join(' | ')}`);
    log(`PASS: all steps passed in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
}

try {
  await run();
  await browser.close().catch(() => {});
  console.log('1 passed, 0 failed');
  process.exit(0);
} catch (e) {
  const reason = e instanceof Fail ? e.message : (e && e.stack) || String(e);
  console.error(`FAIL: ${reason}`);
  if (toasts.length) console.error(`toasts seen: ${toasts.join(' | ')}`);
  if (page) {
    try {
      const file = join(SHOTS, 'failure.png');
      await page.screenshot({ path: file });
      console.error(`failure screenshot: ${file}`);
    } catch { /* the page may be gone */ }
  }
  await browser?.close().catch(() => {});
  console.log('0 passed, 1 failed');
  process.exit(1);
}
