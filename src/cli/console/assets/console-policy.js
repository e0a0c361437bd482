// lpar-mover console: the Policy screen. Loads a policy file (moverctl
// policy's TOML) into the text area, runs it in the console (POST
// /api/policy/run), stops it after the current entry, and offers the
// resume choices after a stop or a failed entry. Each entry's outcome
// arrives live as a POLICY event (console.js routes it to renderPolicy).
// Uses console.js's helpers ($, h, api, act, say, size, hostName).
'use strict';

const POLICY_RESULT = { 'completed': 'completed', 'failed': 'FAILED', 'not-run': 'not run' };
const POLICY_OUTCOME = {
  'completed': 'completed: every entry migrated',
  'failed': 'ran to its end with failed entries',
  'ended': 'ended at a failed entry',
  'stopped': 'stopped by the operator',
};

// POLICY events received: each attempt, failure, entry's end and the
// policy's end is one.
let policyUpdates = 0;

function onPolicyEvent(p) {
  policyUpdates += 1;
  $('#policy-updates').textContent = policyUpdates;
  renderPolicy(p);
}

async function loadPolicy() {
  const r = await act(() => api('GET', '/api/policy'), false);
  if (r) renderPolicy(r);
}

function policyStatus(p) {
  if (!p.loaded) return 'No policy loaded.';
  const name = 'Policy ' + p.name + ' (' + p.mode + ')';
  if (p.active) {
    return name + ': running' + (p.current ? ' entry ' + p.current + ' of ' + p.entries.length : '') +
      (p.stop_requested ? '; stops after this entry' : '');
  }
  if (!p.outcome) return name + ': starting';
  return name + ': ' + (POLICY_OUTCOME[p.outcome] || p.outcome) + (p.closed ? ' (ended by the operator)' : '');
}

// The newest view shown: a reply that left the console before an event
// that came first must not undo it.
let policyVersion = 0;

function renderPolicy(p) {
  if (p.loaded && p.version < policyVersion) return;
  if (p.loaded) policyVersion = p.version;
  $('#policy-status').textContent = policyStatus(p);
  $('#policy-status').dataset.outcome = p.active ? 'running' : (p.outcome || '');
  $('#policy-run').disabled = !!p.active;
  $('#policy-stop').disabled = !p.active || !!p.stop_requested;
  const choices = p.choices || [];
  $('#policy-choices').hidden = choices.length === 0;
  $('#policy-question').textContent = choices.includes('retry')
    ? 'Entry ' + p.next + ' failed. Fix its cause, then:' : 'Stopped before entry ' + p.next + ':';
  document.querySelectorAll('#policy-choices button[data-choice]').forEach((b) => { b.hidden = !choices.includes(b.dataset.choice); });
  $('#policy-table tbody').replaceChildren(...(p.entries || []).map((e) => {
    const running = p.active && p.current === e.entry;
    const result = running ? 'running' : e.status;
    return h('tr', { 'data-entry': e.entry, 'data-status': result, class: running ? 'running' : '' },
      h('td', { class: 'num' }, e.entry), h('td', {}, h('strong', {}, e.lpar)),
      h('td', {}, hostName(e.from)), h('td', {}, hostName(e.to)),
      h('td', { class: e.status === 'failed' && !running ? 'error' : e.status === 'completed' ? 'ok' : '' },
        running ? 'running (attempt ' + e.attempts + ')' : POLICY_RESULT[e.status] || e.status),
      h('td', { class: 'num' }, e.attempts),
      h('td', {}, e.suspension_ms !== null && e.suspension_ms !== undefined ? e.suspension_ms.toFixed(2) + ' ms' : '–'),
      h('td', { class: 'small' }, e.error ? h('span', { class: 'why' }, e.error.message, h('br'), h('em', {}, 'Action: ' + e.error.action)) : ''));
  }));
}

async function runPolicy(ev) {
  ev.preventDefault();
  const r = await act(() => api('POST', '/api/policy/run', { text: $('#policy-text').value, agent: $('#policy-agent').value }));
  if (r) { say('Policy ' + r.name + ' started: ' + r.entries.length + ' entries.', 'ok'); renderPolicy(r); }
}

async function stopPolicy() {
  const r = await act(() => api('POST', '/api/policy/stop', {}));
  if (r) { say('Stop requested: the policy ends after its current entry.', 'ok'); renderPolicy(r); }
}

async function resumePolicy(choice) {
  const r = await act(() => api('POST', '/api/policy/resume', { choice }));
  if (r) { say('Policy ' + r.name + ': ' + choice, 'ok'); renderPolicy(r); }
}

function readPolicyFile() {
  const f = $('#policy-file').files[0];
  if (!f) return;
  f.text().then((t) => { $('#policy-text').value = t; say('Loaded ' + f.name + '.', 'ok'); });
}

document.addEventListener('DOMContentLoaded', () => {
  $('#policy-form').addEventListener('submit', runPolicy);
  $('#policy-stop').addEventListener('click', stopPolicy);
  $('#policy-file').addEventListener('change', readPolicyFile);
  document.querySelectorAll('#policy-choices button[data-choice]').forEach((b) => b.addEventListener('click', () => resumePolicy(b.dataset.choice)));
});
