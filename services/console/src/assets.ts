/**
 * The console's only script and stylesheet, served from /assets/ (the Content-Security-Policy
 * allows scripts from the console itself and nothing inline). The script only inserts HTML the
 * server rendered and escaped, filters rows, counts down expiry times (a request whose time ran
 * out is shown expired and can no longer be decided here; the approval service's expiry then
 * moves it to History), and announces arriving requests in a live region (as text only).
 */
export const CONSOLE_JS = `'use strict';
(function () {
  function tick() {
    var now = Date.now();
    document.querySelectorAll('[data-expires]').forEach(function (element) {
      var left = Math.round((Date.parse(element.getAttribute('data-expires')) - now) / 1000);
      var seconds = left % 60;
      element.textContent = left > 0 ? (left >= 60 ? Math.floor(left / 60) + ' min ' + (seconds < 10 ? '0' : '') + seconds + ' s' : left + ' s') : 'expired';
      var card = element.closest('article.approval');
      if (left <= 0 && card && !card.classList.contains('expired')) {
        card.classList.add('expired');
        card.querySelectorAll('button, input').forEach(function (control) { control.disabled = true; });
      }
    });
  }
  function pendingIds(inbox) {
    var ids = {};
    inbox.querySelectorAll('article.approval').forEach(function (card) { ids[card.getAttribute('data-approval-id')] = true; });
    return ids;
  }
  function announce(inbox, before) {
    var announcer = document.getElementById('announcer');
    if (!announcer) return;
    var arrived = [];
    inbox.querySelectorAll('article.approval').forEach(function (card) {
      if (!before[card.getAttribute('data-approval-id')]) arrived.push(card.querySelector('h3').textContent.replace(/\\s+/g, ' ').trim());
    });
    if (arrived.length > 0) announcer.textContent = (arrived.length === 1 ? 'New approval request: ' : arrived.length + ' new approval requests: ') + arrived.join('; ');
  }
  function live() {
    var inbox = document.getElementById('inbox');
    var state = document.getElementById('live-state');
    if (!inbox || !window.EventSource) return;
    var source = new EventSource(inbox.getAttribute('data-live'));
    source.addEventListener('open', function () { state.textContent = 'Live: new requests appear here as they arrive.'; });
    source.addEventListener('error', function () { state.textContent = 'Live updates interrupted; reconnecting…'; });
    source.addEventListener('inbox', function (message) {
      var focused = document.activeElement && inbox.contains(document.activeElement) && document.activeElement.id;
      var typed = {};
      inbox.querySelectorAll('input[name=reason]').forEach(function (input) { if (input.value) typed[input.id] = input.value; });
      var before = pendingIds(inbox);
      inbox.innerHTML = JSON.parse(message.data).html;
      announce(inbox, before);
      Object.keys(typed).forEach(function (id) { var input = document.getElementById(id); if (input) input.value = typed[id]; });
      if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
      tick();
    });
  }
  function applyFilters() {
    var text = (document.getElementById('activity-filter').value || '').toLowerCase();
    var decision = document.getElementById('activity-decision').value;
    document.querySelectorAll('#activity tr').forEach(function (row) {
      var shown = (!decision || row.getAttribute('data-decision') === decision) && (!text || row.textContent.toLowerCase().indexOf(text) !== -1);
      row.hidden = !shown;
    });
  }
  function activity() {
    var table = document.getElementById('activity');
    var state = document.getElementById('live-state');
    if (!table || !window.EventSource) return;
    document.getElementById('activity-filter').addEventListener('input', applyFilters);
    document.getElementById('activity-decision').addEventListener('change', applyFilters);
    document.getElementById('activity-filters').addEventListener('submit', function (event) { event.preventDefault(); });
    var source = new EventSource(table.getAttribute('data-live'));
    source.addEventListener('open', function () { state.textContent = 'Live: decisions appear here as they are made.'; });
    source.addEventListener('error', function () { state.textContent = 'Live updates interrupted; reconnecting…'; });
    source.addEventListener('activity', function (message) {
      var update = JSON.parse(message.data);
      table.insertAdjacentHTML('afterbegin', update.row);
      document.getElementById('activity-counts').innerHTML = update.counts;
      while (table.rows.length > 200) table.deleteRow(table.rows.length - 1);
      applyFilters();
    });
  }
  document.addEventListener('DOMContentLoaded', function () { tick(); setInterval(tick, 1000); live(); activity(); });
})();
`;

