// A deployment's log tail: stdout, stderr and the service's own (system) lines told apart
// by colour and a tag, shown or hidden by kind, filtered by text, following the end, and
// downloadable whole.
//
// Lines live in blocks of BLOCK lines: a block off screen is skipped by layout and paint
// (content-visibility), and the browser tracks a hundred blocks rather than 20,000 lines, so a
// line added to a long log costs the page little (a frame, not a full pass over every line).

import { clock, h, replace } from '../dom.js';

const MAX_LINES = 20000;
const FIRST_DRAW = 500; // lines drawn at once from a big batch; the rest in chunks of CHUNK
const CHUNK = 2500;
const BLOCK = 200;
const LINE_EM = 1.45; // the log's line height, for a block's size before it is first drawn
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
  const each = () => lines.querySelectorAll('.ln');

  function block(...els) {
    const b = document.createElement('div');
    b.className = 'blk';
    b.append(...els);
    return b;
  }

  function sized(b) {
    b.style.containIntrinsicSize = `auto ${(b.childElementCount * LINE_EM).toFixed(2)}em`;
    return b;
  }

  function refreshCount() {
    let shown = total;
    if (needle || KINDS.some(([kind]) => lines.classList.contains(`hide-${kind}`))) {
      shown = 0;
      for (const el of each()) {
        if (!el.hidden && !lines.classList.contains(`hide-${el.dataset.kind}`)) shown += 1;
      }
    }
    count.textContent = shown === total ? `${total} line${total === 1 ? '' : 's'}` : `${shown} of ${total} lines shown`;
  }

  let typing = null;
  filter.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      needle = filter.value.trim().toLowerCase();
      for (const el of each()) el.hidden = !matches(el);
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

  function draw(batch) {
    // The hot path: one element and one text node per line; the time and the kind are drawn
    // from data attributes by CSS (and left out of a copy). Returns the line elements.
    const out = [];
    for (const line of batch) {
      const kind = kindOf(line);
      const el = document.createElement('div');
      el.className = `ln ${kind}`;
      el.dataset.kind = kind;
      el.dataset.k = TAGS[kind];
      el.dataset.p = `${clock(line.createdAt)} ${TAGS[kind]}`;
      el.textContent = line.message;
      if (needle && !matches(el)) el.hidden = true;
      out.push(el);
    }
    return out;
  }

  function appendLines(els) {
    // Into the last block while it has room, then new blocks.
    let last = lines.lastElementChild;
    let at = 0;
    if (last && last.childElementCount < BLOCK) {
      at = BLOCK - last.childElementCount;
      last.append(...els.slice(0, at));
      sized(last);
    }
    const fragment = document.createDocumentFragment();
    for (; at < els.length; at += BLOCK) fragment.append(sized(block(...els.slice(at, at + BLOCK))));
    lines.append(fragment);
  }

  function prependLines(els) {
    const fragment = document.createDocumentFragment();
    for (let at = 0; at < els.length; at += BLOCK) fragment.append(sized(block(...els.slice(at, at + BLOCK))));
    lines.prepend(fragment);
  }

  function trim() {
    // The oldest lines go past MAX_LINES: whole blocks when they can.
    while (total > MAX_LINES && lines.firstElementChild) {
      const first = lines.firstElementChild;
      const excess = total - MAX_LINES;
      if (first.childElementCount <= excess) { total -= first.childElementCount; first.remove(); continue; }
      for (let i = 0; i < excess; i += 1) first.firstElementChild.remove();
      total -= excess;
      sized(first);
    }
  }

  function settle(atEnd, before) {
    emptyNote.hidden = total > 0;
    refreshCount();
    if (atEnd) lines.scrollTop = lines.scrollHeight;
    else if (before !== undefined) lines.scrollTop += lines.scrollHeight - before; // older lines came in above
    // For bench/ui_bench.py: when this many lines are in the page (after the next frame).
    const count = total;
    requestAnimationFrame(() => setTimeout(() => performance.mark('studios:log-lines', { detail: count }), 0));
  }

  let backlog = null;
  function add(batch) {
    if (!batch.length) return;
    // A big first batch (a 10,000-line tail) shows its newest lines at once; the older ones
    // follow in chunks, above them, without holding up the page.
    let now = batch;
    if (batch.length > FIRST_DRAW) {
      now = batch.slice(-FIRST_DRAW);
      const room = MAX_LINES - total - now.length;
      if (room > 0) backlog = batch.slice(Math.max(0, batch.length - FIRST_DRAW - room), -FIRST_DRAW);
    }
    const atEnd = follow.checked || lines.scrollHeight - lines.scrollTop - lines.clientHeight < 40;
    appendLines(draw(now));
    total += now.length;
    trim();
    settle(atEnd);
    if (backlog && now !== batch) setTimeout(older, 0);
  }

  function older() {
    if (!backlog || !backlog.length) { backlog = null; return; }
    const chunk = backlog.splice(Math.max(0, backlog.length - CHUNK));
    const atEnd = follow.checked || lines.scrollHeight - lines.scrollTop - lines.clientHeight < 40;
    const before = atEnd ? 0 : lines.scrollHeight;
    prependLines(draw(chunk));
    total += chunk.length;
    settle(atEnd, before);
    if (backlog.length) setTimeout(older, 0); else backlog = null;
  }

  const el = h('div', { class: 'logview' },
    h('div', { class: 'toolbar' },
      h('div', { class: 'field inline grow' }, h('label', { for: 'log-filter' }, 'Filter'), filter),
      h('fieldset', { class: 'kinds' }, h('legend', { class: 'visually-hidden' }, 'Show lines from'), toggles),
      h('label', { class: 'check' }, follow, ' Follow the end'),
      downloadButton),
    emptyNote, lines, h('p', {}, count));
  refreshCount();
  return { el, add };
}

export function asText(allLines) {
  return allLines.map((l) => `${l.createdAt}\t${kindOf(l)}\t${l.message}`).join('\n') + (allLines.length ? '\n' : '');
}
