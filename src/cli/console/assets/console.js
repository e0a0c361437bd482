// lpar-mover operator's console. Plain JavaScript, no build step: the page
// talks to moverctl console's JSON API (/api/...) and follows the agents'
// migration events over server-sent events (/api/events). Every value
// from an agent is put into the page as text (never as HTML).
'use strict';

const $ = (sel) => document.querySelector(sel);

// h('td', {class: 'x'}, 'text', child, ...): an element with text children.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function size(b) {
  if (b === null || b === undefined) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : b) + ' ' + u[i];
}
function rate(bps) { return bps ? (bps * 8 / 1e9).toFixed(2) + ' Gbit/s (' + size(bps) + '/s)' : '–'; }
function hex(code) { return '0x' + Number(code).toString(16).padStart(4, '0'); }
function when(ns) { return ns ? new Date(ns / 1e6).toLocaleString() : '–'; }

// ---------- the API ----------

async function api(method, path, body) {
  const opts = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (_) { data = null; }
  if (!r.ok) {
    const err = new Error((data && data.emg) || ('HTTP ' + r.status));
    err.status = r.status;
    err.data = data;
    if (r.status === 401 && path !== '/api/login') showLogin();
    throw err;
  }
  return data;
}

function say(text, kind) {
  const m = $('#message');
  m.textContent = text;
  m.className = kind || 'error';
  m.hidden = !text;
}

// Runs an action, showing its error (an EMG with its action) on failure.
// A refresh (clear = false) leaves the last message standing.
async function act(fn, clear = true) {
  try {
    if (clear) say('');
    return await fn();
  } catch (e) {
    say(e.message, 'error');
    return undefined;
  }
}

// ---------- state ----------

const state = {
  agents: [],          // addresses
  hosts: {},           // address -> host (from /api/hosts)
  lpars: {},           // address -> {name, lpars, migrations, error}
  migrations: new Map(), // "agent#id" -> migration model
  selected: null,      // key of the migration on the progress screen
  validated: null,     // the selection that passed validation
  events: null,
};

function hostName(addr) {
  const h = state.hosts[addr] || state.lpars[addr];
  return (h && h.name) || addr;
}

function fillSelect(sel, options, keep) {
  const old = sel.value;
  sel.replaceChildren(...options.map(([v, t]) => h('option', { value: v }, t)));
  if (keep && options.some(([v]) => v === old)) sel.value = old;
}

// ---------- screens ----------

function show(screen) {
  document.querySelectorAll('.screen').forEach((s) => { s.hidden = s.id !== 'screen-' + screen; });
  document.querySelectorAll('#nav button[data-screen]').forEach((b) => {
    b.setAttribute('aria-current', b.dataset.screen === screen ? 'page' : 'false');
  });
  if (screen === 'hosts') refreshHosts();
  if (screen === 'policy') loadPolicy();
  if (['lpars', 'migrate', 'recovery', 'wwn', 'tools', 'history'].includes(screen)) refreshLpars();
  const first = document.querySelector('#screen-' + screen + ' h2');
  if (first) { first.tabIndex = -1; first.focus(); }
}

// One token for all agents, or (when theirs differ) one field per agent.
async function showLogin() {
  $('#nav').hidden = true;
  document.querySelectorAll('.screen').forEach((s) => { s.hidden = s.id !== 'screen-login'; });
  if (state.events) { state.events.close(); state.events = null; }
  const form = await fetch('/api/login').then((r) => r.json()).catch(() => ({ per_agent: false, agents: [] }));
  const each = form.per_agent;
  $('#login-one').hidden = each; $('#login-each').hidden = !each;
  $('#token').hidden = each; $('#token-label').hidden = each; $('#token').required = !each;
  $('#login-tokens').replaceChildren(...(each ? form.agents : []).map((a, i) => h('label', {},
    'Token for ' + a, h('input', { type: 'password', class: 'agent-token', 'data-agent': a, id: 'token-' + i, required: true }))));
  (each ? $('#login-tokens input') : $('#token')).focus();
}

