// Which view a path shows, and moving between views without reloading (History API). Every
// same-origin link under /ui is followed here; a view may return a function that ends what
// it started (its live streams) when the page moves on.

const routes = [];
let cleanup = null;
let notFound = null;

export function route(pattern, view) { routes.push([pattern, view]); }
export function otherwise(view) { notFound = view; }

export function navigate(path, { replace = false } = {}) {
  if (replace) window.history.replaceState({}, '', path);
  else window.history.pushState({}, '', path);
  return render();
}

export async function render() {
  if (cleanup) { try { cleanup(); } catch (e) { /* a view's cleanup must not block the next one */ } cleanup = null; }
  const path = window.location.pathname.replace(/\/+$/, '') || '/';
  const query = new URLSearchParams(window.location.search);
  const main = document.getElementById('main');
  for (const [pattern, view] of routes) {
    const m = path.match(pattern);
    if (m) {
      const result = await view(main, m.slice(1), query);
      cleanup = typeof result === 'function' ? result : null;
      return;
    }
  }
  if (notFound) await notFound(main, [], query);
}

export function start() {
  window.addEventListener('popstate', () => render());
  document.addEventListener('click', (event) => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const a = event.target.closest('a[href]');
    if (!a || a.target || a.hasAttribute('download')) return;
    const to = new URL(a.href, window.location.href);
    if (to.origin !== window.location.origin || !(to.pathname === '/' || to.pathname.startsWith('/ui')) || to.pathname.startsWith('/ui/static')) return;
    event.preventDefault();
    navigate(to.pathname + to.search);
  });
}

export function focusHeading(main, title) {
  document.title = title ? `${title} · Studios` : 'Studios';
  const h1 = main.querySelector('h1');
  if (h1) { h1.setAttribute('tabindex', '-1'); h1.focus({ preventScroll: true }); }
}
