// One studio: what it runs, its newest deployment, every deployment (pages of 20), deploy,
// edit, archive, and its shares.

import { get, pageOf, post, put, request } from '../api.js';
import { badge, button, cpu, h, link, mb, notice, replace, setBusy, when } from '../dom.js';
import { sharesPanel } from '../parts/shares.js';
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
      await view(main, id, session);
    } catch (e) {
      replace(status, notice('error', e.message));
      setBusy(archiveButton, false);
    }
  }

  const deployments = h('div', { 'aria-live': 'polite' });
  let page = 1;
  async function loadDeployments() {
    try {
      const { data, headers } = await request('GET', `/studios/${id}/deployments`, { params: { limit: PER_PAGE, page_num: page } });
      const info = pageOf(headers);
      if (!data.length) {
        replace(deployments, notice('empty', canWrite ? 'Not deployed yet. Deploy runs it and gives it a link.' : 'Not deployed yet.'));
        return;
      }
      replace(deployments,
        h('div', { class: 'table-wrap' }, h('table', { class: 'list' },
          h('caption', { class: 'visually-hidden' }, 'Deployments'),
          h('thead', {}, h('tr', {}, ['Deployment', 'State', 'Message', 'Started by', 'Created', 'Peak CPU', 'Peak memory'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, data.map((d) => h('tr', { 'data-deployment': d.deploymentId },
            h('td', { 'data-label': 'Deployment' }, link(`/ui/studios/${id}/deployments/${d.deploymentId}`, `#${d.deploymentId}`)),
            h('td', { 'data-label': 'State' }, badge(d.state)),
            h('td', { 'data-label': 'Message' }, d.stateMessage || ''),
            h('td', { 'data-label': 'Started by' }, d.userId === session.user.id ? 'you' : `user #${d.userId}`),
            h('td', { 'data-label': 'Created' }, when(d.createdAt)),
            h('td', { 'data-label': 'Peak CPU' }, d.maxCpuUsage === null ? '–' : cpu(d.maxCpuUsage)),
            h('td', { 'data-label': 'Peak memory' }, d.maxMemoryUsage === null ? '–' : mb(d.maxMemoryUsage))))))),
        info.pages > 1 ? h('nav', { class: 'pager', 'aria-label': 'Pages of deployments' },
          button('← Newer', () => { page -= 1; loadDeployments(); }, { disabled: info.page <= 1 }),
          h('span', {}, `Page ${info.page} of ${info.pages}`),
          button('Older →', () => { page += 1; loadDeployments(); }, { disabled: info.page >= info.pages })) : null);
    } catch (e) {
      replace(deployments, notice('error', `The deployments could not be loaded: ${e.message}`, button('Try again', loadDeployments)));
    }
  }

  const latest = studio.mostRecentDeployment;
  replace(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, link('/ui', 'Studios'), ' › ', h('span', { 'aria-current': 'page' }, studio.name)),
    h('div', { class: 'page-head' },
      h('h1', {}, studio.name, studio.archived ? h('span', { class: 'tag' }, 'archived') : null),
      canWrite ? h('div', { class: 'actions' }, deployButton, link(`/ui/studios/${id}/edit`, 'Edit', { class: 'button', id: 'edit' }), archiveButton) : null),
    studio.archived && canWrite ? notice('info', 'This studio is archived: unarchive it to deploy it.') : null,
    status,
    latest ? h('section', { class: 'card latest', 'aria-labelledby': 'latest-title' },
      h('h2', { id: 'latest-title' }, 'Newest deployment'),
      h('p', {}, link(`/ui/studios/${id}/deployments/${latest.deploymentId}`, `Deployment #${latest.deploymentId}`), ' ', badge(latest.state), ' ', h('span', { class: 'muted' }, latest.stateMessage || '')),
      latest.displayUrl ? h('p', {}, h('a', { href: latest.displayUrl, target: '_blank', rel: 'noopener', class: 'button' }, 'Open the app ↗')) : null) : null,
    h('div', { class: 'columns' },
      h('section', { class: 'card', 'aria-labelledby': 'details-title' }, h('h2', { id: 'details-title' }, 'Details'), details(studio), h('h3', {}, 'Parameters'), params(studio)),
      sharesPanel(studio)),
    h('section', { class: 'card', 'aria-labelledby': 'deployments-title' }, h('h2', { id: 'deployments-title' }, 'Deployments'), deployments));
  focusHeading(main, studio.name);
  loadDeployments();
  return null;
}
