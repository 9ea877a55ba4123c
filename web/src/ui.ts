// Small DOM helpers: element lookup, element building and toasts.

export function $(id: string): HTMLElement {
  const e = document.getElementById(id);
  if (!e) throw new Error('missing element #' + id);
  return e;
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number | boolean | null | undefined> = {},
  ...children: (Node | string | null | undefined | false)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = String(v);
    else if (k === 'text') e.textContent = String(v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return e;
}

export function toast(message: string, kind: 'error' | 'info' | 'ok' = 'error', ms = 6000): void {
  const host = document.getElementById('toasts');
  if (!host) return;
  const t = h('div', { class: 'toast ' + kind, role: kind === 'error' ? 'alert' : 'status', 'data-testid': 'toast-' + kind }, message);
  t.addEventListener('click', () => t.remove());
  host.appendChild(t);
  while (host.children.length > 5) host.firstElementChild?.remove();
  setTimeout(() => t.classList.add('fade'), ms - 400);
  setTimeout(() => t.remove(), ms);
}

export function fmtNum(v: number | null | undefined, digits = 2): string {
  return typeof v === 'number' && isFinite(v) ? v.toFixed(digits) : '–';
}

export function isTyping(e: KeyboardEvent): boolean {
  const t = e.target as HTMLElement | null;
  if (!t) return false;
  const tag = t.tagName;
  if (tag === 'TEXTAREA' || tag === 'SELECT' || t.isContentEditable) return true;
  if (tag === 'INPUT') {
    const type = (t as HTMLInputElement).type;
    return !['checkbox', 'radio', 'range', 'button', 'submit', 'color'].includes(type);
  }
  return false;
}
