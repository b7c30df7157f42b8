// kpi-engine dashboard: submit the pickers on change; reload the page when the server applies
// a new configuration, ingests records, or its config errors appear or go away; and the
// editor of the scorecard page (admin token in a cookie, live preview, save through PUT).
(function () {
  document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
    s.addEventListener("change", function () { s.form.submit(); });
  });
  var b = document.body.dataset;
  var editing = false;
  function poll() {
    if (editing) { setTimeout(poll, 2000); return; }
    fetch("/health", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (h) {
        if (h && (String(h.config_version) !== b.version ||
                  String(h.data_generation) !== b.generation || h.status !== b.status)) {
          location.reload();
        } else {
          setTimeout(poll, 2000);
        }
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 2000);

  // /history: a rollback button per version, for the admin whose token the cookie keeps.
  document.querySelectorAll("button[data-rollback]").forEach(function (b) {
    var m = document.cookie.match(/(?:^|; )kpi_admin=([^;]*)/);
    if (!m) return;
    b.hidden = false;
    var out = document.querySelector('[data-rollback-state="' + b.dataset.rollback + '"]');
    b.addEventListener("click", function () {
      if (!window.confirm(b.dataset.confirm)) return;
      fetch("/api/config/rollback/" + encodeURIComponent(b.dataset.rollback), { method: "POST",
        credentials: "same-origin", headers: { "Authorization": "Bearer " + decodeURIComponent(m[1]) } })
        .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, j: j }; }); })
        .then(function (x) {
          if (x.ok) { location.reload(); return; }
          out.textContent = (x.j.details && x.j.details.length ? x.j.details : [x.j.error]).join("\n");
        });
    });
  });

  var edit = document.getElementById("edit");
  if (!edit) return;
  edit.hidden = false;
  var zh = document.documentElement.lang.indexOf("zh") === 0;
  var W = zh ? { team: "对象", now: "当前", then: "调整后", rank: "名次", saved: "已保存", saving: "保存中…",
                 token: "已保存令牌", forget: "清除", need: "请先输入管理令牌", preview: "预览" }
             : { team: "Team", now: "Now", then: "Proposed", rank: "rank", saved: "Saved", saving: "Saving…",
                 token: "token kept", forget: "forget", need: "Enter the admin token first", preview: "Preview" };
  var COOKIE = "kpi_admin";
  function token() {
    var m = document.cookie.match(/(?:^|; )kpi_admin=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  var tokenInput = document.getElementById("admin-token");
  var tokenState = document.getElementById("token-state");
  function showToken() {
    tokenState.textContent = token() ? " " + W.token : "";
    tokenInput.value = "";
  }
  document.getElementById("token-save").addEventListener("click", function () {
    if (tokenInput.value) {
      document.cookie = COOKIE + "=" + encodeURIComponent(tokenInput.value) + "; Path=/; SameSite=Strict; Max-Age=2592000";
    } else {
      document.cookie = COOKIE + "=; Path=/; Max-Age=0";
    }
    showToken();
  });
  showToken();
  var d = edit.dataset;
  var inputs = Array.prototype.slice.call(edit.querySelectorAll("input[data-weight], input[data-target]"));
  var save = document.getElementById("edit-save");
  var state = document.getElementById("edit-state");
  var preview = document.getElementById("preview");
  function changed(i) { return i.value !== i.dataset.was; }
  function errCell(kpi) { return edit.querySelector('[data-err="' + kpi + '"]'); }
  function clearErrors() {
    edit.querySelectorAll("td.err").forEach(function (c) { c.textContent = ""; });
    inputs.forEach(function (i) { i.classList.remove("bad"); });
    state.textContent = "";
  }
  // Shows each message next to the field of the KPI it names, the rest under the table.
  function showErrors(body, only) {
    var msgs = (body.details && body.details.length ? body.details : [body.error]).filter(function (m, i, all) {
      return all.indexOf(m) === i;
    });
    var rest = [];
    msgs.forEach(function (m) {
      var hit = inputs.filter(function (i) {
        var k = i.dataset.weight || i.dataset.target;
        return (!only || only === i) && m && m.indexOf(k) >= 0;
      });
      if (hit.length) {
        hit.forEach(function (i) {
          i.classList.add("bad");
          var c = errCell(i.dataset.weight || i.dataset.target);
          if (c.textContent.indexOf(m) < 0) c.textContent = (c.textContent ? c.textContent + " " : "") + m;
        });
      } else if (m) { rest.push(m); }
    });
    if (only && rest.length) {
      only.classList.add("bad");
      errCell(only.dataset.weight || only.dataset.target).textContent = rest.join(" ");
      rest = [];
    }
    state.textContent = rest.join(" ");
  }
  function proposal() {
    var weights = {}, targets = {}, anyW = false, anyT = false;
    inputs.forEach(function (i) {
      if (i.dataset.weight) { weights[i.dataset.weight] = Number(i.value); if (changed(i)) anyW = true; }
      if (i.dataset.target && changed(i) && i.value !== "") { targets[i.dataset.target] = Number(i.value); anyT = true; }
    });
    var p = { scorecard: d.scorecard, period: d.period };
    if (d.asOf) p.as_of = d.asOf;
    if (anyW) p.weights = weights;
    if (anyT) p.targets = targets;
    return { body: p, any: anyW || anyT };
  }
  function esc(s) { var e = document.createElement("span"); e.textContent = s; return e.innerHTML; }
  function fmt(x) { return x === null || x === undefined ? "–" : x.toFixed(1); }
  function render(r) {
    var rows = r.teams.map(function (t) {
      var c = t.rank_change, arrow = c > 0 ? '<span class="up">▲ ' + c + "</span>"
        : c < 0 ? '<span class="down">▼ ' + (-c) + "</span>" : '<span class="muted">=</span>';
      return "<tr><td>" + esc(t.name) + '</td><td class="num">' + fmt(t.current.score) + " (#" + (t.current.rank || "–") +
        ')</td><td class="num">' + fmt(t.proposed.score) + " (#" + (t.proposed.rank || "–") + ")</td><td>" + arrow + "</td></tr>";
    }).join("");
    preview.innerHTML = '<table class="preview"><thead><tr><th>' + W.team + "</th><th>" + W.now + "</th><th>" + W.then +
      "</th><th>" + W.rank + "</th></tr></thead><tbody>" + rows + "</tbody></table>";
  }
  var timer = null;
  function schedule() {
    editing = true;
    inputs.forEach(function (i) { i.classList.toggle("changed", changed(i)); });
    clearTimeout(timer);
    timer = setTimeout(runPreview, 250);
  }
  function runPreview() {
    var p = proposal();
    clearErrors();
    save.disabled = !p.any;
    if (!p.any) { preview.innerHTML = ""; return; }
    fetch("/api/preview", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(p.body) })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, j: j }; }); })
      .then(function (x) {
        if (x.ok) { render(x.j); } else { preview.innerHTML = ""; save.disabled = true; showErrors(x.j); }
      });
  }
  inputs.forEach(function (i) { i.addEventListener("input", schedule); });
  function put(url, body, field) {
    return fetch(url, { method: "PUT", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token() },
      body: JSON.stringify(body) })
      .then(function (r) {
        if (r.ok) return true;
        return r.json().then(function (j) { showErrors(j, field); return false; });
      });
  }
  save.addEventListener("click", function () {
    if (!token()) { state.textContent = W.need; tokenInput.focus(); return; }
    clearErrors();
    state.textContent = W.saving;
    var p = proposal().body, jobs = [];
    if (p.weights) {
      var first = inputs.filter(function (i) { return i.dataset.weight && changed(i); })[0];
      jobs.push(put("/api/scorecards/" + encodeURIComponent(d.scorecard) + "/weights/" + encodeURIComponent(d.key), p.weights, first));
    }
    Object.keys(p.targets || {}).forEach(function (k) {
      var field = edit.querySelector('input[data-target="' + k + '"]');
      jobs.push(put("/api/targets/" + encodeURIComponent(k), { team: null, key: field.dataset.key, target: p.targets[k] }, field));
    });
    Promise.all(jobs).then(function (oks) {
      if (oks.every(Boolean)) { state.textContent = W.saved; editing = false; location.reload(); }
      else if (state.textContent === W.saving) { state.textContent = ""; }
    });
  });
})();
