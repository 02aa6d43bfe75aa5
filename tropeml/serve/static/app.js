/* tropeml's page: upload a fic (or open a report), see its tags in the text.
 *
 * Served by `tropeml serve`, the page posts the fic to api/analyse and reads its answer as
 * JSON lines (progress, then the view). In a report (`tropeml report`), the views are inlined
 * in <script id="tropeml-data"> and nothing is fetched. Offsets from the server count Unicode
 * code points; JavaScript strings count UTF-16 units, so they are converted here.
 */
(function () {
  "use strict";

  const $ = (sel) => document.querySelector(sel);
  const state = { views: [], view: null, tag: null, index: 0, spoilers: false, units: null };

  function el(name, attrs, ...children) {
    const node = document.createElement(name);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) node.append(c);
    return node;
  }

  const pct = (x) => `${Math.round(x * 100)}%`;
  const num = (x) => x.toFixed(2);
  // a model with a work calibrator has no score threshold: the tag fires when its evidence beats chance
  const decidedBy = (t) => (t.threshold === null ? "evidence beats chance" : `threshold ${num(t.threshold)}`);

  /* ------------------------------------------------------------------ offsets */

  // UTF-16 index of each code point offset (only built when the text has astral characters).
  function unitMap(text) {
    if (!/[\uD800-\uDFFF]/.test(text)) return null;
    const map = [0];
    let i = 0;
    for (const ch of text) {
      i += ch.length;
      map.push(i);
    }
    return map;
  }
  const unit = (offset) => (state.units ? state.units[offset] : offset);

  /* ------------------------------------------------------------------ errors, progress */

  function showError(message) {
    const box = $("#error");
    box.textContent = message;
    box.hidden = false;
  }

  function hideError() {
    $("#error").hidden = true;
    $("#error").textContent = "";
  }

  function busy(on, text) {
    $("#go").disabled = on;
    $("#status").hidden = !on;
    document.body.classList.toggle("busy", on);
    if (on) setProgress(null, null, text || "Uploading");
  }

  function setProgress(done, total, text) {
    const bar = $("#progress");
    if (done === null || !total) bar.removeAttribute("value");
    else bar.value = done / total;
    $("#status-text").textContent = text;
  }

  /* ------------------------------------------------------------------ upload */

  function submit(event) {
    event.preventDefault();
    const file = $("#file").files[0];
    const pasted = $("#paste").value;
    const form = new FormData();
    if (file) form.append("file", file, file.name);
    else if (pasted.trim()) {
      form.append("file", new Blob([pasted], { type: "text/plain" }), "pasted text");
    } else {
      showError("Choose a file or paste some text first.");
      return;
    }
    hideError();
    busy(true, "Uploading");
    const xhr = new XMLHttpRequest();
    let seen = 0;
    let finished = false;
    const consume = () => {
      const body = xhr.responseText;
      let nl;
      while ((nl = body.indexOf("\n", seen)) >= 0) {
        const line = body.slice(seen, nl);
        seen = nl + 1;
        if (!line.trim()) continue;
        const message = JSON.parse(line);
        if (message.event === "progress") {
          const text =
            message.total === 0
              ? "Tagging"
              : `Tagging: ${message.done} of ${message.total} passages read`;
          setProgress(message.done, message.total, text);
        } else if (message.event === "result") {
          finished = true;
          state.views = [message.view];
          showWorks();
          show(0);
        } else if (message.event === "error") {
          finished = true;
          showError(message.error);
        }
      }
    };
    xhr.open("POST", "api/analyse");
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) setProgress(e.loaded, e.total, "Uploading");
    };
    xhr.onprogress = () => {
      if (xhr.status === 200) consume();
    };
    xhr.onload = () => {
      busy(false);
      if (xhr.status === 200) {
        consume();
        if (!finished) showError("The server stopped before the tags were ready.");
        return;
      }
      let message = `The server answered ${xhr.status}.`;
      try {
        message = JSON.parse(xhr.responseText).error || message;
      } catch (_) {
        /* not JSON: keep the status line */
      }
      showError(message);
    };
    xhr.onerror = () => {
      busy(false);
      showError("The server could not be reached (is tropeml serve still running?).");
    };
    xhr.send(form);
  }

  /* ------------------------------------------------------------------ the view */

  function showWorks() {
    const nav = $("#works");
    nav.replaceChildren();
    nav.hidden = state.views.length < 2;
    state.views.forEach((v, i) => {
      nav.append(el("button", { type: "button", "data-work": i, onclick: () => show(i) }, v.title));
    });
  }

  function show(i) {
    const view = state.views[i];
    state.view = view;
    state.tag = null;
    state.index = 0;
    state.spoilers = false;
    state.units = unitMap(view.text);
    document.querySelectorAll("#works button").forEach((b) => {
      b.classList.toggle("selected", Number(b.dataset.work) === i);
    });
    $("#work-title").textContent = view.title;
    const r = view.result;
    const chapters = view.regions.filter((x) => x.chapter).length;
    $("#work-info").textContent =
      `${view.source} · ${r.n_passages} passages` +
      (chapters ? ` · ${chapters} chapters` : "") +
      ` · model ${r.model}`;
    renderTags();
    renderAudit();
    renderTimeline();
    renderText([]);
    $("#jump").hidden = true;
    $("#view").hidden = false;
  }

  function tagButton(tag) {
    const bar = el("span", { class: "bar" });
    bar.style.width = pct(tag.prominence);
    return el(
      "li",
      {},
      el(
        "button",
        {
          type: "button",
          class: "tag" + (tag.spoiler ? " spoiler" : ""),
          "data-tag": tag.id,
          title: `${tag.id}: score ${num(tag.score)} (${decidedBy(tag)}); ` +
            `shows in ${pct(tag.prominence)} of the text`,
          onclick: () => selectTag(tag.id),
        },
        el("span", { class: "name", text: tag.name }),
        el("span", { class: "score", text: num(tag.score) }),
        el("span", { class: "prom" }, bar),
        el("span", {
          class: "detail",
          text: `shown in ${pct(tag.prominence)} · ${decidedBy(tag)}`,
        }),
      ),
    );
  }

  function renderTags() {
    const tags = state.view.result.tags;
    const plain = tags.filter((t) => !t.spoiler);
    const spoilers = tags.filter((t) => t.spoiler);
    const list = $("#tags");
    list.replaceChildren(...plain.map(tagButton));
    if (!plain.length) list.append(el("li", { class: "muted", text: "No tag over its threshold." }));
    $("#spoiler-box").hidden = spoilers.length === 0;
    $("#spoiler-tags").replaceChildren(...spoilers.map(tagButton));
    $("#spoiler-tags").hidden = true;
    const n = spoilers.length;
    $("#reveal").textContent = `Show ${n} spoiler tag${n === 1 ? "" : "s"}`;
    $("#reveal").hidden = false;
  }

  function reveal() {
    state.spoilers = true;
    $("#spoiler-tags").hidden = false;
    $("#reveal").hidden = true;
    renderTimeline();
  }

  function renderAudit() {
    const audit = state.view.audit;
    const box = $("#audit-body");
    box.replaceChildren();
    $("#audit").hidden = !audit;
    if (!audit) return;
    const written = state.view.meta ? state.view.meta.freeform : [];
    box.append(el("p", { class: "small" }, el("b", { text: "Tagged by the author: " }),
      written.length ? written.join(", ") : "none"));
    const byId = Object.fromEntries(state.view.result.tags.map((t) => [t.id, t]));
    const nameOf = (id) => (byId[id] ? byId[id].name : id);
    const section = (title, items, make) => {
      if (!items.length) return;
      box.append(el("h3", { text: title }));
      box.append(el("ul", { class: "findings" }, ...items.map(make)));
    };
    section("Confirmed", audit.confirmed, (id) => el("li", { text: nameOf(id) }));
    const finding = (f) => {
      const hidden = byId[f.id] && byId[f.id].spoiler && !state.spoilers;
      return el(
        "li",
        { class: "finding " + f.kind, "data-tag": f.id },
        el("b", { text: hidden ? "(a spoiler tag)" : f.name }),
        " ",
        el("span", { class: "small", text: hidden ? "Reveal spoilers to see it." : f.reason }),
      );
    };
    section("Found here, not in the author's tags", audit.unlisted, finding);
    section("In the author's tags, not found here", audit.unsupported, finding);
    const unmapped = audit.author_tags.unmapped || [];
    if (unmapped.length) {
      box.append(el("p", { class: "small muted", text: `Not tropes this model knows: ${unmapped.join(", ")}` }));
    }
  }

  function renderTimeline() {
    const view = state.view;
    const svg = state.spoilers && view.timeline_svg_spoilers ? view.timeline_svg_spoilers : view.timeline_svg;
    const box = $("#timeline");
    box.innerHTML = svg; // drawn by tropeml (report.timeline_svg), names escaped there
    box.querySelectorAll("g.series").forEach((g) => {
      g.addEventListener("click", (e) => {
        const dot = e.target.closest("circle[data-start]");
        selectTag(g.dataset.tag, dot ? Number(dot.dataset.start) : null);
      });
    });
    markSelected();
  }

  /* ------------------------------------------------------------------ text and evidence */

  function evidenceOf(id) {
    const tag = state.view.result.tags.find((t) => t.id === id);
    return tag ? tag.evidence : [];
  }

  // The text, chapter headings before their regions; `marks` are evidence passages.
  function renderText(marks) {
    const view = state.view;
    const text = view.text;
    const box = $("#text");
    box.replaceChildren();
    const order = marks.map((m, i) => ({ ...m, i })).sort((a, b) => a.start - b.start);
    let k = 0;
    const slice = (a, b) => text.slice(unit(a), unit(b));
    const body = (parent, a, b) => {
      let at = a;
      while (k < order.length && order[k].start < b) {
        const m = order[k++];
        const s = Math.max(m.start, at);
        if (s > at) parent.append(slice(at, s));
        const e = Math.min(m.end, b);
        parent.append(el("mark", { class: "evidence", "data-i": m.i }, slice(s, e)));
        at = e;
      }
      if (b > at) parent.append(slice(at, b));
    };
    let pos = 0;
    for (const r of view.regions) {
      if (r.start > pos) {
        const outside = el("div", { class: "outside" });
        body(outside, pos, r.start);
        box.append(outside);
      }
      if (r.chapter) box.append(el("h3", { class: "chapter-heading", text: r.chapter }));
      const region = el("div", { class: "region" });
      body(region, r.start, r.end);
      box.append(region);
      pos = r.end;
    }
    const length = [...text].length;
    if (pos < length) {
      const outside = el("div", { class: "outside" });
      body(outside, pos, length);
      box.append(outside);
    }
  }

  function selectTag(id, start) {
    const evidence = evidenceOf(id);
    if (!evidence.length) return;
    if (state.tag === id && (start === null || start === undefined)) {
      state.index = (state.index + 1) % evidence.length;
    } else {
      if (state.tag !== id) renderText(evidence);
      state.tag = id;
      const found = evidence.findIndex((e) => e.start === start);
      state.index = found >= 0 ? found : 0;
    }
    focusEvidence();
  }

  function step(delta) {
    const evidence = evidenceOf(state.tag);
    if (!evidence.length) return;
    state.index = (state.index + delta + evidence.length) % evidence.length;
    focusEvidence();
  }

  function focusEvidence() {
    const tag = state.view.result.tags.find((t) => t.id === state.tag);
    const ev = tag.evidence[state.index];
    document.querySelectorAll("#text mark.current").forEach((m) => m.classList.remove("current"));
    const mark = document.querySelector(`#text mark[data-i="${state.index}"]`);
    if (mark) {
      mark.classList.add("current");
      mark.scrollIntoView({ block: "center" });
    }
    $("#jump").hidden = false;
    $("#jump-text").textContent =
      `${tag.name}: passage ${state.index + 1} of ${tag.evidence.length}` +
      (ev.chapter ? ` (${ev.chapter})` : "") +
      `, score ${num(ev.score)}`;
    markSelected();
  }

  function markSelected() {
    document.querySelectorAll("button.tag").forEach((b) => {
      b.classList.toggle("selected", b.dataset.tag === state.tag);
    });
    document.querySelectorAll("#timeline g.series").forEach((g) => {
      g.classList.toggle("selected", g.dataset.tag === state.tag);
    });
  }

  /* ------------------------------------------------------------------ start */

  function start() {
    $("#reveal").addEventListener("click", reveal);
    $("#prev").addEventListener("click", () => step(-1));
    $("#next").addEventListener("click", () => step(1));
    const data = document.getElementById("tropeml-data");
    if (data) {
      document.body.classList.add("report");
      $("#intake").hidden = true;
      state.views = JSON.parse(data.textContent).works;
      showWorks();
      if (state.views.length) show(0);
      return;
    }
    $("#upload").addEventListener("submit", submit);
    document.body.classList.add("ready");
  }

  start();
})();
