// The inspector's page script. Every piece of data arrives as HTML rendered (and escaped) by
// the server, or as JSON read with textContent: nothing from a session is ever evaluated.
"use strict";

(function () {
  const body = document.body;
  const base = body.dataset.base || "";
  const live = body.dataset.live === "true";
  const TOKEN_KEY = "sandbox-agent-token";

  function $(id) { return document.getElementById(id); }
  function say(text) { const el = $("status-line"); if (el) el.textContent = text; }

  // -- the token: asked for once, kept in this tab's sessionStorage, sent as a header --------
  let tokenWaiters = [];
  function askToken() {
    const form = $("token-form");
    form.hidden = false;
    $("token-input").focus();
    return new Promise((resolve) => tokenWaiters.push(resolve));
  }
  if ($("token-form")) {
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token-input").value);
      $("token-form").hidden = true;
      const waiters = tokenWaiters;
      tokenWaiters = [];
      waiters.forEach((w) => w());
    });
  }

  async function request(path, options) {
    for (;;) {
      const opts = Object.assign({}, options || {});
      const headers = Object.assign({}, opts.headers || {});
      const token = sessionStorage.getItem(TOKEN_KEY);
      if (token) headers["Authorization"] = "Bearer " + token;
      opts.headers = headers;
      const response = await fetch(path, opts);
      if (response.status !== 401) return response;
      say("this server wants a token");
      await askToken();
    }
  }

  async function json(path, options) {
    const response = await request(path, options);
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new Error(response.status + " " + detail);
    }
    return response.status === 204 ? {} : response.json();
  }

  function fail(err) { say(String(err.message || err)); }

  // -- the session list ----------------------------------------------------------------
  function listPage() {
    let cursor = null;
    let loaded = 0;
    async function load(reset) {
      if (reset) { cursor = null; loaded = 0; $("session-rows").innerHTML = ""; }
      const params = new URLSearchParams();
      if (cursor) params.set("cursor", cursor);
      for (const name of ["q", "status", "agent"]) {
        const value = $(name).value.trim();
        if (value) params.set(name, value);
      }
      const page = await json(base + "/api/sessions?" + params);
      $("session-rows").insertAdjacentHTML("beforeend", page.html);
      countAnomalies();
      loaded += page.count;
      cursor = page.nextCursor;
      $("more").hidden = !cursor;
      $("list-note").textContent = loaded + " session(s) shown" + (cursor ? ", more on the next page" : "");
      body.dataset.loaded = String(loaded);
    }
    // Filters from the address (?q=&status=&agent=), so that a filtered list can be shared.
    const given = new URLSearchParams(location.search);
    for (const name of ["q", "status", "agent"]) {
      if (given.get(name)) $(name).value = given.get(name);
    }
    // Each row's anomaly count, a few requests at a time, after the list has painted.
    let counting = 0;
    function countAnomalies() {
      while (counting < 3) {
        const cell = document.querySelector("td[data-anomalies]:not([data-asked])");
        if (!cell) return;
        cell.dataset.asked = "true";
        counting += 1;
        json(base + "/api/sessions/" + encodeURIComponent(cell.dataset.anomalies) + "/anomalies")
          .then((answer) => {
            cell.textContent = String(answer.count);
            if (answer.count) cell.classList.add("bad");
            cell.dataset.count = String(answer.count);
          })
          .catch(() => { cell.textContent = "?"; })
          .finally(() => { counting -= 1; countAnomalies(); });
      }
    }
    $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); load(true).catch(fail); });
    $("more").addEventListener("click", () => load(false).catch(fail));
    load(true).catch(fail);
  }

  // -- the session view ----------------------------------------------------------------
  function sessionPage() {
    const id = body.dataset.session;
    const api = base + "/api/sessions/" + encodeURIComponent(id);
    const v1 = "/v1/sessions/" + encodeURIComponent(id);
    const slider = $("slider");
    let last = 0;
    let ticket = 0;
    let marks = [];
    let types = null;
    let eventsAfter = 0;
    let follow = null;
    let atLatest = true; // the view shows the newest event: following moves it along

    function setLast(n) {
      last = n;
      slider.max = String(n);
      $("seq").max = String(n);
    }

    async function loadAt(seq, scrollTo) {
      const mine = ++ticket;
      const query = seq === null ? "" : "?seq=" + seq;
      const view = await json(api + "/at" + query);
      if (mine !== ticket) return; // a newer move won
      setLast(view.lastSequence);
      $("header").innerHTML = view.header;
      $("transcript").innerHTML = view.transcript;
      $("state").innerHTML = view.state;
      slider.value = String(view.sequence);
      $("seq").value = String(view.sequence);
      $("at-label").textContent = "#" + view.sequence + " of " + view.lastSequence;
      $("transcript-at").textContent = "at #" + view.sequence;
      showAnomalies(view.anomalies, false);
      if (types === null) buildTypeFilters(view.types);
      body.dataset.at = String(view.sequence);
      atLatest = view.sequence >= view.lastSequence;
      if (scrollTo !== undefined) {
        const el = document.getElementById("seq-" + scrollTo);
        if (el) { el.scrollIntoView({ block: "center" }); el.classList.add("focus"); }
      }
    }

    function showAnomalies(list, checked) {
      marks = list.map((a) => a.sequence);
      const box = $("anomalies");
      box.textContent = "";
      if (!list.length) {
        const p = document.createElement("p");
        p.className = "none";
        p.textContent = checked ? "The replay check found nothing." : "No anomaly up to here.";
        box.appendChild(p);
      } else {
        const ul = document.createElement("ul");
        ul.className = "anomaly-list";
        for (const a of list) {
          const li = document.createElement("li");
          li.className = "anomaly";
          const link = document.createElement("a");
          link.href = "#seq-" + a.sequence;
          link.dataset.seq = String(a.sequence);
          link.textContent = "#" + a.sequence;
          const kind = document.createElement("b");
          kind.textContent = " " + a.kind + " ";
          li.append(link, kind, document.createTextNode(a.message));
          ul.appendChild(li);
        }
        box.appendChild(ul);
      }
      // Marks on the timeline, placed by sequence.
      const rail = $("marks");
      rail.textContent = "";
      for (const seq of marks) {
        const mark = document.createElement("a");
        mark.className = "mark";
        mark.href = "#seq-" + seq;
        mark.dataset.seq = String(seq);
        mark.title = "anomaly at #" + seq;
        mark.style.left = (last ? (100 * seq) / last : 0) + "%";
        rail.appendChild(mark);
      }
    }

    function buildTypeFilters(list) {
      types = new Set();
      const box = $("type-filters");
      box.textContent = "";
      for (const type of list) {
        const label = document.createElement("label");
        const input = document.createElement("input");
        input.type = "checkbox";
        input.value = type;
        input.addEventListener("change", () => {
          if (input.checked) types.add(type); else types.delete(type);
          loadEvents(true).catch(fail);
        });
        label.append(input, document.createTextNode(" " + type + " "));
        box.appendChild(label);
      }
    }

    async function loadEvents(reset) {
      if (reset) { eventsAfter = 0; $("event-rows").innerHTML = ""; }
      const params = new URLSearchParams({ after: String(eventsAfter) });
      if (types && types.size) params.set("types", Array.from(types).join(","));
      if (marks.length) params.set("marks", marks.join(","));
      const page = await json(api + "/events?" + params);
      $("event-rows").insertAdjacentHTML("beforeend", page.html);
      eventsAfter = page.nextAfter;
      $("more-events").hidden = page.end;
    }

    // A move loads at once; moves made while a load runs wait for it, and only the newest of
    // them loads next (dragging never queues a request per pixel).
    let sliding = false;
    let wanted = null;
    async function slideTo(seq) {
      wanted = seq;
      if (sliding) return;
      sliding = true;
      try {
        while (wanted !== null) {
          const next = wanted;
          wanted = null;
          await loadAt(next);
        }
      } finally {
        sliding = false;
      }
    }
    slider.addEventListener("input", () => {
      const seq = Number(slider.value);
      $("at-label").textContent = "#" + seq + " of " + last;
      slideTo(seq).catch(fail);
    });
    $("seq").addEventListener("change", () => loadAt(Number($("seq").value)).catch(fail));
    $("latest").addEventListener("click", () => loadAt(null).catch(fail));
    $("more-events").addEventListener("click", () => loadEvents(false).catch(fail));

    document.addEventListener("click", (ev) => {
      const target = ev.target instanceof Element ? ev.target : null;
      if (!target) return;
      const seqLink = target.closest("[data-seq]");
      if (seqLink && seqLink.tagName === "A") {
        ev.preventDefault();
        const seq = Number(seqLink.dataset.seq);
        loadAt(seq, seq).catch(fail);
        return;
      }
      const raw = target.closest("[data-raw-state]");
      if (raw) {
        ev.preventDefault();
        request(api + "/state.json?seq=" + raw.dataset.rawState)
          .then((r) => r.text())
          .then((text) => {
            const pre = document.createElement("pre");
            pre.className = "raw-state";
            pre.textContent = text;
            raw.replaceWith(pre);
          })
          .catch(fail);
        return;
      }
      const act = target.closest("button.act");
      if (act) {
        const opts = { method: act.dataset.method };
        if (act.dataset.body) {
          opts.body = act.dataset.body;
          opts.headers = { "content-type": "application/json" };
        }
        json(act.dataset.path, opts)
          .then(() => { say("sent: " + act.textContent); return loadAt(null); })
          .catch(fail);
        return;
      }
      const copy = target.closest("button.copy");
      if (copy) {
        const text = $(copy.dataset.copy).textContent;
        if (navigator.clipboard) navigator.clipboard.writeText(text).catch(fail);
        say("copied");
      }
    });

    $("diff-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const params = new URLSearchParams({ a: $("diff-a").value, b: $("diff-b").value });
      json(api + "/diff?" + params).then((d) => { $("diff").innerHTML = d.html; }).catch(fail);
    });
    $("check").addEventListener("click", () => {
      json(api + "/check").then((c) => {
        showAnomalies(c.anomalies, true);
        body.dataset.checked = "true";
      }).catch(fail);
    });

    const forkForm = $("fork-form");
    if (forkForm) {
      forkForm.addEventListener("submit", (ev) => {
        ev.preventDefault();
        const template = body.dataset.forkUrl;
        const url = template ? template.replace("{id}", encodeURIComponent(id)) : api + "/fork";
        const payload = { sessionId: $("fork-id").value.trim(), at: Number($("fork-at").value) };
        json(url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(payload),
        }).then(() => {
          const link = document.createElement("a");
          link.href = base + "/s/" + encodeURIComponent(payload.sessionId);
          link.id = "fork-link";
          link.textContent = "forked: " + payload.sessionId;
          const out = $("fork-result");
          out.textContent = "";
          out.appendChild(link);
        }).catch(fail);
      });
    }

    // -- live: follow the stream (fetch, so the token goes in a header, not the URL) --------
    let refreshTimer = null;
    function onEvents(lastSeen) {
      setLast(Math.max(last, lastSeen));
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(() => {
        if (atLatest) loadAt(null).catch(fail);
        if ($("more-events").hidden) loadEvents(false).catch(fail);
      }, 100);
    }

    async function startFollow() {
      const controller = new AbortController();
      follow = controller;
      const url = live ? v1 + "/events/sse?offset=" + last : api + "/follow?after=" + last;
      const response = await request(url, { signal: controller.signal, headers: { accept: "text/event-stream" } });
      if (!response.ok) throw new Error(response.status + " " + response.statusText);
      say("following");
      body.dataset.following = "true";
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        let newest = 0;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = frame.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("\n");
          if (!data) continue;
          try { newest = Math.max(newest, JSON.parse(data).sequence || 0); } catch (e) { /* not an event */ }
        }
        if (newest) onEvents(newest);
      }
      say("stream ended");
      body.dataset.following = "false";
    }
    $("follow").addEventListener("change", () => {
      if ($("follow").checked) {
        startFollow().catch((err) => { if (err.name !== "AbortError") fail(err); });
      } else if (follow) {
        follow.abort();
        follow = null;
        body.dataset.following = "false";
        say("stopped following");
      }
    });

    if (live) {
      const curl = (path, payload) =>
        'curl -X POST -H "Authorization: Bearer $SANDBOX_AGENT_TOKEN"' +
        (payload ? " -H 'content-type: application/json' -d '" + JSON.stringify(payload).replace(/'/g, "'\\''") + "'" : "") +
        ' "$SANDBOX_AGENT_URL' + path + '"';
      $("curl-prompt").textContent = curl(v1 + "/messages", { message: "hello" });
      $("curl-cancel").textContent = curl(v1 + "/cancel");
      $("prompt-form").addEventListener("submit", (ev) => {
        ev.preventDefault();
        const message = $("prompt").value;
        json(v1 + "/messages", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ message: message }),
        }).then(() => { $("prompt").value = ""; say("prompt sent"); return loadAt(null); }).catch(fail);
      });
      $("cancel").addEventListener("click", () => {
        json(v1 + "/cancel", { method: "POST" }).then(() => say("cancel sent")).catch(fail);
      });
    }

    const hash = /^#seq-(\d+)$/.exec(location.hash);
    const start = hash ? Number(hash[1]) : null;
    loadAt(start, start === null ? undefined : start)
      .then(() => loadEvents(true))
      .then(() => { body.dataset.ready = "true"; })
      .catch(fail);
  }

  if (body.dataset.page === "list") listPage();
  if (body.dataset.page === "session") sessionPage();
})();
