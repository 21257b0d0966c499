// One studio: what it runs, its newest deployment, every deployment (pages of 20), deploy,
// edit, archive, and its shares. The deployments follow the deployments stream (live.js).

import { get, pageOf, post, put, request } from '../api.js';
import { badge, button, cpu, h, link, mb, notice, replace, setBusy, when } from '../dom.js';
import { sharesPanel } from '../parts/shares.js';
import { watchDeployments } from '../live.js';
import { focusHeading, navigate } from '../router.js';

const PER_PAGE = 20;

function details(studio) {
  const r = studio.requiredResources || {};
  const rows = [
    ['Image', studio.dockerImageName ? `${studio.dockerImageName}:${studio.dockerImageTag}` : '–'],
    ['Git repository', studio.gitRepoUrl ? `${studio.gitRepoUrl}${studio.gitRef ? ` @ ${studio.gitRef}` : ''}` : '–'],
    ['Instance type', `${studio.instanceType || '–'}${studio.partitionLabel ? ` (partition ${studio.partitionLabel})` : ''}`],
    ['Resources', `${cpu(r.cpu)}, ${mb(r.memory)} memory, ${r.diskSpace ?? '–'} GB disk`],
    ['Author', studio.author ? studio.author.name : ''],
    ['Your permission', studio.myPermissionLevel],
  ];
  return h('dl', { class: 'facts' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', { class: k === 'Image' || k === 'Git repository' ? 'mono wrap' : '' }, v)]));
}

function params(studio) {
  if (!studio.params.length) return h('p', { class: 'muted' }, 'No parameters.');
  return h('div', { class: 'table-wrap' }, h('table', { class: 'list compact' },
    h('caption', { class: 'visually-hidden' }, 'Parameters'),
    h('thead', {}, h('tr', {}, ['Name', 'Type', 'Value', 'Description'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, studio.params.map((p) => h('tr', {},
      h('td', { 'data-label': 'Name', class: 'mono' }, p.name),
      h('td', { 'data-label': 'Type' }, p.type),
      h('td', { 'data-label': 'Value', class: 'mono wrap' }, p.value ?? ''),
      h('td', { 'data-label': 'Description' }, p.description || ''))))));
}

export async function view(main, id, session) {
  replace(main, h('p', { class: 'loading', role: 'status' }, 'Loading…'));
  let studio;
  try {
    studio = await get(`/studios/${id}`);
  } catch (e) {
    replace(main, h('h1', {}, e.status === 404 ? 'Studio not found' : 'Studio'), notice('error', e.message, link('/ui', 'Back to your studios')));
    focusHeading(main, 'Studio not found');
    return null;
  }
  const canWrite = studio.myPermissionLevel !== 'read';
  const status = h('div', { id: 'studio-status', 'aria-live': 'polite' });
  const deployButton = button('Deploy', deploy, { class: 'primary', id: 'deploy', disabled: studio.archived });
  const archiveButton = button(studio.archived ? 'Unarchive' : 'Archive', archive, { class: 'quiet', id: 'archive' });

  async function deploy() {
    setBusy(deployButton, true, 'Deploying…');
    try {
      const dep = await post(`/studios/${id}/deployments`);
      navigate(`/ui/studios/${id}/deployments/${dep.deploymentId}`);
    } catch (e) {
      replace(status, notice('error', `Not deployed: ${e.message}`));
      setBusy(deployButton, false);
    }
  }

  async function archive() {
    setBusy(archiveButton, true);
    try {
      await put(`/studios/${id}/archive`, { status: !studio.archived });
      await navigate(`/ui/studios/${id}`, { replace: true }); // drawn again (and this view cleaned up)
    } catch (e) {
      replace(status, notice('error', e.message));
      setBusy(archiveButton, false);
    }
  }

  const deployments = h('div', { 'aria-live': 'polite' });
  const rows = new Map(); // deployment id -> its row's cells that change
  let page = 1;
  let newestShown = 0;
  function row(d) {
    const cells = {
      state: h('td', { 'data-label': 'State' }, badge(d.state)),
      message: h('td', { 'data-label': 'Message' }, d.stateMessage || ''),
      cpu: h('td', { 'data-label': 'Peak CPU' }, d.maxCpuUsage === null ? '–' : cpu(d.maxCpuUsage)),
      memory: h('td', { 'data-label': 'Peak memory' }, d.maxMemoryUsage === null ? '–' : mb(d.maxMemoryUsage)),
    };
    rows.set(d.deploymentId, cells);
    return h('tr', { 'data-deployment': d.deploymentId },
      h('td', { 'data-label': 'Deployment' }, link(`/ui/studios/${id}/deployments/${d.deploymentId}`, `#${d.deploymentId}`)),
      cells.state, cells.message,
      h('td', { 'data-label': 'Started by' }, d.userId === session.user.id ? 'you' : `user #${d.userId}`),
      h('td', { 'data-label': 'Created' }, when(d.createdAt)),
      cells.cpu, cells.memory);
  }

  async function loadDeployments() {
    try {
      const { data, headers } = await request('GET', `/studios/${id}/deployments`, { params: { limit: PER_PAGE, page_num: page } });
      const info = pageOf(headers);
      rows.clear();
      newestShown = data.reduce((m, d) => Math.max(m, d.deploymentId), 0);
      if (!data.length) {
        replace(deployments, notice('empty', canWrite ? 'Not deployed yet. Deploy runs it and gives it a link.' : 'Not deployed yet.'));
        return;
      }
      replace(deployments,
        h('div', { class: 'table-wrap' }, h('table', { class: 'list' },
          h('caption', { class: 'visually-hidden' }, 'Deployments'),
          h('thead', {}, h('tr', {}, ['Deployment', 'State', 'Message', 'Started by', 'Created', 'Peak CPU', 'Peak memory'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, data.map(row)))),
        info.pages > 1 ? h('nav', { class: 'pager', 'aria-label': 'Pages of deployments' },
          button('← Newer', () => { page -= 1; loadDeployments(); }, { disabled: info.page <= 1 }),
          h('span', {}, `Page ${info.page} of ${info.pages}`),
          button('Older →', () => { page += 1; loadDeployments(); }, { disabled: info.page >= info.pages })) : null);
    } catch (e) {
      replace(deployments, notice('error', `The deployments could not be loaded: ${e.message}`, button('Try again', loadDeployments)));
    }
  }

  const latestBox = h('div', {});
  let latest = studio.mostRecentDeployment;
  function drawLatest() {
    replace(latestBox, latest ? h('section', { class: 'card latest', 'aria-labelledby': 'latest-title' },
      h('h2', { id: 'latest-title' }, 'Newest deployment'),
      h('p', {}, link(`/ui/studios/${id}/deployments/${latest.deploymentId}`, `Deployment #${latest.deploymentId}`), ' ', badge(latest.state), ' ', h('span', { class: 'muted' }, latest.stateMessage || '')),
      latest.displayUrl ? h('p', {}, h('a', { href: latest.displayUrl, target: '_blank', rel: 'noopener', class: 'button' }, 'Open the app ↗')) : null) : null);
  }

  // A change of one of this studio's deployments: its row and the newest one's card change in
  // place; a new deployment reads the first page again.
  async function changed(d) {
    if (d.studioId !== id) return;
    const cells = rows.get(d.deploymentId);
    if (cells) {
      replace(cells.state, badge(d.state));
      replace(cells.message, d.stateMessage || '');
      replace(cells.cpu, d.maxCpuUsage === null ? '–' : cpu(d.maxCpuUsage));
      replace(cells.memory, d.maxMemoryUsage === null ? '–' : mb(d.maxMemoryUsage));
    } else if (page === 1 && d.deploymentId > newestShown) {
      loadDeployments();
    }
    if (!latest || d.deploymentId > latest.deploymentId || (d.deploymentId === latest.deploymentId && d.state !== latest.state)) {
      // its link (displayUrl) is made for the viewer: read it
      try { latest = await get(`/studios/${id}/deployments/${d.deploymentId}`); } catch (e) { latest = { ...latest, ...d }; }
      drawLatest();
    } else if (d.deploymentId === latest.deploymentId) {
      latest = { ...latest, ...d };
      drawLatest();
    }
  }

  drawLatest();
  replace(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, link('/ui', 'Studios'), ' › ', h('span', { 'aria-current': 'page' }, studio.name)),
    h('div', { class: 'page-head' },
      h('h1', {}, studio.name, studio.archived ? h('span', { class: 'tag' }, 'archived') : null),
      canWrite ? h('div', { class: 'actions' }, deployButton, link(`/ui/studios/${id}/edit`, 'Edit', { class: 'button', id: 'edit' }), archiveButton) : null),
    studio.archived && canWrite ? notice('info', 'This studio is archived: unarchive it to deploy it.') : null,
    status,
    latestBox,
    h('div', { class: 'columns' },
      h('section', { class: 'card', 'aria-labelledby': 'details-title' }, h('h2', { id: 'details-title' }, 'Details'), details(studio), h('h3', {}, 'Parameters'), params(studio)),
      sharesPanel(studio)),
    h('section', { class: 'card', 'aria-labelledby': 'deployments-title' }, h('h2', { id: 'deployments-title' }, 'Deployments'), deployments));
  focusHeading(main, studio.name);
  loadDeployments();
  return watchDeployments({ onDeployment: changed, onGap: () => { loadDeployments(); get(`/studios/${id}`).then((s) => { latest = s.mostRecentDeployment; drawLatest(); }, () => {}); } });
}
