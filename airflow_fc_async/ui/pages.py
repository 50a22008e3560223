"""The plugin's HTML pages (shown in iframes of the Airflow UI): the nav page and the task-instance view. Values go
into the DOM as text only (never innerHTML). Requests go with the UI's session cookie (same origin); Stop / Re-run
add the CSRF header the API requires (api.py)."""

from __future__ import annotations

__all__ = ["CSRF_HEADER", "CSRF_VALUE", "NAV_PAGE", "TI_PAGE"]

CSRF_HEADER = "X-Requested-By"
CSRF_VALUE = "fc-async-ui"

_STYLE = """<style>
body{font:14px system-ui,sans-serif;margin:1em;color:#222}
table{border-collapse:collapse;margin-top:1em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
label{margin-right:1em}input,select{margin-left:.3em}.err{color:#b00}button{margin-right:.3em}
pre{background:#f5f5f5;padding:8px;white-space:pre-wrap;word-break:break-all;max-height:24em;overflow:auto}
.note{color:#777}h3{margin:.8em 0 .3em}.cols{display:flex;gap:2em;align-items:flex-start}.cols>div{flex:1;min-width:0}
</style>"""

# Same-origin fetches with the session cookie (httponly: not readable here) and the CSRF header; errors name the
# status and the detail.
_HELPERS = (
    f"const CSRF = {{{CSRF_HEADER!r}: {CSRF_VALUE!r}}};\n"
    + """function when(iso) { return iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 19) + " UTC" : ""; }
function duration(t) { return t.ended && t.duration_ms != null ? (t.duration_ms / 1000).toFixed(1) + " s" : ""; }
// The next load in ms (each page declares its `timer` and `load`); a pending one is dropped.
function schedule(ms) { clearTimeout(timer); timer = setTimeout(load, ms); }
function td(tr, text) { const c = tr.insertCell(); c.textContent = text == null ? "" : String(text); return c; }
async function call(path, init) {
  const headers = Object.assign({}, CSRF, (init || {}).headers || {});
  const r = await fetch(path, Object.assign({}, init, {headers, credentials: "same-origin"}));
  const body = await r.json().catch(() => ({}));
  if (!r.ok) { const e = new Error(r.status + ": " + (body.detail || r.statusText)); e.status = r.status; throw e; }
  return body;
}
"""
)

NAV_PAGE = (
    """<!doctype html><html><head><meta charset=utf-8><title>FC async tasks</title>
"""
    + _STYLE
    + """</head><body>
<h1>FC async tasks</h1>
<form id=f>
<label>Connection<input name=conn_id value=fc_default required></label>
<label>Function<input name=function required></label>
<label>Name prefix<input name=prefix></label>
<label>Status<select name=status><option value="">any</option><option>Enqueued</option><option>Dequeued</option>
<option>Running</option><option>Retrying</option><option>Succeeded</option><option>Failed</option>
<option>Stopped</option><option>Expired</option><option>Invalid</option></select></label>
<label>Started after<input name=started_after type=datetime-local></label>
<label>Started before<input name=started_before type=datetime-local></label>
<button id=go>Show</button></form>
<p id=msg></p>
<table id=t hidden><thead><tr><th>FC task id</th><th>status</th><th>started</th><th>ended</th><th>duration</th>
<th>retries</th><th>Airflow task instance</th><th></th></tr></thead><tbody></tbody></table>
<p><button id=prev hidden>Previous</button><button id=next hidden>Next</button></p>
<script>
"use strict";
const form = document.getElementById("f"), msg = document.getElementById("msg");
let offset = 0, timer = null, latest = 0;
"""
    + _HELPERS
    + """function iso(local) { return local ? new Date(local).toISOString() : ""; }
// One listing at a time wins: a newer load (Show, paging, the refresh after an action) drops a pending refresh and
// the answer of any older load, so rows are not replaced under the user's pointer by a stale page.
async function load() {
  clearTimeout(timer);
  const mine = ++latest;
  const p = new URLSearchParams();
  for (const [k, v] of new FormData(form)) if (v) p.set(k, k.startsWith("started_") ? iso(v) : v);
  p.set("offset", offset); p.set("limit", 25);
  msg.textContent = "loading..."; msg.className = "";
  try {
    const page = await call("api/tasks?" + p.toString());
    if (mine !== latest) return;
    const body = document.querySelector("#t tbody"); body.replaceChildren();
    for (const row of page.tasks) {
      const tr = body.insertRow(); tr.dataset.taskId = row.task_id;
      td(tr, row.task_id); td(tr, row.status); td(tr, when(row.started)); td(tr, when(row.ended));
      td(tr, duration(row)); td(tr, row.retries);
      const ti = td(tr, "");
      if (row.task_instance) {
        const a = document.createElement("a"); a.href = row.task_instance.url; a.target = "_top";
        a.textContent = row.task_instance.dag_id + " / " + row.task_instance.task_id + " / " +
          row.task_instance.run_id; ti.appendChild(a);
      }
      const act = td(tr, "");
      if (row.can_edit) {
        for (const [label, path] of row.terminal ? [["Re-run", "api/rerun"]] : [["Stop", "api/stop"]]) {
          const b = document.createElement("button"); b.textContent = label; b.type = "button";
          b.onclick = () => act_on(path, row.task_id); act.appendChild(b);
        }
      }
    }
    document.getElementById("t").hidden = false;
    document.getElementById("prev").hidden = offset === 0;
    document.getElementById("next").hidden = !page.has_more;
    msg.textContent = page.tasks.length + " tasks" + (page.hidden ? " (" + page.hidden + " hidden: no permission)" : "");
  } catch (e) { if (mine === latest) { msg.textContent = e.message; msg.className = "err"; } }
}
async function act_on(path, taskId) {
  const fd = new FormData(form);
  try {
    const r = await call(path, {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({conn_id: fd.get("conn_id"), function: fd.get("function"), task_id: taskId})});
    msg.textContent = path.endsWith("stop") ? "Stop requested: " + taskId : "Re-run started: " + r.task_id;
    msg.className = "";
    schedule(1000);
  } catch (e) { msg.textContent = e.message; msg.className = "err"; }
}
form.onsubmit = (e) => { e.preventDefault(); offset = 0; load(); };
document.getElementById("prev").onclick = () => { offset = Math.max(0, offset - 25); load(); };
document.getElementById("next").onclick = () => { offset += 25; load(); };
const q = new URLSearchParams(location.search);
for (const k of ["conn_id", "function", "prefix", "status"]) if (q.get(k)) form.elements[k].value = q.get(k);
if (form.elements.function.value) load();
</script></body></html>
"""
)

