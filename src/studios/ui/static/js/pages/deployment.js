// One deployment, followed live through the service's event streams (live.js; polling only
// if they fail, and the page says so): its state and the steps it went through, peak cpu and
// memory, its log, and what a user does with it: open it, stop it, wake it when it sleeps,
// share its studio.

import { get, del, post } from '../api.js';
import { badge, button, clock, h, link, notice, parseTime, replace, setBusy, spinner } from '../dom.js';
import { follow } from '../live.js';
import { LogCursor, newLines } from '../poll.js';
import { usageChart } from '../parts/chart.js';
import { asText, logView } from '../parts/logs.js';
import { sharesPanel } from '../parts/shares.js';
import { focusHeading } from '../router.js';

const ACTIVE = ['pending', 'running', 'sleeping'];

async function everyLine(base) {
  // From the very first line (without start_at the API answers the tail).
  return newLines(base, new LogCursor(), '1970-01-01T00:00:00.000Z');
}

function save(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/plain;charset=utf-8' }));
  const a = h('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export async function view(main, studioId, deploymentId) {
  replace(main, h('p', { class: 'loading', role: 'status' }, 'Loading…'));
  const base = `/studios/${studioId}/deployments/${deploymentId}`;
  // The streams open at once, beside the page's first reads; what they send before the page
  // is drawn waits for it.
  const early = [];
  let handlers = null;
  const relay = (name) => (...args) => (handlers ? handlers[name](...args) : early.push([name, args]));
  const live = follow(studioId, deploymentId, Object.fromEntries(['onDeployment', 'onUsage', 'onLines', 'onMode', 'onError'].map((n) => [n, relay(n)])));
  let studio;
  let dep;
  try {
    [studio, dep] = await Promise.all([get(`/studios/${studioId}`), get(base)]);
  } catch (e) {
    live.stop();
    replace(main, h('h1', {}, e.status === 404 ? 'Deployment not found' : 'Deployment'), notice('error', e.message, link('/ui', 'Back to your studios')));
    focusHeading(main, 'Deployment not found');
    return null;
  }
  const canWrite = studio.myPermissionLevel !== 'read';
  const title = `Deployment #${deploymentId}`;

  const state = h('span', { id: 'state' });
  const message = h('p', { id: 'state-message', class: 'state-message', 'aria-live': 'polite' });
  const problems = h('div', { id: 'problems', 'aria-live': 'assertive' });
  const liveness = h('p', { id: 'live-status', class: 'live-status muted', 'aria-live': 'polite' });
  const open = h('a', { class: 'button primary', id: 'open', target: '_blank', rel: 'noopener', hidden: true }, 'Open the app ↗');
  const stop = button('Stop', doStop, { id: 'stop', hidden: true });
  const wake = button('Wake', doWake, { id: 'wake', hidden: true, class: 'primary' });
  const steps = h('ol', { class: 'steps', id: 'steps' });
  const chart = usageChart();
  const logs = logView({ download: async () => save(`studio-${studioId}-deployment-${deploymentId}.log`, asText(await everyLine(base))) });
  let firstTime = null;

  let shownKey = '';
  function showState(d) {
    dep = d;
    // The page changes only when something on it did (a poll answers the whole deployment).
    const key = JSON.stringify([d.state, d.stateMessage, d.displayUrl, d.maxCpuUsage, d.maxMemoryUsage]);
    if (key === shownKey) return;
    shownKey = key;
    replace(state, badge(d.state));
    replace(message, d.state === 'pending' ? spinner('starting') : null, ' ', d.stateMessage || d.state);
    open.hidden = !d.displayUrl || d.state === 'terminated';
    if (d.displayUrl) open.href = d.displayUrl;
    stop.hidden = !(canWrite && ACTIVE.includes(d.state));
    wake.hidden = d.state !== 'sleeping';
    open.classList.toggle('primary', d.state !== 'sleeping'); // asleep, Wake is the main action
    chart.update(d);
    steps.classList.toggle('done', d.state !== 'pending');
  }

  function addSteps(lines) {
    const atEnd = steps.scrollHeight - steps.scrollTop - steps.clientHeight < 30;
    for (const line of lines) {
      if (line.source !== 'system') continue;
      const t = parseTime(line.createdAt);
      if (firstTime === null && t) firstTime = t;
      const offset = t && firstTime ? `+${((t - firstTime) / 1000).toFixed(2)} s` : '';
      steps.append(h('li', {}, h('span', { class: 'muted t', title: clock(line.createdAt) }, offset), ' ', line.message));
    }
    if (atEnd) steps.scrollTop = steps.scrollHeight;
  }

  async function doStop() {
    setBusy(stop, true, 'Stopping…');
    try { await del(base); replace(problems); } catch (e) { replace(problems, notice('error', `Not stopped: ${e.message}`)); } finally { setBusy(stop, false); live.poke(); }
  }

  async function doWake() {
    setBusy(wake, true, 'Waking…');
    try { showState(await post(`/ui${base}/wake`)); replace(problems); } catch (e) { replace(problems, notice('error', `Not woken: ${e.message}`)); } finally { setBusy(wake, false); live.poke(); }
  }

  replace(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, link('/ui', 'Studios'), ' › ', link(`/ui/studios/${studioId}`, studio.name), ' › ', h('span', { 'aria-current': 'page' }, title)),
    h('div', { class: 'page-head' }, h('h1', {}, title, ' ', state), h('div', { class: 'actions' }, open, wake, stop)),
    message, liveness, problems,
    h('div', { class: 'columns' },
      h('section', { class: 'card', 'aria-labelledby': 'steps-title' }, h('h2', { id: 'steps-title' }, 'Steps'), steps),
      h('section', { class: 'card', 'aria-labelledby': 'usage-title' }, h('h2', { id: 'usage-title' }, 'Resources'), chart.el)),
    h('section', { class: 'card', 'aria-labelledby': 'log-title' }, h('h2', { id: 'log-title' }, 'Log'), logs.el),
    sharesPanel(studio));
  showState(dep);
  focusHeading(main, `${title} of ${studio.name}`);

  const MODES = {
    live: ['live', 'Live: changes show as they happen.'],
    reconnecting: ['reconnecting', 'Reconnecting to the live stream…'],
    polling: ['polling', 'The live stream is not available here, so this page checks for changes every second.'],
  };
  function showMode(mode) {
    const [kind, text] = MODES[mode] || ['', ''];
    liveness.dataset.mode = kind;
    liveness.textContent = text;
  }

  handlers = {
    onDeployment: (d) => { showState(d); if (problems.firstChild && problems.dataset.kind === 'poll') { replace(problems); delete problems.dataset.kind; } },
    onUsage: (u) => showState({ ...dep, maxCpuUsage: u.maxCpuUsage ?? dep.maxCpuUsage, maxMemoryUsage: u.maxMemoryUsage ?? dep.maxMemoryUsage }),
    onLines: (lines) => { addSteps(lines); logs.add(lines); },
    onMode: showMode,
    onError: (e) => {
      problems.dataset.kind = 'poll';
      replace(problems, notice('error', e.status === 404 || e.status === 403 ? e.message : `Lost contact with the server (${e.message}); still trying.`));
      if (e.status === 404 || e.status === 403) showMode('');
    },
  };
  for (const [name, args] of early.splice(0)) handlers[name](...args);
  return () => live.stop();
}