async function login(ev) {
  ev.preventDefault();
  const err = $('#login-error');
  err.hidden = true;
  try {
    const fields = [...document.querySelectorAll('#login-tokens input')];
    const body = fields.length ? { tokens: Object.fromEntries(fields.map((f) => [f.dataset.agent, f.value])) } : { token: $('#token').value };
    await api('POST', '/api/login', body);
    $('#token').value = '';
    fields.forEach((f) => { f.value = ''; });
    await start();
  } catch (e) {
    err.textContent = e.status === 401 ? 'Wrong token: ' + e.message : e.message;
    err.hidden = false;
    ($('#login-tokens input') || $('#token')).select();
  }
}

async function start() {
  const session = await api('GET', '/api/session');
  state.agents = session.agents;
  $('#nav').hidden = false;
  openEvents(session.latest_event);
  await Promise.all([refreshHosts(), refreshLpars()]);
  await loadMigrations();
  show('hosts');
}

// ---------- hosts ----------

async function refreshHosts() {
  const r = await act(() => api('GET', '/api/hosts'), false);
  if (!r) return;
  const body = $('#hosts-table tbody');
  body.replaceChildren();
  for (const host of r.hosts) {
    state.hosts[host.agent] = host;
    if (!host.reachable) {
      body.append(h('tr', { class: 'down' }, h('td', {}, '–'), h('td', {}, host.agent),
        h('td', { colspan: 7, class: 'error' }, 'unreachable: ' + host.emg)));
      continue;
    }
    const used = host.memory_in_use_bytes, total = host.memory_bytes;
    const bar = h('span', { class: 'bar' }, h('span', { class: 'fill' }));
    bar.firstChild.style.width = (total ? Math.round(100 * used / total) : 0) + '%';
    const paths = (host.paths || []).map((p) => p.name + ' ' + (p.address || p.addr || ''));
    body.append(h('tr', { 'data-host': host.name },
      h('td', {}, h('strong', {}, host.name)),
      h('td', {}, host.agent),
      h('td', { class: 'small' }, host.build.crate_version + ' ' + host.build.git_commit + ' (wire ' + host.build.wire_protocol + ')'),
      h('td', {}, host.backend || '–'),
      h('td', { class: 'num' }, host.cpus),
      h('td', {}, bar, ' ', size(used) + ' used / ' + size(host.memory_free_bytes) + ' free'),
      h('td', { class: 'small' }, paths.join(', ') || '–'),
      h('td', { class: 'num' }, host.lpars),
      h('td', { class: host.busy ? 'busy' : '' }, host.busy ? 'busy (' + host.migrating.length + ' migrating)' : 'idle')));
  }
  fillAgentSelects();
}

function fillAgentSelects() {
  const opts = state.agents.map((a) => [a, hostName(a) + ' (' + a + ')']);
  for (const id of ['#create-agent', '#mig-agent', '#hist-agent', '#conn-agent', '#reh-agent', '#conn-to', '#reh-to', '#policy-agent']) {
    fillSelect($(id), opts, true);
  }
  fillMigrate();
}

// ---------- LPARs ----------

const STATE_ICON = { 'Act': '▶', 'Dea': '■', 'Fai': '✖', 'migrating': '⇄', 'needs-recovery': '⚠', 'wwn-rollback-pending': '↺' };
const STATE_TEXT = { 'Act': 'Act', 'Dea': 'Dea', 'Fai': 'Fai', 'migrating': 'migrating', 'needs-recovery': 'needs recovery', 'wwn-rollback-pending': 'WWN rollback pending' };

function stateCell(st) {
  return h('td', { class: 'state', 'data-state': st },
    h('span', { class: 'st st-' + st, 'aria-hidden': 'true' }, STATE_ICON[st] || '?'), ' ', STATE_TEXT[st] || st);
}