export const CONSOLE_CSS = `
:root { --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --accent: #0a58ca; --bg: #f6f8fa; --ok: #116329; --bad: #a40e26; --warn: #7d4e00; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #fff; }
header { display: flex; align-items: center; gap: 1.5rem; padding: .6rem 1.5rem; background: #1b1f24; color: #fff; }
header a { color: #fff; text-decoration: none; }
header nav a { margin-right: 1rem; padding: .2rem .4rem; border-radius: 4px; }
header nav a:hover { background: #373e47; }
header :focus-visible { outline: 2px solid #fff; outline-offset: 2px; }
.skip { position: absolute; left: -9999px; top: .5rem; background: #fff; color: var(--accent); padding: .4rem .8rem; z-index: 10; }
.skip:focus { left: .5rem; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); clip-path: inset(50%); white-space: nowrap; }
main:focus { outline: none; }
.brand { font-weight: 700; font-size: 1.1rem; }
.signout { margin-left: auto; display: flex; gap: .5rem; align-items: center; }
.who { color: #d0d7de; }
main { max-width: 72rem; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; border-bottom: 1px solid var(--line); padding-bottom: .3rem; } h3 { font-size: 1rem; margin: 0 0 .5rem; }
pre, code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }
pre.command, pre.data { background: var(--bg); border: 1px solid var(--line); padding: .6rem; white-space: pre-wrap; word-break: break-all; margin: .3rem 0; }
code { word-break: break-all; }
.approval { border: 1px solid var(--line); border-radius: 6px; padding: 1rem; margin: 1rem 0; }
.approval.expired { border-style: dashed; background: var(--bg); } .waiting { color: var(--warn); font-weight: 600; }
.progress { font-weight: 600; } q.justification { font-style: italic; }
dl { display: grid; grid-template-columns: 9rem 1fr; gap: .2rem 1rem; margin: .6rem 0; } dt { color: var(--muted); } dd { margin: 0; }
form { margin: .5rem 0; } input, select, button { font: inherit; padding: .3rem .5rem; border: 1px solid #8c959f; border-radius: 4px; }
button { background: var(--bg); cursor: pointer; } button:focus-visible, input:focus-visible, a:focus-visible, select:focus-visible, summary:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
button:disabled, input:disabled { opacity: .6; cursor: not-allowed; }
.approve { background: var(--ok); color: #fff; border-color: var(--ok); } .deny { background: var(--bad); color: #fff; border-color: var(--bad); }
.button { display: inline-block; background: var(--accent); color: #fff; padding: .5rem 1rem; border-radius: 4px; text-decoration: none; }
.risk { text-transform: uppercase; font-size: .75rem; padding: .1rem .4rem; border-radius: 3px; background: var(--bg); border: 1px solid var(--line); }
.risk-high, .risk-critical { background: #ffebe9; border-color: var(--bad); color: var(--bad); }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; } th, td { text-align: left; border-bottom: 1px solid var(--line); padding: .35rem .5rem; vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
.search { display: flex; flex-wrap: wrap; gap: .8rem; align-items: end; } .search label.wide { flex: 1 1 24rem; } .search label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); }
.timeline { list-style: none; padding: 0; } .event { border-left: 3px solid var(--line); padding: .4rem .8rem; margin: 0 0 .6rem; }
.event.broken { border-left-color: var(--bad); background: #ffebe9; }
.when { color: var(--muted); font-size: .85rem; } .kind { font-weight: 600; color: var(--fg); }
.decision-deny, .status-denied, .status-expired, .status-cancelled { color: var(--bad); font-weight: 600; }
.decision-allow, .status-granted, .status-executed { color: var(--ok); font-weight: 600; } .decision-approve { color: var(--warn); font-weight: 600; }
.verified { color: var(--ok); font-weight: 600; } .tampered { color: var(--bad); font-weight: 700; }
.error { color: var(--bad); } .notice { background: #dafbe1; padding: .5rem; border-radius: 4px; } .muted, .empty, .live { color: var(--muted); }
table.result { font-size: 13px; }
`;
