// Entry point of the console: sign-in and sign-out, the header (principal, project, region),
// hash routing between the views, and re-rendering the current view when the project or the
// region changes. Each render gets a fresh container and an AbortSignal, so that the answers
// of a view left behind can neither land on screen nor keep listeners alive.

import { ApiError, clearToken, explain, getToken, requestJson, setToken } from './api.js';
import { $, announce, clearError, el, showMessage, whileBusy } from './dom.js';
import * as announcements from './views/announcements.js';
import * as audit from './views/audit.js';
import * as keys from './views/keys.js';
import * as models from './views/models.js';
import * as usage from './views/usage.js';

const VIEWS = {
  keys: { render: keys.render, needsProject: true },
  usage: { render: usage.render, needsProject: true },
  audit: { render: audit.render, needsProject: true },
  models: { render: models.render, needsProject: false },
  announcements: { render: announcements.render, needsProject: false },
};
const REJECTED_TOKEN = 'This management token was not accepted. Check that you pasted the whole '
  + 'token (it starts with gmt-) and that it has not expired or been revoked; your operator issues '
  + 'new ones with gateway admin management-token create.';

let session = null;
let controller = null;

/** Wires the page's controls and opens the session of a token kept in this tab, if any. */
function start() {
  $('sign-in').addEventListener('submit', signIn);
  $('sign-in-retry').addEventListener('click', (event) => whileBusy(event.currentTarget, enter));
  $('sign-out').addEventListener('click', signOut);
  $('project').addEventListener('change', () => renderView(currentView()));
  $('region').addEventListener('change', onRegionChange);
  document.querySelector('.skip-link').addEventListener('click', skipToContent);
  window.addEventListener('hashchange', () => showView(true));
  if (getToken()) {
    showSignedIn();
    openSession().catch(signInFailed).finally(reveal);
  } else {
    showSignIn();
    reveal();
  }
}

/**
 * Makes the page visible once it is known whether a kept token opens a session: the header,
 * navigation and main area stay invisible until then, so they do not move on screen.
 */
function reveal() {
  document.body.classList.add('ready');
}

async function signIn(event) {
  event.preventDefault();
  const token = $('token').value.trim();
  const problem = tokenProblem(token);
  if (problem) {
    showSignInError(problem, false);
    $('token').focus();
    return;
  }
  await whileBusy(event.target.querySelector('button[type="submit"]'), () => {
    setToken(token);
    return enter();
  });
}

/**
 * What is wrong with a pasted management token, in words, or null when it looks like one
 * (`gmt-…`, printable ASCII without spaces): a header cannot carry anything else, and fetch
 * would fail as if the gateway could not be reached.
 */
function tokenProblem(token) {
  if (token === '') {
    return 'Paste your management token (it starts with gmt-), then sign in.';
  }
  if (/\s/.test(token)) {
    return 'The token contains a space or a line break: paste it again as one piece, without them.';
  }
  if (!/^[\x21-\x7e]*$/.test(token)) {
    return 'The token contains characters that cannot be in a management token (such as typographic '
      + 'quotes or dashes): copy it again as plain text and paste it here.';
  }
  if (!token.startsWith('gmt-')) {
    return 'This is not a management token: those start with gmt- (an API key, sk-…, does not work '
      + 'here). Paste the management token your operator gave you.';
  }
  return null;
}

/** Opens the session of the kept token and moves to its current view, or says why it could not. */
async function enter() {
  try {
    await openSession();
    $('token').value = '';
    announce(`Signed in as ${principalName()}.`);
    currentHeading().focus();
  } catch (error) {
    signInFailed(error);
  }
}

/** Validates the token with GET /v1/projects, then shows the header, navigation and current view. */
async function openSession() {
  const answer = await requestJson('/v1/projects');
  session = { principal: answer.principal, projects: answer.projects };
  $('principal').textContent = principalName();
  fillProjects();
  hideSignInError();
  showView(false);
}

/**
 * Shows the header and navigation of a session, the current view's link marked (early, while
 * a kept token is checked, so that the page does not move when the check succeeds).
 */
