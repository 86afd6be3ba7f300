// The launch page: follow a repository's build and launch (BinderHub's stream, read with
// fetch so that a 429 and its Retry-After can be seen), or launch a public staging through
// the JSON API (waiting in its launch queue at capacity, showing the place in line and the
// eta); wait visibly when told to; then bind the server to this browser and open it.
(function () {
  "use strict";
  const box = document.getElementById("launch");
  if (!box) return;
  const d = box.dataset;
  const $ = (id) => document.getElementById(id);
  const here = location.pathname + location.search;  // as the browser sent it: encoded
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return (h ? h + " h " : "") + (h || m ? m + " min " : "") + s + " s";
  }

  function countdownTo(element, iso) {
    if (!element || !iso) return;
    const at = Date.parse(iso);
    const tick = () => { element.textContent = duration((at - Date.now()) / 1000); };
    tick();
    setInterval(tick, 1000);
  }

  function status(text) { $("status").textContent = text; }

  function phase(name) {
    let reached = false;
    const items = Array.from(document.querySelectorAll("#phases li"));
    const index = items.findIndex((li) => li.dataset.phase === name);
    if (index < 0) return;
    items.forEach((li, i) => {
      li.classList.toggle("done", i < index);
      li.classList.toggle("current", i === index);
      reached = reached || i === index;
    });
  }

  function log(text) {
    $("log-box").hidden = false;
    const pre = $("log");
    pre.textContent += text;
    pre.scrollTop = pre.scrollHeight;
  }

  function fail(message) {
    $("waiting").hidden = true;
    $("error").textContent = message || "The launch failed.";
    $("error").hidden = false;
    $("retry").hidden = false;
    status("Stopped.");
    document.title = "Launch failed · binderq";
  }

  async function messageOf(response) {
    try { return (await response.json()).message || response.statusText; }
    catch (error) { return "HTTP " + response.status; }
  }

  // Told to wait (429, or a full service in the stream): count the seconds down, try again.
  async function waitThenRetry(message, seconds, again) {
    $("waiting").hidden = false;
    $("waiting-message").textContent = message;
    status("Waiting for room…");
    for (let left = Math.max(1, seconds); left > 0; left--) {
      $("retry-seconds").textContent = left;
      await sleep(1000);
    }
    $("waiting").hidden = true;
    again();
  }

  async function refused(response, again) {
    const seconds = parseInt(response.headers.get("Retry-After"), 10) || 5;
    waitThenRetry(await messageOf(response), seconds, again);
  }

  function onEvent(event) {
    if (event.phase === "failed") {
      if (event.retry_after) waitThenRetry(event.message, event.retry_after, followRepository);
      else fail(event.message);
      return true;
    }
    phase(event.phase);
    if (event.phase === "building" && event.message && event.message.endsWith("\n")) {
      log(event.message);
      status("Building the image…");
    } else if (event.message) {
      status(event.message);
    }
    if (event.phase === "ready") {
      const found = /\/user\/([^/]+)\/?$/.exec(event.url) || [];
      openServer(event.url, event.token, found[1] || "");
      return true;
    }
    return false;
  }

  async function followRepository() {
    status("Asking for the build…");
    let response;
    try {
      response = await fetch("/build" + location.pathname.slice(3),
                             { headers: { Accept: "text/event-stream" } });
    } catch (error) {
      return waitThenRetry("The service did not answer.", 5, followRepository);
    }
    if (response.status === 429) return refused(response, followRepository);
    if (!response.ok) return fail(await messageOf(response));
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block.split("\n").filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trim()).join("\n");
        if (data && onEvent(JSON.parse(data))) return;
      }
    }
    fail("The stream ended before the server was ready.");
  }

  async function launchStaging() {
    phase("launching");
    status("Asking for a server…");
    let response;
    try {
      // At capacity, wait in the launch queue (202 `queued`) rather than be refused.
      response = await fetch("/api/stagings/" + encodeURIComponent(d.staging) +
                             "/servers?queue=true",
                             { method: "POST", headers: { Accept: "application/json" } });
    } catch (error) {
      return waitThenRetry("The service did not answer.", 5, launchStaging);
    }
    if (response.status === 429) return refused(response, launchStaging);
    if (!response.ok) return fail(await messageOf(response));
    const server = await response.json();
    if (server.status === "ready") return openServer(server.url, server.token, server.id);
    pollServer(server.id, server.token, server);
  }

  function queued(server) {
    const eta = server.eta === null || server.eta === undefined ? ""
      : " (about " + duration(server.eta) + ")";
    return "Waiting for room: number " + server.position + " in line" + eta + "…";
  }

  // Each ask waits (?wait=) until the server's status changes, so the page hears of ready
  // at once without polling; a busy API answers at once with Retry-After, and the page
  // pauses. Asking also keeps a queued launch in line: one nobody asks for leaves the
  // queue. The 5 minutes to get ready start once it leaves the queue; the queue may take 30.
  async function pollServer(id, token, server) {
    const started = Date.now();
    let deadline = started + 5 * 60 * 1000;
    let waitSeconds = 20;
    if (server && server.status === "queued") { status(queued(server)); waitSeconds = 5; }
    while (Date.now() < deadline) {
      let server;
      try {
        const response = await fetch("/api/servers/" + encodeURIComponent(id)
                                     + "?wait=" + waitSeconds,
                                     { headers: { Authorization: "token " + token } });
        if (!response.ok) { await sleep(500); continue; }
        if (response.headers.get("Retry-After")) await sleep(1000);
        server = await response.json();
      } catch (error) { await sleep(500); continue; }
      waitSeconds = server.status === "queued" ? 5 : 20;  // a queued one's place, updated
      if (server.status === "ready") return openServer(server.url, token, id);
      if (["failed", "stopping", "stopped"].includes(server.status)) {
        return fail(server.error || "Your server is " + server.status + ".");
      }
      if (server.status === "queued") {
        deadline = Math.max(deadline, Math.min(Date.now() + 5 * 60 * 1000,
                                               started + 30 * 60 * 1000));
        status(queued(server));
      } else {
        status("Your server is " + server.status + "…");
      }
    }
    fail("Your server was not ready in time.");
  }

  async function servesLab(url, token) {
    try {
      const response = await fetch(url + "lab?token=" + encodeURIComponent(token),
                                   { credentials: "omit" });
      return response.ok;
    } catch (error) { return false; }
  }

  // Remember the server for this link (a cookie without its token), then go in.
  async function openServer(url, token, id) {
    phase("ready");
    status("Your server is ready: opening it…");
    const lab = d.labpath ? await servesLab(url, token) : false;
    let target = url + "?token=" + encodeURIComponent(token);
    try {
      const response = await fetch(here, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ action: "bind", server_id: id, token: token, lab: lab }),
      });
      if (response.ok) target = (await response.json()).location;
    } catch (error) { /* open it all the same; it just will not resume */ }
    location.assign(target);
  }

  function resume() {
    countdownTo($("cull-countdown"), d.resumeCullAt);
    let left = 8;
    const timer = setInterval(() => {
      left -= 1;
      $("resume-seconds").textContent = left;
      if (left <= 0) { clearInterval(timer); location.assign(d.resumeLocation); }
    }, 1000);
    const stop = () => { clearInterval(timer); $("resume-auto").hidden = true; };
    $("start-fresh").addEventListener("click", stop);
    $("resume-open").addEventListener("click", stop);
  }

  if (d.resumeLocation !== undefined) resume();
  else if (d.kind === "repository") followRepository();
  else launchStaging();
}());
