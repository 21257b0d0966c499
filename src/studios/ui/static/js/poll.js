// The deployment page's fallback when its event streams fail (live.js): polling the REST API
// every second, the deployment and its new log lines (see LogCursor), behind the same
// callbacks as the streams: poll(studioId, deploymentId, { onDeployment, onLines, onError },
// { cursor }) -> { stop(), poke() }. Also the paging the log's Download uses.

import { get } from './api.js';

export const POLL_MS = 1000;
const PAGE = 10000;

// Lines are not stored in time order (an app's lines are stored in batches after they were
// read; the service's own lines at once), so a line can appear with a time before the newest
// one seen. Polling by time, each request starts OVERLAP_MS before the newest time seen and
// skips the lines already handed over, counted by (time, stream, source, message). (The log
// stream follows by line id and needs none of this.)
const OVERLAP_MS = 5000;

export class LogCursor {
  constructor() { this.newest = null; this.seen = new Map(); }

  params() { return this.newest ? { start_at: new Date(Date.parse(this.newest) - OVERLAP_MS).toISOString() } : {}; }

  take(lines) {
    const fresh = [];
    const counts = new Map();
    for (const line of lines) {
      const key = `${line.createdAt}\u0000${line.stream}\u0000${line.source}\u0000${line.message}`;
      const n = (counts.get(key) || 0) + 1;
      counts.set(key, n);
      if (n > (this.seen.get(key) || 0)) { this.seen.set(key, n); fresh.push(line); }
      if (this.newest === null || line.createdAt > this.newest) this.newest = line.createdAt;
    }
    if (this.seen.size > 1000) {
      const oldest = new Date(Date.parse(this.newest) - 2 * OVERLAP_MS).toISOString();
      for (const key of this.seen.keys()) if (key.split('\u0000', 1)[0] < oldest) this.seen.delete(key);
    }
    return fresh;
  }
}

// New lines: the tail on the first call, then from the cursor; a full page goes on from
// where it ended. `start` overrides where the first request starts.
export async function newLines(base, cursor, start) {
  if (cursor.newest === null && start === undefined) return cursor.take(await get(`${base}/logs`, { limit: PAGE }));
  const all = [];
  let params = start === undefined ? cursor.params() : { start_at: start };
  for (let round = 0; round < 1000; round += 1) {
    const page = await get(`${base}/logs`, { limit: PAGE, ...params });
    all.push(...cursor.take(page));
    if (page.length < PAGE || page[0].createdAt === page[page.length - 1].createdAt) break;
    params = { start_at: page[page.length - 1].createdAt };
  }
  return all;
}

export function poll(studioId, deploymentId, { onDeployment, onLines, onError }, { interval = POLL_MS, cursor = new LogCursor() } = {}) {
  const base = `/studios/${studioId}/deployments/${deploymentId}`;
  let timer = null;
  let running = false;
  let stopped = false;
  let ended = false;

  async function round() {
    timer = null;
    if (running || stopped) return;
    running = true;
    try {
      const [dep, lines] = await Promise.all([get(base), newLines(base, cursor)]);
      // Every line is stored before a deployment terminates: once it has, one more look
      // (after that answer) gets the last of them.
      if (dep.state === 'terminated') lines.push(...await newLines(base, cursor));
      if (stopped) return;
      if (lines.length) onLines(lines);
      onDeployment(dep);
      ended = dep.state === 'terminated';
    } catch (e) {
      if (!stopped) onError(e);
      if (e.status === 404 || e.status === 401) ended = true;
    } finally {
      running = false;
    }
    schedule();
  }

  function schedule() {
    if (stopped || ended || timer) return;
    // A tab in the background asks less often.
    timer = setTimeout(round, document.hidden ? interval * 5 : interval);
  }

  round();
  return {
    stop() { stopped = true; if (timer) clearTimeout(timer); },
    // Something changed on our side (stop, wake): look now, and keep following.
    poke() { ended = false; if (timer) { clearTimeout(timer); timer = null; } round(); },
  };
}
