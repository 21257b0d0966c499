// The studios you can see: search by name, the archived filter, pages of 20. The query
// lives in the address (?q=&archived=&page=), so back, forward and links keep it. Each row's
// newest deployment follows the deployments stream (live.js).

import { pageOf, request } from '../api.js';
import { badge, button, h, link, notice, replace, when } from '../dom.js';
import { watchDeployments } from '../live.js';
import { focusHeading } from '../router.js';

const PER_PAGE = 20;
const SHOW = [['false', 'Active'], ['true', 'Archived'], ['all', 'All']];

function newest(s, dep) {
  return dep ? [link(`/ui/studios/${s.id}/deployments/${dep.deploymentId}`, badge(dep.state), { 'aria-label': `deployment ${dep.deploymentId}: ${dep.state}` }), ' ', h('span', { class: 'muted' }, dep.stateMessage || '')] : badge(null);
}

function describeImage(s) {
  if (s.dockerImageName) return `${s.dockerImageName}:${s.dockerImageTag}`;
  return s.gitRepoUrl || '–';
}

export function view(main, _params, query) {
  const state = {
    q: query.get('q') || '',
    archived: SHOW.some(([v]) => v === query.get('archived')) ? query.get('archived') : 'false',
    page: Math.max(1, parseInt(query.get('page') || '1', 10) || 1),
  };
  const results = h('section', { id: 'results', 'aria-live': 'polite', 'aria-busy': 'true' });
  const search = h('input', { id: 'search', type: 'search', name: 'q', value: state.q, placeholder: 'Studio name', autocomplete: 'off' });
  const show = h('select', { id: 'archived', name: 'archived' }, SHOW.map(([v, label]) => h('option', { value: v, selected: v === state.archived }, label)));
  const form = h('form', { role: 'search', class: 'toolbar', 'aria-label': 'Find studios' },
    h('div', { class: 'field inline grow' }, h('label', { for: 'search' }, 'Search by name'), search),
    h('div', { class: 'field inline' }, h('label', { for: 'archived' }, 'Show'), show),
    h('button', { type: 'submit' }, 'Search'));

  let generation = 0;
  async function load() {
    const mine = ++generation;
    const address = new URLSearchParams();
    if (state.q) address.set('q', state.q);
    if (state.archived !== 'false') address.set('archived', state.archived);
    if (state.page > 1) address.set('page', String(state.page));
    const target = `/ui${address.toString() ? `?${address}` : ''}`;
    if (window.location.pathname + window.location.search !== target) window.history.replaceState({}, '', target);
    results.setAttribute('aria-busy', 'true');
    try {
      const { data, headers } = await request('GET', '/studios', { params: { name: state.q.trim(), archived: state.archived, limit: PER_PAGE, page_num: state.page, order: 'updated_at' } });
      if (mine !== generation) return;
      draw(data, pageOf(headers));
    } catch (e) {
      if (mine !== generation) return;
      replace(results, notice('error', `The studios could not be loaded: ${e.message}`, button('Try again', load)));
    } finally {
      if (mine === generation) results.setAttribute('aria-busy', 'false');
    }
  }

  const shown = new Map(); // studio id -> its row's newest-deployment cell
  function changed(dep) {
    const row = shown.get(dep.studioId);
    if (!row || dep.deploymentId < row.deploymentId) return;
    row.deploymentId = dep.deploymentId;
    replace(row.cell, newest(row.studio, dep));
  }

  function draw(rows, info) {
    shown.clear();
    if (!rows.length) {
      if (state.page > 1 && info.total > 0) { state.page = info.pages; load(); return; }
      const filtered = state.q || state.archived !== 'false';
      replace(results, filtered
        ? notice('empty', state.q ? `No studio matches “${state.q}”.` : 'No archived studios.', button('Clear the search', () => { search.value = ''; show.value = 'false'; Object.assign(state, { q: '', archived: 'false', page: 1 }); load(); }))
        : notice('empty', 'No studios yet. A studio is an app definition: an image or a git repository, its resources and parameters.', link('/ui/studios/new', 'Create your first studio', { class: 'button primary' })));
      return;
    }
    const table = h('table', { class: 'list' },
      h('caption', { class: 'visually-hidden' }, 'Studios'),
      h('thead', {}, h('tr', {}, ['Name', 'Image or repository', 'Newest deployment', 'Author', 'Updated'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.map((s) => {
        const dep = s.mostRecentDeployment;
        const cell = h('td', { 'data-label': 'Newest deployment', class: 'newest' }, newest(s, dep));
        shown.set(s.id, { studio: s, cell, deploymentId: dep ? dep.deploymentId : 0 });
        return h('tr', { 'data-studio': s.id },
          h('td', { 'data-label': 'Name' }, link(`/ui/studios/${s.id}`, s.name), s.archived ? h('span', { class: 'tag' }, 'archived') : null),
          h('td', { 'data-label': 'Image', class: 'mono wrap' }, describeImage(s)),
          cell,
          h('td', { 'data-label': 'Author' }, s.author ? s.author.name : ''),
          h('td', { 'data-label': 'Updated' }, when(s.updatedAt)));
      })));
    const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of studios' },
      button('← Previous', () => { state.page -= 1; load(); }, { disabled: info.page <= 1, id: 'prev-page' }),
      h('span', {}, `Page ${info.page} of ${Math.max(info.pages, 1)} · ${info.total} studio${info.total === 1 ? '' : 's'}`),
      button('Next →', () => { state.page += 1; load(); }, { disabled: info.page >= info.pages, id: 'next-page' }));
    replace(results, h('div', { class: 'table-wrap' }, table), info.pages > 1 ? pager : h('p', { class: 'muted' }, `${info.total} studio${info.total === 1 ? '' : 's'}`));
  }

  let typing = null;
  form.addEventListener('submit', (event) => { event.preventDefault(); state.q = search.value; state.page = 1; load(); });
  search.addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(() => { state.q = search.value; state.page = 1; load(); }, 300); });
  show.addEventListener('change', () => { state.archived = show.value; state.page = 1; load(); });

  replace(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Studios'), link('/ui/studios/new', 'New studio', { class: 'button primary' })),
    form, results);
  focusHeading(main, 'Studios');
  load();
  const unwatch = watchDeployments({ onDeployment: changed, onGap: load });
  return () => { generation += 1; clearTimeout(typing); unwatch(); };
}
