// Live data for the deployment page. Today it polls the REST API (the deployment, then its
// new log lines from the last line's time, skipping lines at that exact time already seen);
// a server-sent-events source can replace `follow` behind the same callbacks:
//   follow(studioId, deploymentId, { onDeployment, onLines, onError }) -> { stop(), poke() }

import { get } from './api.js';

export const POLL_MS = 1000;
const PAGE = 10000;

export class LogCursor {
  constructor() { this.time = null; this.seenAtTime = 0; }

  params() { return this.time ? { start_at: this.time } : {}; }

  take(lines) {
    let start = 0;
    if (this.time !== null) {
      while (start < lines.length && start < this.seenAtTime && lines[start].createdAt === this.time) start += 1;
    }
    const fresh = lines.slice(start);
    for (const line of fresh) {
      if (line.createdAt === this.time) this.seenAtTime += 1;
      else { this.time = line.createdAt; this.seenAtTime = 1; }
    }
    return fresh;
  }
}

export async function newLines(base, cursor) {
  if (cursor.time === null) return cursor.take(await get(`${base}/logs`, { limit: PAGE }));
  const all = [];
  for (let round = 0; round < 100; round += 1) {
    const page = await get(`${base}/logs`, { limit: PAGE, ...cursor.params() });
    const fresh = cursor.take(page);
    all.push(...fresh);
    if (page.length < PAGE || !fresh.length) break;
  }
  return all;
}

export function follow(studioId, deploymentId, { onDeployment, onLines, onError }, { interval = POLL_MS } = {}) {
  const base = `/studios/${studioId}/deployments/${deploymentId}`;
  const cursor = new LogCursor();
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
