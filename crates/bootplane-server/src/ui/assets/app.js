// bootplane dashboard: the fleet filter and live updates. Every fact shown comes from
// the server (the stream carries each machine's step and state); this only draws it.
"use strict";
(function () {
  const body = document.body;

  // Filter rows by the words typed (all must match the row's search text).
  const filter = document.getElementById("filter");
  function applyFilter() {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const tr of document.querySelectorAll("tr[data-machine]")) {
      const text = tr.dataset.search || "";
      tr.hidden = !words.every((w) => text.includes(w));
    }
  }
  if (filter) {
    filter.addEventListener("input", applyFilter);
  }

  if (body.dataset.page !== "fleet" || !body.dataset.after) return;

  const live = document.getElementById("live");
  const rows = new Map();
  for (const tr of document.querySelectorAll("tr[data-machine]")) rows.set(tr.dataset.machine, tr);
  const byState = body.dataset.group === "state";

  function drawChain(tr, u) {
    const ol = tr.querySelector("ol.chain");
    if (!ol) return;
    ol.classList.toggle("failed", u.progress.failed);
    ol.setAttribute("aria-label", "boot chain: " + u.step_label);
    ol.querySelectorAll("li").forEach((li, i) => {
      li.classList.toggle("done", ((u.progress.reached >> i) & 1) === 1);
      li.classList.toggle("at", i === u.step_index);
    });
    const label = tr.querySelector(".step");
    if (label) label.textContent = u.step_label;
    tr.classList.toggle("failed", u.progress.failed);
  }

  function drawLast(tr, u) {
    const td = tr.querySelector('[data-field="last"]');
    if (!td) return;
    td.textContent = "";
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = u.kind;
    const sum = document.createElement("span");
    sum.className = "sum";
    sum.textContent = " " + u.summary;
    const time = document.createElement("time");
    time.dateTime = u.time;
    time.textContent = u.time.slice(0, 19).replace("T", " ");
    td.append(kind, sum, document.createElement("br"), time);
  }

  function moveToState(tr, state) {
    const badge = tr.querySelector('[data-field="state"]');
    if (badge) {
      badge.textContent = state;
      badge.className = "badge state-" + state;
    }
    tr.dataset.state = state;
    if (!byState) return;
    const group = document.querySelector('section.group[data-group="' + CSS.escape(state) + '"]');
    if (group && tr.closest("section.group") !== group) {
      group.querySelector("tbody").appendChild(tr);
    }
  }

  function recount() {
    const counts = {};
    for (const tr of rows.values()) counts[tr.dataset.state] = (counts[tr.dataset.state] || 0) + 1;
    for (const a of document.querySelectorAll("[data-count]")) {
      const n = counts[a.dataset.count] || 0;
      a.querySelector("b").textContent = n;
      a.classList.toggle("zero", n === 0);
    }
    for (const g of document.querySelectorAll("section.group")) {
      const n = g.querySelectorAll("tr[data-machine]").length;
      g.hidden = n === 0;
      g.querySelector("h2 .n").textContent = n;
    }
  }

  // Updates arrive in bursts; they are applied every 50 ms so a busy fleet (hundreds
  // of events a second) costs one layout per batch, not one per event. A timer, not
  // requestAnimationFrame: a page in a background tab must not fall behind.
  let queue = [];
  let scheduled = false;
  function flush() {
    scheduled = false;
    const batch = queue;
    queue = [];
    let moved = false;
    const touched = new Set();
    for (const u of batch) {
      const tr = rows.get(u.machine);
      if (!tr) {
        document.getElementById("new-machines").hidden = false;
        continue;
      }
      drawChain(tr, u);
      drawLast(tr, u);
      if (u.state && u.state !== tr.dataset.state) {
        moveToState(tr, u.state);
        moved = true;
      }
      touched.add(tr);
    }
    if (moved) recount();
    for (const tr of touched) {
      tr.classList.remove("flash");
      void tr.offsetWidth;
      tr.classList.add("flash");
    }
    if (batch.length) body.dataset.applied = batch[batch.length - 1].id;
    if (filter && filter.value) applyFilter();
  }

  const source = new EventSource("/ui/stream?after=" + encodeURIComponent(body.dataset.after));
  source.addEventListener("open", () => {
    live.textContent = "live";
    live.className = "live on";
  });
  source.addEventListener("error", () => {
    live.textContent = "reconnecting…";
    live.className = "live off";
  });
  source.addEventListener("update", (ev) => {
    queue.push(JSON.parse(ev.data));
    if (!scheduled) {
      scheduled = true;
      setTimeout(flush, 50);
    }
  });
})();
