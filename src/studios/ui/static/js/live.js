// Live data from the service's event streams (docs/streams.md), read with EventSource: the
// session cookie authenticates them as it does the API. Nothing polls while a stream is open.
//
//   follow(studioId, deploymentId, { onDeployment, onUsage, onLines, onMode, onError })
//     -> { stop(), poke() }
//   a deployment: its state (the `events` stream) and its log (the `logs/stream`, by line id).
//   If a stream cannot be opened, or keeps failing, the page falls back to polling (poll.js)
//   and onMode('polling') says so; onMode('reconnecting') while a dropped stream comes back,
//   onMode('live') once it has, onMode('ended') when the deployment ended and its log is whole.
//
//   watchDeployments({ onDeployment, onGap, onMode }) -> stop(): every change of a deployment
//   the caller can see (`/deployments/events`), for the lists; onGap() when changes may have
//   been missed (the stream came back after a drop or a time in the background).
//
// Streams of a tab left in the background are closed after HIDDEN_MS and opened again when it
// is shown (the log from the last line it had): a browser opens only a few connections to one
// server, and every open tab would otherwise hold its streams.

import { LogCursor, poll } from './poll.js';

const TAIL = 10000;
const FLUSH_MS = 16;
const HIDDEN_MS = 10000;
const GIVE_UP_MS = 20000; // a stream failing this long without opening again: poll instead
const KEEP = 2000; // newest lines remembered, to hand over to polling without repeats

function data(event) {
  try { return JSON.parse(event.data); } catch (e) { return null; }
}

// One EventSource that tells apart a drop it will come back from, a failure it will not, and
// the server's own `error` event (access lost: the stream is over).
function open(url, handlers, { onOpen, onDrop, onFail, onDenied }) {
  const es = new EventSource(url);
  for (const [name, fn] of Object.entries(handlers)) es.addEventListener(name, (e) => fn(data(e), e));
  es.addEventListener('open', onOpen);
  es.addEventListener('error', (e) => {
    if (e instanceof MessageEvent) { es.close(); onDenied(data(e) || {}); return; }
    if (es.readyState === EventSource.CLOSED) onFail(); else onDrop();
  });
  return es;
}

function whenHidden(pause, resume) {
  let timer = null;
  const changed = () => {
    if (document.hidden) { if (!timer) timer = setTimeout(() => { timer = null; pause(); }, HIDDEN_MS); return; }
    if (timer) { clearTimeout(timer); timer = null; } else resume();
  };
  document.addEventListener('visibilitychange', changed);
  return () => { if (timer) clearTimeout(timer); document.removeEventListener('visibilitychange', changed); };
}

