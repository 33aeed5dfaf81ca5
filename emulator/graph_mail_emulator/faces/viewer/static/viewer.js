// The mailbox viewer's only script: local times, message tabs, a frame as tall as the mail, a live list.
(function () {
  "use strict";

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (node) {
      var when = new Date(node.getAttribute("datetime"));
      if (!isNaN(when)) {
        node.title = node.textContent;
        node.textContent = node.closest(".messages")  // short in the list, to the second on a message
          ? when.toLocaleString([], { dateStyle: "short", timeStyle: "short" }) : when.toLocaleString();
      }
    });
  }

  function tabs() {
    var buttons = document.querySelectorAll("[data-tab]");
    function show(name) {
      buttons.forEach(function (b) { b.setAttribute("aria-selected", String(b.dataset.tab === name)); });
      document.querySelectorAll("[data-panel]").forEach(function (p) { p.hidden = p.dataset.panel !== name; });
    }
    buttons.forEach(function (b) { b.addEventListener("click", function () { show(b.dataset.tab); }); });
    if (buttons.length) show(buttons[0].dataset.tab);
  }

  function fitFrame() {
    var frame = document.getElementById("body-frame");
    if (!frame) return;
    function fit() {
      try {  // the frame is same-origin (it runs no script of its own), so its height can be read
        var doc = frame.contentDocument;
        if (doc && doc.readyState === "complete" && doc.URL !== "about:blank") {
          frame.style.height = doc.documentElement.scrollHeight + 24 + "px";
        }
      } catch (e) { /* keep the default height */ }
    }
    frame.addEventListener("load", fit);
    fit();
  }

  // The list page asks for the mailboxes' version every second; when it changed, the sidebar and
  // the list are swapped for fresh ones, without a reload (the search box keeps what is typed).
  function liveList() {
    var url = document.body.dataset.live;
    if (!url) return;
    var version = document.body.dataset.version, busy = false;
    setInterval(function () {
      if (busy) return;
      busy = true;
      fetch(url, { cache: "no-store" })
        .then(function (r) { return r.json(); })
        .then(function (now) {
          if (String(now.version) === version) return null;
          return fetch(location.href, { cache: "no-store" }).then(function (r) { return r.text(); });
        })
        .then(function (html) {
          if (html === null) return;
          var fresh = new DOMParser().parseFromString(html, "text/html");
          ["sidebar", "list"].forEach(function (id) {
            var old = document.getElementById(id), replacement = fresh.getElementById(id);
            if (!old || !replacement) return;
            var kept = old.querySelector("[data-keep]"), slot = replacement.querySelector("[data-keep]");
            if (kept && slot) slot.replaceWith(kept);  // a form being filled in survives the refresh
            old.replaceWith(replacement);
          });
          version = fresh.body.dataset.version;
          document.body.dataset.version = version;
          localTimes(document);
        })
        .catch(function () { /* the emulator stopped; try again next second */ })
        .then(function () { busy = false; });
    }, 1000);
  }

  localTimes(document);
  tabs();
  fitFrame();
  liveList();
})();
