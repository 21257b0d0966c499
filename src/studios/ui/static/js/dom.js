// Building the page: elements from plain values (text is always text, never parsed as HTML),
// and the small shared pieces every view uses (state badges, times, notices).

const PROPS = new Set(['value', 'checked', 'selected', 'indeterminate']);

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  const later = [];
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (PROPS.has(k)) later.push([k, v]);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  for (const [k, v] of later) el[k] = v;
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function parseTime(civis) {
  if (!civis) return null;
  const t = Date.parse(civis);
  return Number.isNaN(t) ? null : new Date(t);
}

export function ago(civis) {
  const t = parseTime(civis);
  if (!t) return '';
  const seconds = Math.max(0, Math.round((Date.now() - t.getTime()) / 1000));
  if (seconds < 60) return seconds < 5 ? 'just now' : `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export function when(civis) {
  const t = parseTime(civis);
  return t ? h('time', { datetime: civis, title: t.toLocaleString() }, ago(civis)) : '';
}

let lastClock = ['', ''];
export function clock(civis) {
  // Local wall-clock time with milliseconds; lines come in runs of one time, so remember the last.
  if (civis === lastClock[0]) return lastClock[1];
  const t = parseTime(civis);
  if (!t) return '';
  const p = (n, w = 2) => String(n).padStart(w, '0');
  lastClock = [civis, `${p(t.getHours())}:${p(t.getMinutes())}:${p(t.getSeconds())}.${p(t.getMilliseconds(), 3)}`];
  return lastClock[1];
}

export function badge(state) {
  const known = ['pending', 'running', 'sleeping', 'terminated'].includes(state) ? state : 'none';
  return h('span', { class: `badge badge-${known}`, 'data-state': state || 'none' }, state || 'never deployed');
}

export function notice(kind, message, ...actions) {
  // kind: error | empty | info. Errors are announced (role=alert); the rest are polite.
  return h('div', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, h('p', {}, message), actions.length ? h('p', { class: 'actions' }, actions) : null);
}

export function link(href, text, props = {}) {
  return h('a', { href, ...props }, text);
}

export function button(text, onclick, props = {}) {
  return h('button', { type: 'button', onclick, ...props }, text);
}

export function spinner(label) {
  return h('span', { class: 'spinner', role: 'img', 'aria-label': label || 'in progress' });
}

export function setBusy(btn, busy, busyText) {
  if (busy) {
    btn.dataset.text = btn.textContent;
    btn.disabled = true;
    if (busyText) btn.textContent = busyText;
  } else {
    btn.disabled = false;
    if (btn.dataset.text) btn.textContent = btn.dataset.text;
  }
}

export function mb(value) {
  if (value === null || value === undefined) return '–';
  return value >= 1024 ? `${(value / 1024).toFixed(value % 1024 ? 1 : 0)} GB` : `${Math.round(value)} MB`;
}

export function cpu(millicores) {
  if (millicores === null || millicores === undefined) return '–';
  return millicores >= 1000 ? `${(millicores / 1000).toFixed(millicores % 1000 ? 2 : 0)} cpu` : `${Math.round(millicores)}m cpu`;
}