TI_PAGE = (
    """<!doctype html><html><head><meta charset=utf-8><title>FC async task</title>
"""
    + _STYLE
    + """</head><body>
<p><span id=actions></span><label>Connection<input id=conn value=fc_default size=16></label>
<span class=note id=live></span></p>
<p id=msg>loading...</p>
<div id=view hidden>
<div class=cols><div><table id=info></table></div>
<div><h3>Events</h3><table id=events><thead><tr><th>time</th><th>status</th><th>detail</th></tr></thead><tbody>
</tbody></table></div></div>
<div class=cols><div><h3>Trigger event (payload)</h3><pre id=payload></pre><p class=note id=payload_note></p>
<h3>Return payload</h3><pre id=return_payload></pre><p class=note id=return_payload_note></p></div>
<div><h3>Function log</h3><pre id=logs></pre><p class=note id=logs_note></p></div></div>
<h3>Destination record</h3><pre id=destination></pre><p class=note id=destination_note></p>
</div>
<script>
"use strict";
"""
    + _HELPERS
    + """const q = new URLSearchParams(location.search), msg = document.getElementById("msg");
const ti = {dag_id: q.get("dag_id") || "", run_id: q.get("run_id") || "", task_id: q.get("task_id") || "",
  map_index: /^-?[0-9]+$/.test(q.get("map_index") || "") ? Number(q.get("map_index")) : -1};
const conn = document.getElementById("conn");
let timer = null;
function text(id, value) { document.getElementById(id).textContent = value == null ? "" : String(value); }
function guarded(id, g, empty) {
  text(id, g && g.text ? g.text : empty);
  text(id + "_note", g && g.truncated ? "cut to " + g.text.length + " of " + g.size + " characters" : "");
}
async function load() {
  const p = new URLSearchParams({dag_id: ti.dag_id, run_id: ti.run_id, task_id: ti.task_id,
    map_index: ti.map_index, conn_id: conn.value || "fc_default"});
  let t;
  try { t = await call("api/ti?" + p.toString()); }
  catch (e) {
    msg.className = "err"; msg.textContent = e.message;
    document.getElementById("view").hidden = true; document.getElementById("actions").replaceChildren();
    text("live", "");
    if (e.status === 404 || e.status >= 500) schedule(5000);
    return;
  }
  msg.textContent = ""; msg.className = "";
  if (t.conn_id) conn.value = t.conn_id;
  const info = document.getElementById("info"); info.replaceChildren();
  for (const [k, v] of [["FC task id", t.task_id], ["function", t.function + ":" + t.qualifier],
      ["status", t.status], ["started", when(t.started)], ["ended", when(t.ended)], ["duration", duration(t)],
      ["retries", t.retries], ["error", t.error], ["destination status", t.destination_status],
      ["request id", t.request_id], ["task instance state", t.ti_state]]) {
    const tr = info.insertRow(); const th = document.createElement("th"); th.textContent = k; tr.appendChild(th);
    td(tr, v);
  }
  info.rows[2].dataset.status = t.status;
  const ev = document.querySelector("#events tbody"); ev.replaceChildren();
  for (const e of t.events) { const tr = ev.insertRow(); td(tr, when(e.time)); td(tr, e.status); td(tr, e.detail); }
  guarded("payload", t.payload, "(empty)");
  guarded("return_payload", t.return_payload, t.terminal ? "(empty)" : "(not yet)");
  guarded("logs", t.logs, t.logs.configured ? (t.logs.error || "(no line yet)")
    : "The function has no logConfig: its log lines are not collected.");
  guarded("destination", t.destination_record, "(none recorded for this task instance)");
  const act = document.getElementById("actions"); act.replaceChildren();
  if (t.can_edit) {
    for (const [label, path, show] of [["Stop", "api/ti/stop", !t.terminal], ["Re-run", "api/ti/rerun", t.terminal]]) {
      if (!show) continue;
      const b = document.createElement("button"); b.textContent = label; b.type = "button"; b.id = path.split("/")[2];
      b.onclick = () => act_on(path); act.appendChild(b);
    }
  }
  document.getElementById("view").hidden = false;
  const logs = document.getElementById("logs"); logs.scrollTop = logs.scrollHeight;  // the newest lines (visible now)
  text("live", t.terminal ? "final" : "live: refreshing every 3 s");
  if (!t.terminal) schedule(3000);
}
async function act_on(path) {
  try {
    const r = await call(path, {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify(Object.assign({conn_id: conn.value || "fc_default"}, ti))});
    msg.className = "";
    msg.textContent = path.endsWith("stop") ? "Stop requested: " + r.stopped : "Re-run started: FC task " + r.task_id;
    schedule(1000);
  } catch (e) { msg.textContent = e.message; msg.className = "err"; }
}
conn.onchange = () => load();
load();
</script></body></html>
"""
)
