// A small SVG chart of training: train/val loss (left axis) and F1 (right axis, 0–1) per epoch.

import type { EpochMetrics } from './types';

const NS = 'http://www.w3.org/2000/svg';

function el(name: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

export function drawChart(host: HTMLElement, epochs: EpochMetrics[], totalEpochs?: number): void {
  host.innerHTML = '';
  const W = 320, H = 190;
  const m = { l: 38, r: 34, t: 12, b: 40 };
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, width: '100%', 'data-testid': 'train-chart-svg' }) as SVGSVGElement;
  host.appendChild(svg);
  const pw = W - m.l - m.r, ph = H - m.t - m.b;
  const n = Math.max(totalEpochs ?? 0, epochs.length ? epochs[epochs.length - 1].epoch : 0, 2);
  const losses = epochs.flatMap((e) => [e.train_loss, e.val_loss]).filter((v): v is number => typeof v === 'number' && isFinite(v));
  const maxLoss = niceMax(losses.length ? Math.max(...losses) : 1);
  const x = (ep: number) => m.l + ((ep - 1) / Math.max(n - 1, 1)) * pw;
  const yl = (v: number) => m.t + ph - (v / maxLoss) * ph;
  const yf = (v: number) => m.t + ph - v * ph;

  svg.appendChild(el('rect', { x: m.l, y: m.t, width: pw, height: ph, class: 'plot-bg' }));
  for (let i = 0; i <= 4; i++) {
    const y = m.t + (ph * i) / 4;
    svg.appendChild(el('line', { x1: m.l, x2: m.l + pw, y1: y, y2: y, class: 'grid' }));
    svg.appendChild(el('text', { x: m.l - 4, y: y + 3, class: 'tick', 'text-anchor': 'end' }, fmt(maxLoss * (1 - i / 4))));
    svg.appendChild(el('text', { x: m.l + pw + 4, y: y + 3, class: 'tick f1' }, (1 - i / 4).toFixed(2)));
  }
  const step = Math.max(1, Math.ceil(n / 8));
  for (let ep = 1; ep <= n; ep += step) {
    svg.appendChild(el('text', { x: x(ep), y: m.t + ph + 13, class: 'tick', 'text-anchor': 'middle' }, String(ep)));
  }
  svg.appendChild(el('text', { x: m.l + pw / 2, y: m.t + ph + 25, class: 'axis-label', 'text-anchor': 'middle' }, 'epoch'));

  const series: { key: keyof EpochMetrics; cls: string; y: (v: number) => number; label: string }[] = [
    { key: 'train_loss', cls: 's-train', y: yl, label: 'train loss' },
    { key: 'val_loss', cls: 's-val', y: yl, label: 'val loss' },
    { key: 'f1', cls: 's-f1', y: yf, label: 'F1' },
  ];
  for (const s of series) {
    const pts = epochs
      .filter((e) => typeof e[s.key] === 'number' && isFinite(e[s.key] as number))
      .map((e) => [x(e.epoch), s.y(e[s.key] as number)] as const);
    if (pts.length > 1) svg.appendChild(el('polyline', { points: pts.map((p) => p.join(',')).join(' '), class: 'series ' + s.cls }));
    for (const p of pts) svg.appendChild(el('circle', { cx: p[0], cy: p[1], r: 2.2, class: 'dot ' + s.cls }));
  }
  let lx = m.l;
  for (const s of series) {
    svg.appendChild(el('line', { x1: lx, x2: lx + 14, y1: H - 6, y2: H - 6, class: 'series ' + s.cls }));
    svg.appendChild(el('text', { x: lx + 18, y: H - 3, class: 'legend' }, s.label));
    lx += 28 + s.label.length * 5.6;
  }
  if (!epochs.length) {
    svg.appendChild(el('text', { x: m.l + pw / 2, y: m.t + ph / 2, class: 'axis-label', 'text-anchor': 'middle' }, 'waiting for the first epoch…'));
  }
}

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const k of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (k * p >= v) return k * p;
  return 10 * p;
}

function fmt(v: number): string {
  return v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2);
}