export function follow(studioId, deploymentId, h, { tail = TAIL } = {}) {
  const base = `/studios/${studioId}/deployments/${deploymentId}`;
  let depStream = null;
  let logStream = null;
  let polling = null;
  let stopped = false;
  let paused = false;
  let depEnded = false; // terminated: the state will not change again
  let logEnded = false; // released: every line was sent
  let lastId = null;
  let caughtUp = false;
  let backlog = [];
  let pending = [];
  let flushTimer = null;
  let recent = [];
  const live = { dep: false, log: false };
  const failingSince = { dep: null, log: null };

  function remember(lines) {
    recent = recent.concat(lines);
    if (recent.length > KEEP * 2) recent = recent.slice(-KEEP);
  }

  function flush() {
    flushTimer = null;
    if (!pending.length) return;
    const lines = pending;
    pending = [];
    remember(lines);
    h.onLines(lines);
  }

  function mode() {
    if (polling || stopped) return;
    const wanted = [!depEnded && 'dep', !logEnded && 'log'].filter(Boolean);
    if (!wanted.length) h.onMode('ended');
    else h.onMode(wanted.every((k) => live[k]) ? 'live' : 'reconnecting');
  }

  const callbacks = (which) => ({
    onOpen: () => { failingSince[which] = null; live[which] = true; mode(); },
    onDrop: () => {
      live[which] = false;
      if (failingSince[which] === null) failingSince[which] = Date.now();
      if (Date.now() - failingSince[which] >= GIVE_UP_MS) fallBack(); else mode();
    },
    onFail: () => fallBack(),
    onDenied: (body) => { close(); stopped = true; h.onError({ status: body.code || 0, message: body.errorDescription || 'The live view ended.' }); },
  });

  function openDeployment() {
    depStream = open(`${base}/events`, {
      deployment: (dep) => {
        if (!dep) return;
        h.onDeployment(dep);
        if (dep.state === 'terminated') { depEnded = true; depStream.close(); depStream = null; mode(); }
      },
      usage: (usage) => { if (usage) h.onUsage(usage); },
    }, callbacks('dep'));
  }

  function openLog() {
    const from = lastId !== null ? `after=${lastId}` : `tail=${tail}`;
    const take = (lines) => {
      if (!lines.length) return;
      lastId = lines[lines.length - 1].id;
      if (!caughtUp) { for (const line of lines) backlog.push(line); return; }
      for (const line of lines) pending.push(line);
      if (!flushTimer) flushTimer = setTimeout(flush, FLUSH_MS);
    };
    // batch: what the service reads at once (the backlog: 1000 lines a read) comes as one event
    logStream = open(`${base}/logs/stream?batch=true&${from}`, {
      log: (line) => { if (line) take([line]); },
      logs: (body) => { if (body && Array.isArray(body.lines)) take(body.lines); },
      'caught-up': () => {
        if (caughtUp) return;
        caughtUp = true;
        const lines = backlog;
        backlog = [];
        performance.mark('studios:log-caught-up', { detail: lines.length }); // for bench/ui_bench.py
        remember(lines.slice(-KEEP));
        h.onLines(lines); // the backlog as one batch: the log view draws its newest lines first
      },
      end: () => { flush(); logEnded = true; logStream.close(); logStream = null; mode(); },
    }, callbacks('log'));
  }

  function close() {
    if (depStream) depStream.close();
    if (logStream) logStream.close();
    depStream = null;
    logStream = null;
    live.dep = false;
    live.log = false;
  }

  function fallBack() {
    if (polling || stopped) return;
    close();
    if (!caughtUp) { caughtUp = true; pending = backlog.concat(pending); backlog = []; }
    flush();
    const cursor = new LogCursor();
    cursor.take(recent); // what is shown already is not shown again
    h.onMode('polling');
    polling = poll(studioId, deploymentId, {
      onDeployment: h.onDeployment,
      onLines: (lines) => { remember(lines); h.onLines(lines); },
      onError: h.onError,
    }, { cursor });
  }

  const unwatch = whenHidden(
    () => { if (!polling && !stopped) { paused = true; close(); } },
    () => {
      if (!paused || stopped) return;
      paused = false;
      if (!depEnded) openDeployment();
      if (!logEnded) openLog();
    },
  );

  openDeployment();
  openLog();
  return {
    stop() {
      stopped = true;
      unwatch();
      close();
      if (flushTimer) clearTimeout(flushTimer);
      if (polling) polling.stop();
    },
    // Something changed on our side (stop, wake): the streams tell; polling looks now.
    poke() { if (polling) polling.poke(); },
  };
}

export function watchDeployments({ onDeployment, onGap = () => {}, onMode = () => {} }) {
  let es = null;
  let stopped = false;
  let failingSince = null;
  let opened = 0;
  const start = () => {
    es = open('/deployments/events', { deployment: (dep) => { if (dep) onDeployment(dep); } }, {
      // Changes made while it was closed are not replayed: the page reads its list again.
      onOpen: () => { failingSince = null; opened += 1; if (opened > 1) onGap(); onMode('live'); },
      onDrop: () => {
        if (failingSince === null) failingSince = Date.now();
        if (Date.now() - failingSince >= GIVE_UP_MS) { es.close(); onMode('off'); } else onMode('reconnecting');
      },
      onFail: () => onMode('off'),
      onDenied: () => onMode('off'),
    });
  };
  const unwatch = whenHidden(() => { if (es) es.close(); es = null; }, () => { if (!es && !stopped) start(); });
  start();
  return () => { stopped = true; unwatch(); if (es) es.close(); };
}
