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

  // <div class="scroll"> holding a table wider than itself: a hint above it says so and has buttons
  // that scroll it sideways (its own scrollbar may be far below, at the end of a long table).
  function wide(box) {
    var hint = document.createElement("div");
    hint.className = "scroll-hint";
    hint.hidden = true;
    var text = document.createElement("span");
    text.textContent = "More columns than fit: scroll the table sideways";
    function arrow(label, sign, name) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      button.setAttribute("aria-label", "Scroll the table " + name);
      button.addEventListener("click", function () {
        box.scrollBy({ left: sign * Math.max(box.clientWidth * 0.8, 100), behavior: "smooth" });
      });
      return button;
    }
    var left = arrow("←", -1, "left"), right = arrow("→", 1, "right");
    hint.append(text, left, right);
    box.parentNode.insertBefore(hint, box);
    function update() {
      var over = box.scrollWidth - box.clientWidth > 1;
      hint.hidden = !over;
      box.classList.toggle("overflowing", over);
      left.disabled = box.scrollLeft <= 0;
      right.disabled = box.scrollLeft + box.clientWidth >= box.scrollWidth - 1;
    }
    box.addEventListener("scroll", update, { passive: true });
    if (window.ResizeObserver) {
      var watch = new ResizeObserver(update);
      watch.observe(box);
      if (box.firstElementChild) watch.observe(box.firstElementChild);
    } else {
      window.addEventListener("resize", update);
    }
    update();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".scroll").forEach(wide);
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
