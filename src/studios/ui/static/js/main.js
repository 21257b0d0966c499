// Starts the UI: asks who is signed in, draws the header, and hands every path to its view.

import { ApiError, del, get, setSession } from './api.js';
import { button, h, link, notice, replace } from './dom.js';
import { focusHeading, navigate, otherwise, render, route, start } from './router.js';
import * as signin from './pages/signin.js';
import * as studios from './pages/studios.js';
import * as studioForm from './pages/studio_form.js';
import * as studio from './pages/studio.js';
import * as deployment from './pages/deployment.js';

export const session = { user: null };

function header() {
  const top = document.getElementById('top');
  const user = session.user;
  replace(top,
    h('a', { class: 'brand', href: '/ui' }, h('span', { class: 'logo', 'aria-hidden': 'true' }, '◧'), 'Studios'),
    user ? h('nav', { 'aria-label': 'Main' }, link('/ui', 'Studios'), link('/ui/studios/new', 'New studio')) : null,
    user ? h('div', { class: 'who' },
      h('span', { class: 'user', title: `signed in as ${user.username}` }, h('span', { class: 'initials', 'aria-hidden': 'true' }, user.initials), h('span', { class: 'name' }, user.name)),
      button('Sign out', signOut, { class: 'quiet', id: 'sign-out' })) : null);
}

async function signOut() {
  try { await del('/ui/session'); } catch (e) { /* the cookie is gone or expired: signed out either way */ }
  signedOut(false);
}

function signedOut(expired) {
  session.user = null;
  setSession(null);
  header();
  const here = window.location.pathname + window.location.search;
  const query = new URLSearchParams();
  if (!here.startsWith('/ui/signin') && here !== '/' && here !== '/ui') query.set('next', here);
  if (expired) query.set('expired', '1');
  navigate(`/ui/signin${query.toString() ? `?${query}` : ''}`, { replace: true });
}

export function signedIn(me, next) {
  session.user = me.user;
  setSession(me.csrfToken, () => { if (session.user) signedOut(true); });
  header();
  // Only a page of this UI: `next` comes from the address, which anyone can link to.
  let to = '/ui';
  try {
    const u = new URL(next || '/ui', window.location.origin);
    if (u.origin === window.location.origin && (u.pathname === '/' || u.pathname.startsWith('/ui'))) to = u.pathname + u.search;
  } catch (e) { /* keep /ui */ }
  navigate(to, { replace: true });
}

function guard(view) {
  // Views that need a session: without one, the sign-in page (and back here afterwards).
  return (main, params, query) => {
    if (!session.user) { signedOut(false); return null; }
    return view(main, params, query);
  };
}

route(/^\/ui\/signin$/, (main, params, query) => signin.view(main, query, signedIn));
route(/^\/(?:ui)?$/, guard(studios.view));
route(/^\/ui\/studios$/, guard(studios.view));
route(/^\/ui\/studios\/new$/, guard((main) => studioForm.view(main, null)));
route(/^\/ui\/studios\/(\d+)$/, guard((main, [id]) => studio.view(main, Number(id), session)));
route(/^\/ui\/studios\/(\d+)\/edit$/, guard((main, [id]) => studioForm.view(main, Number(id))));
route(/^\/ui\/studios\/(\d+)\/deployments\/(\d+)$/, guard((main, [id, dep]) => deployment.view(main, Number(id), Number(dep))));
otherwise((main) => {
  replace(main, h('h1', {}, 'Page not found'), notice('empty', 'There is no page at this address.', link('/ui', 'Go to your studios')));
  focusHeading(main, 'Page not found');
});

async function boot() {
  start();
  try {
    const me = await get('/ui/session');
    session.user = me.user;
    setSession(me.csrfToken, () => { if (session.user) signedOut(true); });
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) {
      header();
      replace(document.getElementById('main'), h('h1', {}, 'Studios'), notice('error', e.message, button('Try again', () => window.location.reload())));
      return;
    }
  }
  header();
  await render();
}

boot();
