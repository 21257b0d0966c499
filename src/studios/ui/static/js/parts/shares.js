// Who may see or change a studio: the users of each level, and (for managers) sharing with
// a user by ID, changing their level and removing them.

import { del, get, put } from '../api.js';
import { button, h, notice, replace, setBusy } from '../dom.js';
import { FieldSet } from './fields.js';

const LEVELS = [['read', 'Can view and open'], ['write', 'Can edit, deploy and stop'], ['manage', 'Can also share']];

export function sharesPanel(studio) {
  const canManage = studio.myPermissionLevel === 'manage';
  const body = h('div', { 'aria-live': 'polite' }, h('p', { class: 'loading' }, 'Loading…'));
  const panel = h('section', { class: 'card', id: 'shares', 'aria-labelledby': 'shares-title' }, h('h2', { id: 'shares-title' }, 'Shares'), body);
  const base = `/studios/${studio.id}/shares`;

  async function load() {
    try {
      const [index] = await get(base);
      draw(index);
    } catch (e) {
      replace(body, notice('error', `The shares could not be loaded: ${e.message}`, button('Try again', load)));
    }
  }

  function draw(index) {
    const people = [];
    for (const [level, key] of [['manage', 'owners'], ['write', 'writers'], ['read', 'readers']]) {
      for (const user of (index[key] || {}).users || []) people.push({ ...user, level });
    }
    const list = h('ul', { class: 'shares' }, people.map((p) => h('li', {},
      h('span', { class: 'who' }, p.name, h('span', { class: 'muted' }, ` #${p.id}`)),
      h('span', { class: `tag level-${p.level}` }, p.level),
      canManage && p.id !== studio.author.id ? button('Remove', () => remove(p), { class: 'quiet', 'aria-label': `Remove ${p.name}'s access` }) : null)));
    replace(body, people.length ? list : notice('empty', 'Nobody else has access.'), canManage ? shareForm() : h('p', { class: 'muted' }, 'Only people with manage permission change shares.'));
  }

  async function remove(p) {
    try { await del(`${base}/users/${p.id}`); await load(); } catch (e) { replace(body, notice('error', e.message, button('Reload', load))); }
  }

  function shareForm() {
    const fs = new FieldSet();
    const who = h('input', { type: 'text', inputmode: 'numeric', autocomplete: 'off' });
    const level = h('select', {}, LEVELS.map(([v, label]) => h('option', { value: v }, `${v}: ${label}`)));
    const submit = h('button', { type: 'submit' }, 'Share');
    const form = h('form', { class: 'toolbar', novalidate: true, 'aria-label': 'Share with a user' },
      fs.field('userIds', 'share-user', 'User ID', who, h('span', {}, 'A user finds their ID with ', h('code', {}, 'civis users list-me'), '.')),
      fs.field('permissionLevel', 'share-level', 'Permission', level),
      submit);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      fs.clear();
      const raw = who.value.trim();
      const userId = /^\d+$/.test(raw) ? Number(raw) : raw;
      setBusy(submit, true, 'Sharing…');
      try {
        await put(`${base}/users`, { userIds: [userId], permissionLevel: level.value });
        await load();
      } catch (e) {
        const shown = fs.show(e.message);
        if (shown.every((x) => !x.key)) fs.show(`userIds: ${e.message}`);
        who.focus();
      } finally {
        setBusy(submit, false);
      }
    });
    return form;
  }

  load();
  return panel;
}
