// Progressive enhancement only: every page works without it (admin-ui.md 1).
(function () {
  "use strict";

  var ICONS = { ok: "✅", healthy: "✅", warning: "⚠️", error: "❌", unhealthy: "❌" };

  function pick(obj, path) {
    return path.split(".").reduce(function (o, k) { return o == null ? undefined : o[k]; }, obj);
  }

  function show(value) {
    if (value === null || value === undefined) return "—";
    if (typeof value === "number") return value.toLocaleString("en-US", { maximumFractionDigits: 2 });
    return String(value);
  }

  // <section data-poll="url" data-every="ms">: fill [data-key="a.b"] from the JSON answer,
  // [data-width-key] as a percentage width; reload when [data-reload-when] no longer matches status.
  function poll(box) {
    var every = parseInt(box.getAttribute("data-every"), 10) || 30000;
    function tick() {
      fetch(box.getAttribute("data-poll"), { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (data) {
          box.querySelectorAll("[data-key]").forEach(function (el) { el.textContent = show(pick(data, el.getAttribute("data-key"))); });
          box.querySelectorAll("[data-badge-key]").forEach(function (el) {
            var value = String(pick(data, el.getAttribute("data-badge-key")));
            var badge = document.createElement("span");
            badge.className = "badge status-" + value;
            badge.textContent = (ICONS[value] ? ICONS[value] + " " : "") + value;
            el.replaceChildren(badge);
          });
          box.querySelectorAll("[data-width-key]").forEach(function (el) { el.style.width = (pick(data, el.getAttribute("data-width-key")) || 0) + "%"; });
          box.querySelectorAll("[data-list-key]").forEach(function (el) {
            var items = pick(data, el.getAttribute("data-list-key")) || [];
            el.textContent = "";
            items.forEach(function (item) {
              var li = document.createElement("li");
              li.textContent = (item.level ? "[" + item.level + "] " : "") + (item.message || JSON.stringify(item));
              el.appendChild(li);
            });
          });
          var waitFor = box.getAttribute("data-reload-when");
          if (waitFor && waitFor.split(" ").indexOf(data.status) < 0) { window.location.reload(); return; }
          setTimeout(tick, every);
        })
        .catch(function () { setTimeout(tick, every * 2); });
    }
    setTimeout(tick, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(poll);
    document.querySelectorAll("[data-select]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var on = button.getAttribute("data-select") === "all";
        document.querySelectorAll("input[type=checkbox][name='" + button.getAttribute("data-name") + "']:not(:disabled)")
          .forEach(function (box) { box.checked = on; });
      });
    });
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var text = document.getElementById(button.getAttribute("data-copy")).textContent.trim();
        navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; });
      });
    });
  });
})();