async function refreshLpars() {
  const r = await act(() => api('GET', '/api/lpars'), false);
  if (!r) return;
  const root = $('#lpar-hosts');
  root.replaceChildren();
  for (const host of r.hosts) {
    state.lpars[host.agent] = host;
    if (!host.reachable) {
      root.append(h('div', { class: 'card' }, h('h3', {}, host.agent), h('p', { class: 'error' }, 'unreachable: ' + host.emg)));
      continue;
    }
    const rows = host.lpars.map((l) => {
      const btn = (label, action, enabled) => h('button', {
        type: 'button', disabled: !enabled, 'data-action': action, 'data-lpar': l.name,
        onclick: () => lparAction(host.agent, l.name, action),
      }, label);
      return h('tr', { 'data-lpar': l.name, 'data-agent': host.agent },
        stateCell(l.state),
        h('td', {}, h('strong', {}, l.name)),
        h('td', { class: 'num' }, l.vcpus),
        h('td', { class: 'num' }, size(l.memory_bytes)),
        h('td', {}, l.program),
        h('td', { class: 'num' }, l.guest_writes ?? '–'),
        h('td', { class: 'actions' },
          btn('Activate', 'activate', l.state === 'Dea'),
          btn('Deactivate', 'deactivate', ['Act', 'needs-recovery', 'wwn-rollback-pending'].includes(l.state)),
          btn('Delete', 'delete', ['Dea', 'Fai'].includes(l.state)),
          btn('Migrate…', 'migrate', ['Act', 'Dea'].includes(l.state)),
          btn('History', 'history', true)));
    });
    root.append(h('div', { class: 'card', 'data-host': host.name },
      h('h3', {}, host.name + ' ', h('span', { class: 'muted' }, host.agent)),
      rows.length ? h('table', { class: 'grid lpars' },
        h('thead', {}, h('tr', {}, ['State', 'Name', 'vCPUs', 'Memory', 'Guest program', 'Guest writes', 'Actions'].map((t) => h('th', {}, t)))),
        h('tbody', {}, rows)) : h('p', { class: 'muted' }, 'No LPARs.')));
  }
  renderRecovery();
  renderWwn();
  fillMigrate();
}

async function lparAction(agent, name, action) {
  if (action === 'migrate') {
    $('#mig-agent').value = agent;
    fillMigrate();
    $('#mig-lpar').value = name;
    show('migrate');
    return;
  }
  if (action === 'history') {
    $('#hist-agent').value = agent;
    $('#hist-lpar').value = name;
    show('history');
    showHistory();
    return;
  }
  if (action === 'delete' && !window.confirm('Delete LPAR ' + name + ' on ' + hostName(agent) + '?')) return;
  const r = await act(() => api('POST', '/api/lpar/' + action, { agent, name }));
  if (r) say('LPAR ' + name + ' on ' + hostName(agent) + ': ' + (r.deleted ? 'deleted' : r.state), 'ok');
  await refreshLpars();
}

async function createLpar(ev) {
  ev.preventDefault();
  const body = {
    agent: $('#create-agent').value, name: $('#create-name').value,
    memory: $('#create-memory').value, vcpus: Number($('#create-vcpus').value), program: $('#create-program').value,
  };
  const r = await act(() => api('POST', '/api/lpar/create', body));
  if (r) { say('LPAR ' + r.name + ' created on ' + hostName(body.agent) + ' (' + r.state + ')', 'ok'); $('#create-name').value = ''; }
  await refreshLpars();
}

// ---------- migrate ----------

function selection() {
  return {
    agent: $('#mig-agent').value, lpar: $('#mig-lpar').value, to: $('#mig-to').value,
    mode: $('#mig-mode').value, path: $('#mig-path').value,
    activate_destination: $('#mig-activate').checked,
  };
}

function fillMigrate() {
  const agent = $('#mig-agent').value;
  const host = state.lpars[agent];
  const lpars = (host && host.lpars) || [];
  fillSelect($('#mig-lpar'), lpars.filter((l) => ['Act', 'Dea'].includes(l.state)).map((l) => [l.name, l.name + ' (' + l.state + ')']), true);
  fillSelect($('#mig-to'), [['auto', 'auto (most free memory)']].concat(state.agents.filter((a) => a !== agent).map((a) => [a, hostName(a) + ' (' + a + ')'])), true);
  const paths = ((state.hosts[agent] || {}).paths || []).map((p) => [p.name, p.name]);
  fillSelect($('#mig-path'), [['', 'default (first)']].concat(paths), true);
  $('#mig-activate-label').hidden = $('#mig-mode').value !== 'shutdown';
  const v = state.validated;
  $('#start-button').disabled = !(v && JSON.stringify(v) === JSON.stringify(selection()));
}

