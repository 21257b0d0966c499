// A deployment's log tail: stdout, stderr and the service's own (system) lines told apart
// by colour and a tag, shown or hidden by kind, filtered by text, following the end, and
// downloadable whole.

import { clock, h, replace } from '../dom.js';

const MAX_LINES = 20000;
const KINDS = [['stdout', 'out', 'stdout'], ['stderr', 'err', 'stderr'], ['system', 'sys', 'system']];
const TAGS = Object.fromEntries(KINDS.map(([kind, tag]) => [kind, tag]));

function kindOf(line) { return line.source === 'system' ? 'system' : (line.stream === 'stderr' ? 'stderr' : 'stdout'); }

export function logView({ download }) {
  const lines = h('div', { class: 'log', id: 'log', role: 'log', tabindex: '0', 'aria-label': 'Log lines, newest last' });
  const emptyNote = h('p', { class: 'muted log-empty' }, 'No log lines yet.');
  const count = h('span', { class: 'muted', id: 'log-count', 'aria-live': 'off' });
  const filter = h('input', { type: 'search', id: 'log-filter', placeholder: 'Text to look for', autocomplete: 'off' });
  const follow = h('input', { type: 'checkbox', id: 'log-follow', checked: true });
  const downloadButton = h('button', { type: 'button', id: 'log-download' }, 'Download');
  const toggles = KINDS.map(([kind, , label]) => {
    const box = h('input', { type: 'checkbox', id: `show-${kind}`, checked: true });
    box.addEventListener('change', () => { lines.classList.toggle(`hide-${kind}`, !box.checked); refreshCount(); });
    return h('label', { class: `check kind-${kind}` }, box, ` ${label}`);
  });
  let total = 0;
  let needle = '';

  function matches(el) { return !needle || el.textContent.toLowerCase().includes(needle); }

  function refreshCount() {
    let shown = 0;
    for (const el of lines.children) {
      if (!el.hidden && !lines.classList.contains(`hide-${el.dataset.kind}`)) shown += 1;
    }
    count.textContent = shown === total ? `${total} line${total === 1 ? '' : 's'}` : `${shown} of ${total} lines shown`;
  }

  let typing = null;
  filter.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      needle = filter.value.trim().toLowerCase();
      for (const el of lines.children) el.hidden = !matches(el);
      refreshCount();
    }, 120);
  });
  follow.addEventListener('change', () => { if (follow.checked) lines.scrollTop = lines.scrollHeight; });
  downloadButton.addEventListener('click', async () => {
    downloadButton.disabled = true;
    const was = downloadButton.textContent;
    downloadButton.textContent = 'Preparing…';
    try { await download(); } finally { downloadButton.disabled = false; downloadButton.textContent = was; }
  });

  function add(batch) {
    if (!batch.length) return;
    // The hot path (10,000 lines at once): one element and one text node per line; the time
    // and the kind are drawn from data attributes by CSS (and left out of a copy).
    const fragment = document.createDocumentFragment();
    for (const line of batch) {
      const kind = kindOf(line);
      const el = document.createElement('div');
      el.className = `ln ${kind}`;
      el.dataset.kind = kind;
      el.dataset.k = TAGS[kind];
      el.dataset.p = `${clock(line.createdAt)} ${TAGS[kind]}`;
      el.textContent = line.message;
      if (needle && !matches(el)) el.hidden = true;
      fragment.append(el);
    }
    const atEnd = lines.scrollHeight - lines.scrollTop - lines.clientHeight < 40;
    lines.append(fragment);
    total += batch.length;
    while (lines.childElementCount > MAX_LINES) { lines.firstElementChild.remove(); total -= 1; }
    emptyNote.hidden = total > 0;
    refreshCount();
    if (follow.checked || atEnd) lines.scrollTop = lines.scrollHeight;
  }

  const el = h('div', { class: 'logview' },
    h('div', { class: 'toolbar' },
      h('div', { class: 'field inline grow' }, h('label', { for: 'log-filter' }, 'Filter'), filter),
      h('fieldset', { class: 'kinds' }, h('legend', { class: 'visually-hidden' }, 'Show lines from'), toggles),
      h('label', { class: 'check' }, follow, ' Follow the end'),
      downloadButton),
    emptyNote, lines, h('p', {}, count));
  refreshCount();
  return { el, add, clear() { replace(lines); total = 0; refreshCount(); } };
}

export function asText(allLines) {
  return allLines.map((l) => `${l.createdAt}\t${kindOf(l)}\t${l.message}`).join('\n') + (allLines.length ? '\n' : '');
}
