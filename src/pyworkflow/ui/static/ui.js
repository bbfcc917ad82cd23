/* PyWorkflow UI: the one script of the UI (no third-party code, no build step).
 *
 * 1. Confirmation: a form (or its submit button) with data-confirm="..." asks window.confirm()
 *    before it is submitted.
 * 2. Live regions: an element with data-live="<name>" is refreshed every data-live-interval ms
 *    (default 2000): ui.js fetches data-live-url (default: the page's URL) with the headers
 *    "X-Fragment: <name>" and "If-None-Match: <last ETag>" (the first one from data-live-etag).
 *    200: the element's content is replaced by the response body (focus kept on the same
 *    link or button when it still exists); 304: nothing changes. A response with the header
 *    "X-Live-Final: 1" (for example a run that ended) stops the polling after the swap; an
 *    error, a redirect (signed out) or a non-HTML answer stops it too. Polling pauses while
 *    the tab is hidden. A button with data-live-toggle="<name>" pauses and resumes it.
 *    After a swap the element fires a "pyworkflow:live" event (bubbling).
 */
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    var submitter = event.submitter;
    var message = (submitter && submitter.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });

  function focusKey(el) {
    if (!el || el === document.body) return null;
    return {
      id: el.id || null,
      href: el.getAttribute("href"),
      name: el.getAttribute("name"),
      text: el.textContent,
      tag: el.tagName,
    };
  }

  function restoreFocus(root, key) {
    if (!key) return;
    var candidate = null;
    if (key.id) candidate = document.getElementById(key.id);
    if (!candidate && key.href) {
      var links = root.querySelectorAll(key.tag.toLowerCase() + "[href]");
      for (var i = 0; i < links.length; i++) {
        if (links[i].getAttribute("href") === key.href) { candidate = links[i]; break; }
      }
    }
    if (candidate && root.contains(candidate)) candidate.focus({ preventScroll: true });
  }

  function Live(el) {
    this.el = el;
    this.name = el.getAttribute("data-live");
    this.url = el.getAttribute("data-live-url") || window.location.href;
    this.etag = el.getAttribute("data-live-etag") || null;
    var interval = parseInt(el.getAttribute("data-live-interval") || "2000", 10);
    this.interval = isFinite(interval) && interval >= 250 ? interval : 2000;
    this.paused = false;
    this.stopped = false;
    this.busy = false;
    this.timer = null;
  }

  Live.prototype.schedule = function () {
    var self = this;
    if (this.stopped) return;
    this.timer = window.setTimeout(function () { self.tick(); }, this.interval);
  };

  Live.prototype.stop = function () {
    this.stopped = true;
    if (this.timer) window.clearTimeout(this.timer);
    this.el.setAttribute("data-live-stopped", "true");
  };

  Live.prototype.tick = function () {
    var self = this;
    if (this.stopped) return;
    if (this.paused || document.hidden || this.busy) { this.schedule(); return; }
    this.busy = true;
    var headers = { "X-Fragment": this.name };
    if (this.etag) headers["If-None-Match"] = this.etag;
    fetch(this.url, { headers: headers, credentials: "same-origin", cache: "no-store", redirect: "manual" })
      .then(function (response) {
        if (response.status === 304) return null;
        var type = response.headers.get("Content-Type") || "";
        if (response.status !== 200 || response.type === "opaqueredirect" || type.indexOf("text/html") !== 0) {
          self.stop();
          return null;
        }
        var etag = response.headers.get("ETag");
        var final = response.headers.get("X-Live-Final") === "1";
        return response.text().then(function (html) {
          var key = self.el.contains(document.activeElement) ? focusKey(document.activeElement) : null;
          self.el.innerHTML = html;
          restoreFocus(self.el, key);
          if (etag) self.etag = etag;
          self.el.dispatchEvent(new CustomEvent("pyworkflow:live", { bubbles: true, detail: { name: self.name } }));
          if (final) self.stop();
        });
      })
      .catch(function () { /* a network blip: try again at the next tick */ })
      .then(function () { self.busy = false; self.schedule(); });
  };

  var lives = {};

  function start() {
    var nodes = document.querySelectorAll("[data-live]");
    for (var i = 0; i < nodes.length; i++) {
      var live = new Live(nodes[i]);
      lives[live.name] = live;
      live.schedule();
    }
    var toggles = document.querySelectorAll("[data-live-toggle]");
    for (var j = 0; j < toggles.length; j++) {
      toggles[j].hidden = false;
      toggles[j].addEventListener("click", function (event) {
        var button = event.currentTarget;
        var target = lives[button.getAttribute("data-live-toggle")];
        if (!target) return;
        target.paused = !target.paused;
        button.textContent = target.paused ? "Resume auto-refresh" : "Pause auto-refresh";
      });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }

  window.pyworkflowUi = { lives: lives };
})();

/* ----- run page (UI-RUN): add below this line ----- */
/* The run page's live region is replaced every few seconds while the run goes on: the
 * <details> a reader opened in it (an event's payload, the timeline as text) carry a
 * data-keep-open key and are opened again after each swap. */
(function () {
  "use strict";
  var opened = {};

  function inRunLive(el) {
    return !!(el.closest && el.closest('[data-live="run-live"]'));
  }

  // "toggle" does not bubble: listen in the capture phase
  document.addEventListener("toggle", function (event) {
    var el = event.target;
    if (!(el instanceof HTMLDetailsElement) || !inRunLive(el)) return;
    var key = el.getAttribute("data-keep-open");
    if (!key) return;
    if (el.open) { opened[key] = true; } else { delete opened[key]; }
  }, true);

  document.addEventListener("pyworkflow:live", function (event) {
    var region = event.target;
    if (!(region instanceof Element) || region.getAttribute("data-live") !== "run-live") return;
    var nodes = region.querySelectorAll("details[data-keep-open]");
    for (var i = 0; i < nodes.length; i++) {
      if (opened[nodes[i].getAttribute("data-keep-open")]) nodes[i].open = true;
    }
  });
})();