function checklist(report) {
  const items = new Map();
  for (const c of report.checks) {
    if (!items.has(c.item)) items.set(c.item, {});
    items.get(c.item)[c.side] = c;
  }
  const cell = (c) => c
    ? h('td', { class: 'check ' + c.outcome, 'data-outcome': c.outcome },
      h('b', {}, c.outcome === 'fail' ? 'FAIL' : c.outcome), ' ', c.detail,
      c.error ? h('div', { class: 'why' }, c.error.message, h('br'), h('em', {}, 'Action: ' + c.error.action)) : null)
    : h('td', { class: 'muted' }, '–');
  const rows = [...items].map(([item, sides]) => h('tr', { 'data-item': item },
    h('th', { scope: 'row' }, item), cell(sides.source), cell(sides.destination)));
  const failed = report.checks.filter((c) => c.outcome === 'fail').length;
  return h('div', { class: 'card' },
    h('p', { id: 'validation-verdict', class: report.passed ? 'ok big' : 'error big' },
      report.passed ? 'Validation passed: ' + report.lpar + ' may move from ' + report.source + ' to ' + report.destination + ' (' + report.mode + ').'
        : 'Validation failed: ' + failed + ' item(s) must be fixed first.'),
    h('table', { class: 'grid checklist', id: 'checklist' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Item'), h('th', {}, 'Source: ' + report.source), h('th', {}, 'Destination: ' + report.destination))),
      h('tbody', {}, rows)),
    report.connectivity ? h('p', { class: 'muted' }, 'Migration path: ' + connectivityText(report.connectivity)) : null);
}

function connectivityText(c) {
  return c.source_path + ' ' + c.source_addr + ' → ' + c.destination_agent + ' ' + c.destination_path + ' ' + c.destination_addr +
    ': ' + (c.bits_per_s / 1e9).toFixed(2) + ' Gbit/s over ' + c.streams + ' streams, round trip ' + c.rtt_avg_ms.toFixed(3) + ' ms (min ' + c.rtt_min_ms.toFixed(3) + ')';
}

async function validate(ev) {
  ev.preventDefault();
  const sel = selection();
  state.validated = null;
  $('#start-button').disabled = true;
  $('#validation').replaceChildren(h('p', { class: 'muted' }, 'Validating ' + sel.lpar + '…'));
  const r = await act(() => api('POST', '/api/validate', sel));
  if (!r) { $('#validation').replaceChildren(); return; }
  $('#validation').replaceChildren(checklist(r));
  if (r.passed) { state.validated = sel; $('#start-button').disabled = false; }
}

async function startMigration() {
  const sel = selection();
  $('#start-button').disabled = true;
  const r = await act(() => api('POST', '/api/migrate', sel));
  state.validated = null;
  if (!r) return;
  const m = model(r.agent, r.migration, sel.lpar);
  m.to = r.to;
  m.mode = sel.mode;
  m.started_here = true;
  selectMigration(key(r.agent, r.migration));
  show('progress');
  refreshLpars();
}

// ---------- migrations and their events ----------

function key(agent, id) { return agent + '#' + id; }

function model(agent, id, lpar) {
  const k = key(agent, id);
  if (!state.migrations.has(k)) {
    state.migrations.set(k, { agent, id, lpar, stages: [], rounds: [], stage: null, text: '', progress: null, report: null, error: null });
    renderSelector();
  }
  return state.migrations.get(k);
}

async function loadMigrations() {
  for (const [agent, host] of Object.entries(state.lpars)) {
    for (const m of host.migrations || []) {
      const x = model(agent, m.migration, m.lpar);
      if (x.stage === null) { x.stage = m.stage; x.text = m.stage_text; }
      if (m.side === 'source') x.to = m.peer;
    }
  }
}

function openEvents(since) {
  if (state.events) state.events.close();
  const es = new EventSource('/api/events?since=' + since);
  state.events = es;
  es.onopen = () => { $('#live').textContent = 'events: live'; $('#live').className = 'live on'; };
  es.onerror = () => { $('#live').textContent = 'events: reconnecting'; $('#live').className = 'live'; };
  es.onmessage = (msg) => onEvent(JSON.parse(msg.data));
}

function onEvent(ev) {
  const d = ev.data || {};
  if (ev.event === 'POLICY') { onPolicyEvent(d); return; }
  if (ev.event === 'AGENT_UP' || ev.event === 'AGENT_DOWN') {
    refreshLpars();
    return;
  }
  if (d.migration === undefined) return;
  const m = model(ev.agent, d.migration, d.lpar);
  m.host = ev.host;
  switch (ev.event) {
    case 'MIGRATION_STAGE':
      m.stage = d.stage; m.text = d.text;
      m.stages.push({ stage: d.stage, text: d.text, at: ev.timestamp_ns || ev.received_ns });
      break;
    case 'MIGRATION_PROGRESS':
      m.progress = d;
      m.rounds.push(d);
      break;
    case 'MIGRATION_COMPLETED':
      m.report = d.report;
      refreshLpars();
      break;
    case 'MIGRATION_FAILED':
      m.error = d.error;
      refreshLpars();
      break;
    default:
      return;
  }
  const cur = state.migrations.get(state.selected);
  if (!cur || (m.started_here && !cur.started_here)) selectMigration(key(ev.agent, d.migration));
  if (state.selected === key(ev.agent, d.migration)) renderProgress();
}

function renderSelector() {
  const opts = [...state.migrations.values()].map((m) => [key(m.agent, m.id),
    m.lpar + ' — ' + hostName(m.agent) + ' migration ' + m.id + (m.stage >= 0x5000 ? ' (destination side)' : '')]);
  fillSelect($('#prog-select'), opts, true);
  if (state.selected) $('#prog-select').value = state.selected;
}

function selectMigration(k) {
  state.selected = k;
  renderSelector();
  renderProgress();
}

function chart(rounds, memory) {
  const W = 560, H = 180, pad = 34;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', id: 'rounds-chart',
    'aria-label': 'Remaining dirty memory (bars) and bandwidth (line) per round' });
  const maxRem = Math.max(1, memory || 0, ...rounds.map((r) => r.remaining_bytes));
  const maxRate = Math.max(1, ...rounds.map((r) => r.rate_bytes_per_s));
  const n = Math.max(rounds.length, 1), bw = (W - 2 * pad) / n;
  svg.append(s('line', { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, class: 'axis' }));
  svg.append(s('text', { x: 2, y: 12, class: 'label' }, size(maxRem)));
  svg.append(s('text', { x: W - pad - 90, y: 12, class: 'label rate' }, rate(maxRate).split(' (')[0]));
  let line = '';
  rounds.forEach((r, i) => {
    const bh = (H - 2 * pad) * r.remaining_bytes / maxRem;
    svg.append(s('rect', { x: pad + i * bw + 2, y: H - pad - bh, width: Math.max(bw - 4, 1), height: bh, class: 'remaining' },
    ));
    const y = H - pad - (H - 2 * pad) * r.rate_bytes_per_s / maxRate;
    line += (i ? ' L' : 'M') + (pad + i * bw + bw / 2) + ' ' + y;
    svg.append(s('text', { x: pad + i * bw + bw / 2 - 4, y: H - pad + 14, class: 'label' }, String(r.round)));
  });
  if (line) svg.append(s('path', { d: line, class: 'rateline' }));
  return svg;
}

