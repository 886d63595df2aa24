// The dashboard's shell: hash routing between pages and a poll loop that refreshes only the
// current page, once a second, one request round at a time (a slow answer delays the next poll
// instead of piling requests up). A failed refresh shows its error above the page, which keeps
// its last good content.

import { fill, h } from './format.js';
import { mountJob } from './job.js';
import {
  mountJobList, mountNotFound, mountOverview, mountSubmit, mountTaskManager,
  mountTaskManagerList,
} from './pages.js';

const POLL_MS = 1000;

const routes = [
  [/^#?\/?$/, 'overview', () => mountOverview],
  [/^#\/overview$/, 'overview', () => mountOverview],
  [/^#\/jobs$/, 'jobs', () => mountJobList],
  [/^#\/jobs\/([^/]+)$/, 'jobs', () => mountJob],
  [/^#\/taskmanagers$/, 'taskmanagers', () => mountTaskManagerList],
  [/^#\/taskmanagers\/([^/]+)$/, 'taskmanagers', () => mountTaskManager],
  [/^#\/submit$/, 'submit', () => mountSubmit],
];

const view = document.getElementById('view');
const banner = document.getElementById('page-error');
const updated = document.getElementById('updated');

/** Increases with every navigation; a poll loop of an earlier page stops when it changes. */
let generation = 0;
let current = null;

export function showError(error) {
  banner.hidden = false;
  fill(banner, h('strong', {}, 'Error: '), error?.message ?? String(error));
}

export function clearError() {
  banner.hidden = true;
  banner.replaceChildren();
}

/** Goes to `hash` (e.g. "#/jobs/ID"). */
export function navigate(hash) {
  if (location.hash === hash) {
    route();
  } else {
    location.hash = hash;
  }
}

function route() {
  generation += 1;
  const mine = generation;
  current?.dispose?.();
  current = null;
  clearError();
  const hash = location.hash;
  let mount = mountNotFound;
  let section = null;
  let params = [hash];
  for (const [pattern, name, page] of routes) {
    const match = pattern.exec(hash);
    if (match) {
      mount = page();
      section = name;
      params = match.slice(1).map(decodeURIComponent);
      break;
    }
  }
  for (const link of document.querySelectorAll('[data-nav]')) {
    link.classList.toggle('active', link.dataset.nav === section);
  }
  view.replaceChildren();
  const root = h('div', { class: 'page' });
  view.append(root);
  try {
    current = mount(root, params, { navigate, showError });
  } catch (error) {
    showError(error);
    return;
  }
  if (current?.refresh) poll(mine);
}

async function poll(mine) {
  while (mine === generation) {
    if (!document.hidden) {
      try {
        await current.refresh();
        if (mine !== generation) return;
        clearError();
        updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
      } catch (error) {
        if (mine !== generation) return;
        showError(error);
        updated.textContent = `update failed ${new Date().toLocaleTimeString()}`;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

window.addEventListener('hashchange', route);
route();
