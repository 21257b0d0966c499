// Create or edit a studio: name, image, git repository and credential, partition, instance
// type and resources, parameters. Nothing is checked here: the API validates, and its
// messages are shown at the fields they name.

import { get, post, put } from '../api.js';
import { button, h, link, notice, replace, setBusy } from '../dom.js';
import { FieldSet, summary } from '../parts/fields.js';
import { focusHeading, navigate } from '../router.js';

const PARAM_TYPES = ['string', 'multi_line_string', 'integer', 'float', 'bool', 'file', 'table', 'database', 'credential_aws', 'credential_redshift', 'credential_custom'];
const VALUE_HINT = { integer: 'a whole number', float: 'a number', bool: 'true or false', database: 'a credential ID', credential_aws: 'a credential ID', credential_redshift: 'a credential ID', credential_custom: 'a credential ID' };

function text(value) { return value === null || value === undefined ? '' : String(value); }

function number(raw) {
  const v = raw.trim();
  if (!v) return null;
  if (/^[+-]?\d+$/.test(v)) return parseInt(v, 10);
  if (/^[+-]?(\d+\.\d*|\.\d+)$/.test(v)) return parseFloat(v);
  return v; // not a number: sent as typed, so the API's message says what is wrong
}

export async function view(main, id) {
  const title = id ? 'Edit studio' : 'New studio';
  replace(main, h('h1', {}, title), h('p', { class: 'loading', role: 'status' }, 'Loading…'));
  focusHeading(main, title);
  let parts; let creds; let studio = null;
  try {
    [parts, creds, studio] = await Promise.all([
      get('/ui/partitions'),
      get('/credentials', { limit: 1000 }).catch(() => []),
      id ? get(`/studios/${id}`) : Promise.resolve(null),
    ]);
  } catch (e) {
    replace(main, h('h1', {}, title), notice('error', e.message, link('/ui', 'Back to your studios')));
    focusHeading(main, title);
    return null;
  }
  if (studio && studio.myPermissionLevel === 'read') {
    replace(main, h('h1', {}, studio.name), notice('info', 'You can see this studio but not change it (you have read permission).', link(`/ui/studios/${id}`, 'Back to the studio')));
    focusHeading(main, studio.name);
    return null;
  }

  const fs = new FieldSet();
  const input = (value, props = {}) => h('input', { type: 'text', value: text(value), autocomplete: 'off', spellcheck: 'false', ...props });
  const res = (studio && studio.requiredResources) || {};

  const name = input(studio ? studio.name : '', { spellcheck: 'true' });
  const image = input(studio && studio.dockerImageName);
  const tag = input(studio ? studio.dockerImageTag : '', { placeholder: 'latest' });
  const repo = input(studio && studio.gitRepoUrl, { placeholder: 'https://github.com/org/repo.git', inputmode: 'url' });
  const ref = input(studio && studio.gitRef, { placeholder: 'the default branch' });
  const cred = h('select', {}, h('option', { value: '' }, 'None (a public repository)'),
    creds.map((c) => h('option', { value: String(c.id), selected: studio && studio.gitCredentialId === c.id }, `${c.name || 'credential'} (${c.type}, #${c.id})`)));
  const partition = h('select', {}, parts.partitions.map((p) => h('option', { value: p.label, selected: (studio && studio.partitionLabel ? studio.partitionLabel : parts.defaultPartition) === p.label }, p.label)));
  const itype = h('select', {});
  const cpu = input(studio ? res.cpu : '', { inputmode: 'numeric' });
  const memory = input(studio ? res.memory : '', { inputmode: 'numeric' });
  const disk = input(studio ? res.diskSpace : '', { inputmode: 'decimal' });

  function currentPartition() { return parts.partitions.find((p) => p.label === partition.value) || parts.partitions[0]; }
  function fillTypes(selected) {
    const p = currentPartition();
    replace(itype, p.instanceTypes.map((t) => h('option', { value: t.name, selected: t.name === (selected || p.defaultInstanceType) },
      `${t.name}: ${t.cpu / 1000} cpu, ${t.memory >= 1024 ? `${t.memory / 1024} GB` : `${t.memory} MB`} memory, ${t.diskSpace} GB disk`)));
    showDefaults();
  }
  function showDefaults() {
    const t = currentPartition().instanceTypes.find((x) => x.name === itype.value);
    if (!t) return;
    cpu.placeholder = `${t.cpu} (the most ${itype.value} allows)`;
    memory.placeholder = `${t.memory} (the most ${itype.value} allows)`;
    disk.placeholder = `${t.diskSpace} (the most ${itype.value} allows)`;
  }
  const known = currentPartition().instanceTypes.some((t) => t.name === (studio && studio.instanceType));
  fillTypes(known ? studio.instanceType : null);
  if (studio && !known && studio.instanceType) itype.prepend(h('option', { value: studio.instanceType, selected: true }, studio.instanceType));
  // A new instance type brings its own resources: clear the fields (their placeholders say what).
  const clearResources = () => { cpu.value = ''; memory.value = ''; disk.value = ''; showDefaults(); };
  partition.addEventListener('change', () => { fillTypes(null); clearResources(); });
  itype.addEventListener('change', clearResources);

  // -- parameters
  const paramList = h('div', { class: 'params', id: 'params' });
  const rows = [];
  function paramRow(p) {
    const row = { el: null };
    row.name = input(p.name, { class: 'mono' });
    row.type = h('select', {}, PARAM_TYPES.map((t) => h('option', { value: t, selected: t === (p.type || 'string') }, t)));
    row.description = input(p.description, { spellcheck: 'true' });
    row.value = null;
    row.valueSlot = h('div', { class: 'slot' });
    const makeValue = (keep) => {
      const type = row.type.value;
      row.value = type === 'multi_line_string' ? h('textarea', { rows: 3, spellcheck: 'false' }) : input('', { placeholder: VALUE_HINT[type] || '' });
      row.value.value = keep;
      return row.value;
    };
    makeValue(text(p.value));
    row.remove = button('Remove', () => { rows.splice(rows.indexOf(row), 1); row.el.remove(); renumber(); (addButton).focus(); }, { class: 'quiet' });
    row.type.addEventListener('change', () => { const keep = row.value.value; makeValue(keep); renumber(); });
    row.el = h('fieldset', { class: 'param' });
    rows.push(row);
    paramList.append(row.el);
    renumber();
    return row;
  }
  function renumber() {
    fs.forget('params[');
    rows.forEach((row, i) => {
      const label = `Parameter ${i + 1}`;
      row.remove.setAttribute('aria-label', `Remove parameter ${i + 1}`);
      replace(row.el,
        h('legend', {}, label),
        fs.field(`params[${i}].name`, `param-${i}-name`, 'Name', row.name, 'An environment variable name', `${label}, name`),
        fs.field(`params[${i}].type`, `param-${i}-type`, 'Type', row.type, null, `${label}, type`),
        fs.field(`params[${i}].value`, `param-${i}-value`, 'Value', row.value, null, `${label}, value`),
        fs.field(`params[${i}].description`, `param-${i}-description`, 'Description', row.description, null, `${label}, description`),
        h('div', { class: 'row-actions' }, row.remove));
    });
    empty.hidden = rows.length > 0;
  }
  const empty = h('p', { class: 'muted' }, 'No parameters. Each parameter becomes an environment variable of the app.');
  const addButton = button('Add a parameter', () => { const row = paramRow({}); row.name.focus(); }, { id: 'add-param' });
  (studio ? studio.params : []).forEach((p) => paramRow(p));
  renumber();

  // -- the form
  const errors = h('div', { id: 'form-errors' });
  const submit = h('button', { type: 'submit', class: 'primary' }, id ? 'Save changes' : 'Create studio');
  const form = h('form', { class: 'studio-form', novalidate: true, id: 'studio-form' },
    errors,
    h('fieldset', {}, h('legend', {}, 'Studio'),
      fs.field('name', 'name', 'Name', name, 'Shown in lists and to the people you share it with.')),
    h('fieldset', {}, h('legend', {}, 'What runs'),
      h('p', { class: 'help' }, 'A Docker image, a git repository, or both (the repository is checked out into the image).'),
      h('div', { class: 'grid2' },
        fs.field('dockerImageName', 'docker-image-name', 'Docker image', image, 'e.g. jupyter/base-notebook'),
        fs.field('dockerImageTag', 'docker-image-tag', 'Image tag', tag)),
      fs.field('gitRepoUrl', 'git-repo-url', 'Git repository URL', repo),
      h('div', { class: 'grid2' },
        fs.field('gitRef', 'git-ref', 'Branch, tag or commit', ref),
        fs.field('gitCredentialId', 'git-credential', 'Git credential', cred, 'For a private repository. Credentials are made through the API (/credentials).'))),
    h('fieldset', {}, h('legend', {}, 'Resources'),
      h('div', { class: 'grid2' },
        fs.field('partitionLabel', 'partition', 'Partition', partition),
        fs.field('instanceType', 'instance-type', 'Instance type', itype)),
      h('div', { class: 'grid3' },
        fs.field('requiredResources.cpu', 'cpu', 'CPU (millicores)', cpu),
        fs.field('requiredResources.memory', 'memory', 'Memory (MB)', memory),
        fs.field('requiredResources.diskSpace', 'disk', 'Disk (GB)', disk)),
      h('p', { class: 'help' }, 'Left empty: what the instance type offers.')),
    fs.group('params', h('fieldset', {}, h('legend', {}, 'Parameters'), empty, paramList, h('div', { class: 'actions' }, addButton)), 'Parameters'),
    h('div', { class: 'actions sticky' }, submit, link(id ? `/ui/studios/${id}` : '/ui', 'Cancel', { class: 'button quiet' })));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = {
      name: name.value.trim() || null,
      dockerImageName: image.value.trim() || null,
      dockerImageTag: tag.value.trim() || null,
      gitRepoUrl: repo.value.trim() || null,
      gitRef: ref.value.trim() || null,
      gitCredentialId: cred.value ? Number(cred.value) : null,
      partitionLabel: partition.value || null,
      instanceType: itype.value || null,
      requiredResources: { cpu: number(cpu.value), memory: number(memory.value), diskSpace: number(disk.value) },
      params: rows.map((r) => ({ name: r.name.value.trim(), type: r.type.value, value: r.value.value === '' ? null : r.value.value, description: r.description.value.trim() || null })),
    };
    setBusy(submit, true, id ? 'Saving…' : 'Creating…');
    replace(errors);
    fs.clear();
    try {
      const saved = id ? await put(`/studios/${id}`, body) : await post('/studios', body);
      navigate(`/ui/studios/${saved.id}`);
    } catch (e) {
      const shown = e.status === 400 ? fs.show(e.message) : [{ key: null, message: e.message }];
      const count = shown.length;
      replace(errors, summary(shown, `The studio was not saved: ${count === 1 ? 'one problem' : `${count} problems`}.`));
      const first = shown.find((x) => x.key);
      if (first) document.getElementById(first.id).focus();
      else errors.firstChild.focus();
    } finally {
      setBusy(submit, false);
    }
  });

  const head = h('div', { class: 'page-head' }, h('h1', {}, id ? `Edit ${studio.name}` : 'New studio'));
  replace(main, id ? h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, link('/ui', 'Studios'), ' › ', link(`/ui/studios/${id}`, studio.name)) : null, head, form);
  focusHeading(main, id ? `Edit ${studio.name}` : 'New studio');
  return null;
}