function reportView(m) {
  if (m.error) {
    const e = m.error;
    return h('div', { id: 'migration-outcome', class: 'outcome failed' },
      h('h3', {}, e.reason === 0x20 ? 'Migration cancelled (terminated by user)' : 'Migration failed'),
      h('p', { class: 'emg' }, emgText(e)),
      h('p', {}, h('strong', {}, 'Action: '), e.action),
      e.needs_recovery ? h('p', { class: 'error' }, 'The LPAR needs recovery: see the Recovery screen.') : null);
  }
  if (!m.report) return null;
  const r = m.report, src = r.source || {};
  const susp = src.suspension || r.suspension;
  const parts = susp ? Object.entries(susp).filter(([k]) => k !== 'total_ms').map(([k, v]) =>
    h('li', {}, k.replace(/_ms$/, '').replace(/_/g, ' ') + ': ' +
      (typeof v !== 'number' ? JSON.stringify(v) : k.endsWith('_ms') ? v.toFixed(2) + ' ms' : String(v)))) : [];
  return h('div', { id: 'migration-outcome', class: 'outcome completed' },
    h('h3', {}, 'Migration completed! ' + m.lpar + ' now runs on ' + (r.destination_agent || '?')),
    h('dl', {},
      h('dt', {}, 'Mode'), h('dd', {}, r.mode || m.mode || 'live'),
      src.total_ms !== undefined ? [h('dt', {}, 'Total'), h('dd', {}, src.total_ms.toFixed(1) + ' ms')] : null,
      src.bytes_sent !== undefined ? [h('dt', {}, 'Sent'), h('dd', {}, size(src.bytes_sent) + ' for ' + size(src.memory_bytes))] : null,
      src.rounds ? [h('dt', {}, 'Rounds'), h('dd', {}, src.rounds.length)] : null,
      src.verified !== undefined ? [h('dt', {}, 'Image digest'), h('dd', {}, src.verified ? 'verified' : 'NOT verified')] : null,
      r.shutdown_ms !== undefined ? [h('dt', {}, 'Shutdown'), h('dd', {}, r.shutdown_ms.toFixed(1) + ' ms')] : null),
    susp ? h('div', { id: 'suspension' }, h('h4', {}, 'Suspension: ' + (susp.total_ms !== undefined ? susp.total_ms.toFixed(2) + ' ms' : '')),
      h('ul', {}, parts)) : null);
}

