// Form fields with a label, help and a place for the API's message, and the mapping from an
// error description (`gitRepoUrl: ...`, `requiredResources.memory 9000 MB exceeds ...`,
// `params[1].name: ...`, several joined by "; ") to the fields it names.

import { h, replace } from '../dom.js';

export class FieldSet {
  constructor() { this.fields = new Map(); }

  // key: the API's name of the field (e.g. "requiredResources.memory").
  // summaryLabel: how the error summary names it when the label alone is ambiguous.
  field(key, id, label, control, help, summaryLabel) {
    const error = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
    const helpEl = help ? h('p', { class: 'help', id: `${id}-help` }, help) : null;
    control.id = id;
    control.setAttribute('aria-describedby', [helpEl ? `${id}-help` : '', `${id}-error`].filter(Boolean).join(' '));
    const wrap = h('div', { class: 'field', 'data-field': key }, h('label', { for: id }, label), control, helpEl, error);
    this.fields.set(key, { control, error, wrap, label: summaryLabel || label });
    return wrap;
  }

  // A place for messages about a group (e.g. "params") without one control.
  group(key, element, label) {
    const error = h('p', { class: 'field-error', id: `${key}-group-error`, hidden: true });
    element.append(error);
    this.fields.set(key, { control: element, error, wrap: element, label });
    return element;
  }

  forget(prefix) {
    for (const key of [...this.fields.keys()]) if (key.startsWith(prefix)) this.fields.delete(key);
  }

  clear() {
    for (const { control, error, wrap } of this.fields.values()) {
      error.hidden = true;
      replace(error);
      control.removeAttribute('aria-invalid');
      wrap.classList.remove('invalid');
    }
  }

  // Show each message at its field; returns [{key, label, message, id}] for the summary
  // (key null: the message names no field of this form).
  show(description) {
    this.clear();
    const shown = [];
    for (const part of splitMessages(description)) {
      const key = this.keyFor(part);
      const entry = key ? this.fields.get(key) : null;
      if (!entry) { shown.push({ key: null, message: part }); continue; }
      const message = part.startsWith(`${leading(part)}:`) ? part.slice(leading(part).length + 1).trim() : part;
      entry.error.hidden = false;
      replace(entry.error, message);
      entry.wrap.classList.add('invalid');
      entry.control.setAttribute('aria-invalid', 'true');
      shown.push({ key, label: entry.label, message, id: entry.control.id || entry.error.id });
    }
    return shown;
  }

  keyFor(message) {
    let key = leading(message);
    if (!key) return null;
    while (key) {
      if (this.fields.has(key)) return key;
      // params[1] (a whole parameter, e.g. its value does not fit its type): the value field
      if (/^params\[\d+\]$/.test(key) && this.fields.has(`${key}.value`)) return `${key}.value`;
      const cut = Math.max(key.lastIndexOf('.'), key.lastIndexOf('['));
      key = cut > 0 ? key.slice(0, cut) : '';
    }
    return null;
  }
}

function leading(message) {
  const m = message.match(/^([A-Za-z][A-Za-z0-9]*(?:\[\d+\])?(?:\.[A-Za-z][A-Za-z0-9]*(?:\[\d+\])?)*)(?=[:\s]|$)/);
  return m ? m[1] : '';
}

export function splitMessages(description) {
  return String(description || '').split(/;\s+(?=[A-Za-z][A-Za-z0-9.[\]]*[:\s])/).map((p) => p.trim()).filter(Boolean);
}

export function summary(shown, intro) {
  return h('div', { class: 'notice notice-error summary', role: 'alert', tabindex: '-1', id: 'error-summary' },
    h('p', {}, intro),
    h('ul', {}, shown.map((item) => h('li', {},
      item.key ? h('a', { href: `#${item.id}`, onclick: (e) => { e.preventDefault(); const el = document.getElementById(item.id); if (el) el.focus(); } }, `${item.label}: ${item.message}`) : item.message))));
}
