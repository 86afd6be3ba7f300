// The dashboard's live view: poll /admin/state.json, redraw the tables, tick the cull
// countdowns and ages every second, and show a build's log in place.
(function () {
  "use strict";
  const root = document.getElementById("dashboard");
  if (!root) return;
  const csrf = root.dataset.csrf;
  const $ = (id) => document.getElementById(id);
  let skew = 0;  // the server's clock minus ours, in ms

  const esc = (value) => String(value === null || value === undefined ? "" : value)
    .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");

  function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return (h ? h + " h " : "") + (h || m ? m + " min " : "") + s + " s";
  }

  function tick() {
    const now = Date.now() + skew;
    document.querySelectorAll(".cull[data-cull-at]").forEach((cell) => {
      const at = Date.parse(cell.dataset.cullAt);
      cell.textContent = isNaN(at) ? "–" : duration((at - now) / 1000);
    });
    document.querySelectorAll(".age[data-since]").forEach((cell) => {
      const since = Date.parse(cell.dataset.since);
      cell.textContent = isNaN(since) ? "" : duration((now - since) / 1000);
    });
  }

  const hidden = '<input type="hidden" name="csrf" value="' + esc(csrf) + '">';

  function stagingRow(s) {
    const rate = s.hit_rate === null ? "–" : Math.round(s.hit_rate * 100) + "%";
    return '<tr data-staging="' + esc(s.name) + '"><td><strong>' + esc(s.name) + "</strong>" +
      (s.public ? ' <span class="tag">public</span>' : "") + "</td><td>" + esc(s.status) +
      "</td><td>" + s.pool.ready + "</td><td>" + s.pool.starting + "</td><td>" + s.pool.in_use +
      "</td><td>" + rate + '</td><td><form method="post" action="/admin/pools/' +
      encodeURIComponent(s.name) + '" class="inline pool-form">' + hidden +
      '<input type="number" name="size" min="0" value="' + s.pool.size + '" class="size">' +
      '<button class="button" type="submit">Set</button></form></td></tr>';
  }

  function serverRow(s) {
    const stoppable = ["pending", "starting", "ready"].includes(s.status);
    return '<tr data-server="' + esc(s.id) + '" data-status="' + esc(s.status) + '"><td><code>' +
      esc(s.id) + "</code>" + (s.pooled ? ' <span class="tag">pooled</span>' : "") + "</td><td>" +
      esc(s.staging) + '</td><td class="status-cell">' + esc(s.status) +
      (s.error ? ' <span class="error">' + esc(s.error) + "</span>" : "") +
      '</td><td class="age" data-since="' + esc(s.created_at) + '"></td><td class="cull" ' +
      'data-cull-at="' + esc(s.cull_at || "") + '"></td><td>' + (stoppable ?
        '<form method="post" action="/admin/servers/' + encodeURIComponent(s.id) +
        '/stop" class="inline">' + hidden +
        '<button class="button danger" type="submit">Stop</button></form>' : "") + "</td></tr>";
  }

  function buildRow(b) {
    return '<tr data-build="' + esc(b.id) + '"><td><code>' + esc(b.id) + "</code></td><td>" +
      esc(b.repo) + "</td><td>" + esc(b.ref) + "</td><td>" + esc(b.status) +
      (b.cached ? " (cached)" : "") + "</td><td>" + esc(b.created_at) + '</td><td><a href="/admin/builds/' +
      encodeURIComponent(b.id) + '/log" class="log-link" data-build="' + esc(b.id) + '">log</a></td></tr>';
  }

  function fill(table, rows, empty, columns) {
    const body = $(table).querySelector("tbody");
    if (body.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;
    body.innerHTML = rows.length ? rows.join("") : '<tr><td colspan="' + columns + '">' + empty + "</td></tr>";
  }

  function draw(state) {
    skew = Date.parse(state.now) - Date.now();
    const checks = Object.entries(state.health.checks).map(([name, check]) =>
      '<span class="check ' + (check.ok ? "ok" : "down") + '" title="' + esc(check.error || "") +
      '">' + esc(name) + ": " + (check.ok ? "up" : "down") + "</span>");
    const queues = Object.entries(state.queues).map(([name, depth]) =>
      '<span class="check queue">queue ' + esc(name) + ": " + (depth === null ? "?" : depth) + "</span>");
    $("health").innerHTML = checks.concat(queues).join(" ");
    fill("stagings", state.stagings.map(stagingRow), "No staging yet.", 7);
    fill("servers", state.servers.map(serverRow), "No server.", 6);
    fill("builds", state.builds.map(buildRow), "No build yet.", 6);
    tick();
  }

  async function poll() {
    try {
      const response = await fetch("/admin/state.json", { credentials: "same-origin" });
      if (response.status === 401) { location.reload(); return; }
      if (response.ok) draw(await response.json());
    } catch (error) { /* the next poll tries again */ }
  }

  document.addEventListener("click", async (event) => {
    const link = event.target.closest(".log-link");
    if (!link) return;
    event.preventDefault();
    const response = await fetch(link.getAttribute("href"), { credentials: "same-origin" });
    $("build-log").textContent = await response.text();
    $("build-log").hidden = false;
  });

  tick();
  setInterval(tick, 1000);
  setInterval(poll, 2000);
}());