function emgText(e) {
  const op1 = (BigInt(e.cause) << 24n) | (BigInt(e.phase) << 8n) | BigInt(moduleCode(e.module));
  const p = (v) => BigInt(v).toString(16).padStart(16, '0');
  return 'EMG' + p(op1) + ':' + p(e.detail) + ':' + p(e.reason) + ':(' + (e.needs_recovery ? 1 : 0) + '):' + e.module + ':' + e.message;
}
function moduleCode(m) {
  return { Client: 1, Management: 2, Executor: 3, MoverSource: 4, MoverDestination: 5, SourceHvm: 6, DestinationHvm: 7, Recovery: 8 }[m] || 0;
}

function renderProgress() {
  const m = state.migrations.get(state.selected);
  const root = $('#progress');
  if (!m) return;
  $('#progress-count').textContent = m.rounds.length;
  const p = m.progress;
  const src = m.stage !== null && m.stage < 0x5000;
  const inTransfer = m.stage === 0x4050 && !m.report && !m.error;
  const mem = p ? p.memory_bytes : null;
  const done = p ? Math.max(0, Math.min(100, 100 - 100 * p.remaining_bytes / Math.max(1, p.memory_bytes))) : 0;
  // Re-rendered on every event: keep the operator's focus and input.
  const focused = document.activeElement && document.activeElement.id;
  const seconds = $('#extend-seconds') ? $('#extend-seconds').value : 60;
  const monitor = h('span', { class: 'bar wide' }, h('span', { class: 'fill' }));
  monitor.firstChild.style.width = done.toFixed(1) + '%';
  root.replaceChildren(
    h('p', { class: 'big' }, m.lpar + ': ' + hostName(m.agent) + (m.to ? ' → ' + hostName(m.to) : '') + ' (migration ' + m.id + ')'),
    h('p', { id: 'stage', class: 'stage', 'data-stage': m.stage === null ? '' : hex(m.stage) },
      'Stage = ', h('code', {}, m.stage === null ? '–' : hex(m.stage)), ': ', m.text || ''),
    reportView(m) || '',
    h('div', { class: 'monitor' },
      h('h4', {}, 'Memory monitor'),
      h('dl', { id: 'memory-monitor' },
        h('dt', {}, 'Remaining'), h('dd', { id: 'remaining' }, p ? size(p.remaining_bytes) + ' of ' + size(p.memory_bytes) : '–'),
        h('dt', {}, 'Rate'), h('dd', { id: 'rate' }, p ? rate(p.rate_bytes_per_s) : '–'),
        h('dt', {}, 'Round'), h('dd', {}, p ? p.round : '–'),
        h('dt', {}, 'Throttle'), h('dd', { id: 'throttle' }, p ? p.throttle_percent + ' %' : '–')),
      monitor),
    h('div', { class: 'row controls' },
      h('label', {}, 'Extend by ', h('input', { id: 'extend-seconds', type: 'number', min: 1, value: seconds, size: 4 }), ' s'),
      h('button', { type: 'button', id: 'extend-button', disabled: !(src && inTransfer), onclick: () => control(m, 'extend') }, 'Extend'),
      h('button', { type: 'button', id: 'cancel-button', class: 'danger', disabled: !(src && inTransfer), onclick: () => control(m, 'cancel') }, 'Cancel'),
      h('span', { class: 'muted' }, 'Extend and Cancel are accepted only in Stage 0x4050 (Transferring Memory Data).')),
    h('div', { class: 'cols' },
      h('div', {}, h('h4', {}, 'Rounds'), chart(m.rounds, mem),
        h('table', { class: 'grid small', id: 'progress-rounds' },
          h('thead', {}, h('tr', {}, ['Round', 'Remaining', 'Rate', 'Throttle'].map((t) => h('th', {}, t)))),
          h('tbody', {}, m.rounds.map((r) => h('tr', {}, h('td', {}, r.round), h('td', {}, size(r.remaining_bytes)), h('td', {}, rate(r.rate_bytes_per_s)), h('td', {}, r.throttle_percent + ' %')))))),
      h('div', {}, h('h4', {}, 'Stages'),
        h('ol', { id: 'stages', class: 'small' }, m.stages.map((st) => h('li', {}, hex(st.stage) + ' ' + st.text))))));
  if (focused && $('#' + focused) && !$('#' + focused).disabled) $('#' + focused).focus();
}