function showSignedIn() {
  $('view-sign-in').hidden = true;
  $('session').hidden = false;
  $('nav').hidden = false;
  for (const name of Object.keys(VIEWS)) {
    const link = document.querySelector(`nav a[href="#/${name}"]`);
    if (name === currentView()) {
      link.setAttribute('aria-current', 'page');
    } else {
      link.removeAttribute('aria-current');
    }
  }
}

/**
 * Shows the sign-in form with why the session could not open. Only a refused token (401) is
 * forgotten; after any other failure (network, 429, 5xx) it is kept and can be tried again.
 */
function signInFailed(error) {
  const refused = error instanceof ApiError && error.status === 401;
  if (refused) {
    clearToken();
  }
  showSignIn();
  showSignInError(refused ? REJECTED_TOKEN : explain(error), !refused);
}

/** Shows `text` under the sign-in form, with the button that retries the kept token if `canRetry`. */
function showSignInError(text, canRetry) {
  showMessage($('sign-in-error'), text);
  $('sign-in-retry').hidden = !canRetry;
}

function hideSignInError() {
  clearError($('sign-in-error'));
  $('sign-in-retry').hidden = true;
}

function signOut() {
  clearToken();
  session = null;
  showSignIn();
  $('principal').textContent = '';
  $('project').replaceChildren();
  hideSignInError();
  announce('Signed out. The token was removed from this browser tab.');
  $('token').focus();
}

function showSignIn() {
  controller?.abort();
  $('session').hidden = true;
  $('nav').hidden = true;
  for (const name of Object.keys(VIEWS)) {
    hideView(name);
  }
  $('view-sign-in').hidden = false;
}

function principalName() {
  return session.principal.email || session.principal.subject;
}

function fillProjects() {
  const select = $('project');
  select.replaceChildren(...session.projects.map((project) =>
    el('option', { value: project.id }, `${project.name} (${project.role})`)));
  select.disabled = session.projects.length === 0;
  if (select.disabled) {
    select.append(el('option', { value: '' }, 'No project'));
  }
}

function currentProject() {
  return session.projects.find((project) => project.id === $('project').value) ?? null;
}

function onRegionChange() {
  const region = $('region');
  if (!region.checkValidity()) {
    region.reportValidity();
    return;
  }
  renderView(currentView());
}

function skipToContent(event) {
  event.preventDefault();
  $('main').focus();
}

function currentView() {
  const name = location.hash.startsWith('#/') ? location.hash.slice(2) : '';
  return Object.hasOwn(VIEWS, name) ? name : 'keys';
}

function currentHeading() {
  return $(`view-${currentView()}`).querySelector('h2');
}

/** Shows the view named by the URL's hash, marks its link, and renders it. */
function showView(moveFocus) {
  if (!session) {
    return;
  }
  const current = currentView();
  showSignedIn();
  for (const name of Object.keys(VIEWS).filter((other) => other !== current)) {
    hideView(name);
  }
  $(`view-${current}`).hidden = false;
  renderView(current);
  if (moveFocus) {
    currentHeading().focus();
  }
}

function hideView(name) {
  const section = $(`view-${name}`);
  section.hidden = true;
  section.querySelector('.view-body').replaceChildren();
}

/** Renders view `name` into a fresh container, cancelling whatever the previous render still awaits. */
function renderView(name) {
  controller?.abort();
  controller = new AbortController();
  const body = el('div', { class: 'view-body' });
  $(`view-${name}`).querySelector('.view-body').replaceWith(body);
  const project = currentProject();
  if (VIEWS[name].needsProject && !project) {
    body.append(el('p', { class: 'note', id: 'no-project' },
      `${principalName()} has no role on any project yet, so there are no keys, usage or audit `
      + 'events to show. Ask your gateway operator to give you a role on a project. The Models and '
      + 'Announcements pages work without one.'));
    return;
  }
  VIEWS[name].render(body, { project, region: $('region').value, signal: controller.signal });
}

start();
