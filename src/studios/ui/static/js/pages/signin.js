// Sign in with an API key; the server answers with a session cookie (HttpOnly) and the
// CSRF token the page sends with every change.

import { ApiError, request } from '../api.js';
import { h, notice, replace, setBusy } from '../dom.js';
import { focusHeading } from '../router.js';

export function view(main, query, signedIn) {
  const error = h('div', { id: 'signin-error', 'aria-live': 'assertive' });
  const key = h('input', { id: 'api-key', name: 'apiKey', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, 'aria-describedby': 'api-key-help signin-error' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'card narrow', id: 'signin', novalidate: true },
    h('h1', {}, 'Sign in to Studios'),
    query.get('expired') ? notice('info', 'Your session has ended. Sign in again to continue.') : null,
    h('div', { class: 'field' },
      h('label', { for: 'api-key' }, 'API key'),
      key,
      h('p', { class: 'help', id: 'api-key-help' }, 'The key you use for the API and the civis client. An administrator prints one with ', h('code', {}, 'studios users create NAME'), ' or ', h('code', {}, 'studios keys create USER'), '.')),
    error,
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    replace(error);
    if (!key.value.trim()) {
      replace(error, h('p', { class: 'field-error' }, 'Enter your API key.'));
      key.setAttribute('aria-invalid', 'true');
      key.focus();
      return;
    }
    setBusy(submit, true, 'Signing in…');
    try {
      const { data } = await request('POST', '/ui/session', { body: { apiKey: key.value.trim() } });
      key.value = '';
      signedIn(data, query.get('next'));
    } catch (e) {
      const message = e instanceof ApiError && e.status === 401 ? 'That API key is not valid (unknown or revoked).' : e.message;
      replace(error, h('p', { class: 'field-error', role: 'alert' }, message));
      key.setAttribute('aria-invalid', 'true');
      key.focus();
      key.select();
    } finally {
      setBusy(submit, false);
    }
  });
  replace(main, form);
  focusHeading(main, 'Sign in');
  key.focus();
}
