// MFT-1 dashboard: live updates over server-sent events (the page's <main> is re-fetched and
// swapped on each change, no reload), countdowns, and actions posted without leaving the page.
// Plain JavaScript, no framework; the page works without it (forms post and redirect).
(function () {
  "use strict";
  var live = document.getElementById("live");
  var toast = document.getElementById("toast");
  var toastTimer = null;

  function setLive(state, text) {
    if (!live) return;
    live.className = "live " + state;
    live.textContent = text;
  }

  function notice(text) {
    if (!toast || !text) return;
    toast.textContent = text;
    toast.className = "show";
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { toast.className = ""; }, 4000);
  }

  // Countdowns run on the service's clock: the page says what time it was there when rendered.
  var skew = 0;
  function setSkew(body) {
    var t = Date.parse(body.getAttribute("data-now") || "");
    if (!isNaN(t)) skew = t - Date.now();
  }
  setSkew(document.body);

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function tickCountdowns() {
    var now = Date.now() + skew;
    var els = document.querySelectorAll(".countdown[data-expires]");
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      var left = Math.round((Date.parse(el.getAttribute("data-expires")) - now) / 1000);
      if (isNaN(left)) continue;
      if (left <= 0) {
        el.textContent = "expired";
        el.classList.add("late");
      } else {
        var m = Math.floor(left / 60), s = left % 60;
        el.textContent = m + ":" + pad(s) + " left";
        el.classList.toggle("late", left < 60);
      }
    }
  }

  var refreshing = false, again = false;
  // Re-fetches this page and swaps its <main> and header badges in place.
  function refresh() {
    if (document.body.getAttribute("data-live") !== "on") return;
    if (refreshing) { again = true; return; }
    refreshing = true;
    var url = location.pathname + location.hash.replace(/#.*/, "");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.status === 401) { setLive("off", "logged out"); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        setSkew(doc.body);
        var main = doc.getElementById("main"), cur = document.getElementById("main");
        if (main && cur) {
          var flash = cur.querySelector(".flash");
          cur.innerHTML = main.innerHTML;
          if (flash && !cur.querySelector(".flash")) cur.insertBefore(flash, cur.firstChild);
        }
        var top = doc.querySelector("header .top"), curTop = document.querySelector("header .top");
        var nav = doc.querySelector("header nav"), curNav = document.querySelector("header nav");
        if (top && curTop) {
          var liveState = live ? [live.className, live.textContent] : null;
          curTop.innerHTML = top.innerHTML;
          live = document.getElementById("live");
          if (liveState && live) { live.className = liveState[0]; live.textContent = liveState[1]; }
        }
        if (nav && curNav) curNav.innerHTML = nav.innerHTML;
        tickCountdowns();
      })
      .catch(function () {})
      .then(function () {
        refreshing = false;
        if (again) { again = false; refresh(); }
      });
  }

  var timer = null;
  function soon() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 150);
  }

  function connect() {
    if (!window.EventSource || document.body.getAttribute("data-live") !== "on") {
      setLive("", "no live updates");
      return;
    }
    var es = new EventSource("/events");
    var dropped = false;
    es.onopen = function () {
      setLive("on", "live");
      if (dropped) { dropped = false; soon(); }
    };
    es.onerror = function () {
      dropped = true;
      if (es.readyState === EventSource.CLOSED) {
        setLive("off", "disconnected: reconnecting…");
        setTimeout(connect, 3000);
      } else {
        setLive("off", "reconnecting…");
      }
    };
    ["proposal", "fill", "order", "price", "halt", "scan", "alert", "resync"].forEach(function (kind) {
      es.addEventListener(kind, function (e) {
        try {
          var d = JSON.parse(e.data || "{}");
          if (d.text) notice(d.text);
        } catch (_) {}
        soon();
      });
    });
  }

  // Actions: post the form with fetch, show the result, let the live update redraw the page.
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.classList || !form.classList.contains("act")) return;
    e.preventDefault();
    var btn = form.querySelector("button");
    if (btn) btn.disabled = true;
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(new FormData(form)).toString()
    })
      .then(function (r) { return r.json().catch(function () { return { message: "HTTP " + r.status }; }); })
      .then(function (d) {
        notice(d.message || "Done");
        var main = document.getElementById("main");
        if (main) {
          var old = main.querySelector(".flash");
          if (old) old.remove();
          var p = document.createElement("p");
          p.className = "flash";
          p.setAttribute("role", "status");
          p.textContent = d.message || "Done";
          main.insertBefore(p, main.firstChild);
        }
        if (form.id === "kill-form" && d.ok) { location.assign("/"); return; }
        refresh();
      })
      .catch(function () { notice("The request failed: check the connection."); })
      .then(function () { if (btn) btn.disabled = false; });
  });

  if (location.search.indexOf("flash=") >= 0 && history.replaceState) {
    history.replaceState(null, "", location.pathname + location.hash);
  }
  tickCountdowns();
  setInterval(tickCountdowns, 1000);
  connect();
})();