// The agent's status of the selected migration, asked once (events keep
// the screen current; this is for a page opened late, or a stage whose
// event is still on its way).
async function refreshStatus() {
  const m = state.migrations.get(state.selected);
  if (!m) return;
  const r = await act(() => api('GET', '/api/status?agent=' + encodeURIComponent(m.agent) + '&id=' + m.id));
  if (!r) return;
  m.stage = r.stage;
  m.text = r.stage_text;
  if (r.error) m.error = r.error;
  if (r.report) m.report = r.report;
  renderProgress();
}

async function control(m, what) {
  const body = { agent: m.agent, id: m.id };
  if (what === 'extend') body.seconds = Number($('#extend-seconds').value);
  const r = await act(() => api('POST', '/api/' + what, body));
  if (r) say(what === 'extend' ? 'Timeout now ' + r.timeout_s + ' s' : 'Cancelling migration ' + r.migration + '…', 'ok');
}

// ---------- recovery, WWN rollback ----------

function allLpars(st) {
  const out = [];
  for (const [agent, host] of Object.entries(state.lpars)) {
    for (const l of host.lpars || []) if (l.state === st) out.push({ agent, host: host.name, lpar: l });
  }
  return out;
}

function renderRecovery() {
  const list = allLpars('needs-recovery');
  $('#recovery-count').textContent = 'LPARs requiring recovery: ' + list.length + ' LPARs';
  $('#recovery-table tbody').replaceChildren(...list.map(({ agent, host, lpar }) => {
    const peer = h('select', { 'aria-label': 'Peer of ' + lpar.name },
      h('option', { value: '' }, 'from the journal'), state.agents.filter((a) => a !== agent).map((a) => h('option', { value: a }, hostName(a))));
    return h('tr', { 'data-lpar': lpar.name },
      h('td', {}, host), h('td', {}, h('strong', {}, lpar.name)), h('td', {}, lpar.running ? 'running' : 'stopped'),
      h('td', {}, peer),
      h('td', { class: 'actions' },
        h('button', { type: 'button', 'data-action': 'deactivate', disabled: !lpar.running, onclick: () => lparAction(agent, lpar.name, 'deactivate') }, 'Deactivate'),
        h('button', { type: 'button', 'data-action': 'recover', disabled: lpar.running, onclick: () => recover(agent, lpar.name, peer.value) }, 'Recover')));
  }));
}

async function recover(agent, lpar, peer) {
  const r = await act(() => api('POST', '/api/recover', { agent, lpar, peer }));
  if (r) say('Recovered ' + r.lpar + ': it runs on ' + r.runs_on + (r.committed ? ' (the migration had committed)' : ' (the migration had not committed)') + '; its copy on ' + r.removed_from + ' was removed.', 'ok');
  await refreshLpars();
}

function renderWwn() {
  const list = allLpars('wwn-rollback-pending');
  $('#wwn-count').textContent = 'LPARs with WWN rollback pending: ' + list.length + ' LPARs';
  $('#wwn-table tbody').replaceChildren(...list.map(({ agent, host, lpar }) => h('tr', { 'data-lpar': lpar.name },
    h('td', {}, host), h('td', {}, lpar.name),
    h('td', { class: 'small' }, (lpar.fc_ports || []).map((p) => p.wwpn + ' / ' + p.migration_wwpn).join('; ')),
    h('td', {}, h('button', { type: 'button', 'data-action': 'rollback', onclick: async () => {
      const r = await act(() => api('POST', '/api/rollback-wwn', { agent, lpar: lpar.name }));
      if (r) say('WWNs of ' + r.lpar + ' rolled back; it is ' + r.state, 'ok');
      refreshLpars();
    } }, 'Roll back WWNs')))));
}

// ---------- history, tools ----------

async function showHistory(ev) {
  if (ev) ev.preventDefault();
  const agent = $('#hist-agent').value, lpar = $('#hist-lpar').value.trim();
  const r = await act(() => api('GET', '/api/history?agent=' + encodeURIComponent(agent) + (lpar ? '&lpar=' + encodeURIComponent(lpar) : '')));
  if (!r) return;
  $('#history-table tbody').replaceChildren(...r.migrations.map((m) => h('tr', {},
    h('td', {}, when(m.started_ns)), h('td', {}, m.lpar), h('td', {}, m.mode),
    h('td', {}, m.source_agent), h('td', {}, m.destination_agent),
    h('td', { class: m.outcome === 'completed' ? 'ok' : 'error' }, m.outcome, m.error ? h('div', { class: 'why' }, m.error.message) : null),
    h('td', {}, m.suspension_ms !== null && m.suspension_ms !== undefined ? m.suspension_ms.toFixed(2) + ' ms' : '–'),
    h('td', {}, m.recorded_by + ' (' + m.side + ')'))));
}

async function connectivity(ev) {
  ev.preventDefault();
  $('#conn-result').replaceChildren(h('p', { class: 'muted' }, 'Measuring…'));
  const r = await act(() => api('POST', '/api/connectivity', { agent: $('#conn-agent').value, to: $('#conn-to').value }));
  $('#conn-result').replaceChildren(r ? h('p', { class: 'card ok', id: 'conn-text' }, connectivityText(r)) : '');
}

async function rehearse(ev) {
  ev.preventDefault();
  $('#rehearse-result').replaceChildren(h('p', { class: 'muted' }, 'Rehearsing…'));
  const body = { agent: $('#reh-agent').value, lpar: $('#reh-lpar').value, to: $('#reh-to').value, mode: $('#reh-mode').value };
  const r = await act(() => api('POST', '/api/rehearse', body));
  if (!r) { $('#rehearse-result').replaceChildren(); return; }
  const pl = r.placeholder;
  $('#rehearse-result').replaceChildren(checklist(r.validation),
    pl ? h('p', { class: 'card ok', id: 'placeholder' }, 'Placeholder on ' + pl.host + ': ' + size(pl.memory_bytes) + ' defined in ' + pl.define_ms.toFixed(2) + ' ms, released in ' + pl.release_ms.toFixed(2) + ' ms' + (pl.released ? '' : ' (NOT released)'))
      : h('p', { class: 'error' }, 'No placeholder: validation failed.'));
}

// ---------- wiring ----------

document.addEventListener('DOMContentLoaded', () => {
  $('#login-form').addEventListener('submit', login);
  $('#logout').addEventListener('click', async () => { await api('POST', '/api/logout', {}).catch(() => {}); showLogin(); });
  document.querySelectorAll('#nav button[data-screen]').forEach((b) => b.addEventListener('click', () => show(b.dataset.screen)));
  document.querySelectorAll('button[data-refresh]').forEach((b) => b.addEventListener('click', () => (b.dataset.refresh === 'hosts' ? refreshHosts() : refreshLpars())));
  $('#create-form').addEventListener('submit', createLpar);
  $('#migrate-form').addEventListener('submit', validate);
  for (const id of ['#mig-agent', '#mig-lpar', '#mig-to', '#mig-mode', '#mig-path', '#mig-activate']) $(id).addEventListener('change', fillMigrate);
  $('#start-button').addEventListener('click', startMigration);
  $('#prog-select').addEventListener('change', () => selectMigration($('#prog-select').value));
  $('#prog-refresh').addEventListener('click', refreshStatus);
  $('#history-form').addEventListener('submit', showHistory);
  $('#conn-form').addEventListener('submit', connectivity);
  $('#rehearse-form').addEventListener('submit', rehearse);
  api('GET', '/api/session').then(() => start()).catch(() => showLogin());
});
