/* What the pages need on top of htmx, for keyboard and screen-reader users and narrow screens (issue 17).
   Every page works without it: tables are wrapped by the templates that matter, forms post as plain forms. */
(function () {
  "use strict";

  // Tables scroll sideways inside their own container on narrow screens (WCAG 1.4.10); a container is a tab
  // stop only while it actually scrolls, so keyboard users can reach what is off to the side.
  function wrapTables(root) {
    var tables = (root && root.querySelectorAll) ? root.querySelectorAll("main table") : [];
    Array.prototype.forEach.call(tables, function (table) {
      if (table.parentElement.classList.contains("tracker-scroll")) return;
      var box = document.createElement("div");
      var caption = table.querySelector("caption");
      box.className = "tracker-scroll";
      box.setAttribute("role", "group");
      box.setAttribute("aria-label", ((caption && caption.textContent.trim()) || "Table") + " (scrolls sideways)");
      table.parentNode.insertBefore(box, table);
      box.appendChild(table);
    });
    scrollStops();
  }

  function scrollStops() {
    Array.prototype.forEach.call(document.querySelectorAll(".tracker-scroll"), function (box) {
      if (box.scrollWidth > box.clientWidth + 1) box.setAttribute("tabindex", "0");
      else box.removeAttribute("tabindex");
    });
  }

  function focusable(el) {
    return el && el.querySelector("[aria-invalid='true'], input:not([type='hidden']), select, textarea, button, a[href], summary");
  }

  function focusMarked() {
    var marked = document.querySelector("[data-tracker-focus]");
    if (!marked) return false;
    Array.prototype.forEach.call(document.querySelectorAll("[data-tracker-focus]"), function (el) {
      el.removeAttribute("data-tracker-focus");
    });
    if (!marked.hasAttribute("tabindex") && !focusable(marked.parentElement)) marked.setAttribute("tabindex", "-1");
    marked.focus();
    return true;
  }

  // The loading indicator says "Loading…" only while a request runs, in a live region that stays on the page.
  // The indicators are remembered on the request: when it ends, the element that started it may be gone.
  function indicators(elt) {
    var holder = elt && elt.closest ? elt.closest("[hx-indicator]") : null;
    return holder ? Array.prototype.slice.call(document.querySelectorAll(holder.getAttribute("hx-indicator"))) : [];
  }
  function loading(list, on) {
    list.forEach(function (ind) {
      ind.textContent = on ? (ind.getAttribute("data-loading-text") || "Loading…") : "";
    });
  }

  // Where focus was, so that a swap which removes the focused control can put focus somewhere sensible.
  var last = null;
  document.addEventListener("htmx:beforeRequest", function (e) {
    var elt = e.detail.elt;
    var target = e.detail.target;
    var details = elt.closest("details");
    var region = target && target.id ? target : null;
    last = {
      key: elt.getAttribute("data-focus-key"),
      targetId: region ? region.id : null,
      detailsIndex: details && region ? Array.prototype.indexOf.call(region.querySelectorAll("details"), details) : -1
    };
    if (e.detail.xhr) {
      e.detail.xhr.trackerIndicators = indicators(elt);
      loading(e.detail.xhr.trackerIndicators, true);
    }
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    if (e.detail.xhr && e.detail.xhr.trackerIndicators) loading(e.detail.xhr.trackerIndicators, false);
  });

  document.addEventListener("htmx:afterSettle", function (e) {
    wrapTables(e.detail.elt && e.detail.elt.parentElement ? e.detail.elt.parentElement : document);
    if (focusMarked()) return;
    var active = document.activeElement;
    if (active && active !== document.body && document.contains(active)) return;
    if (!last || !last.targetId) return;
    var region = document.getElementById(last.targetId);
    if (!region) return;
    var next = null;
    if (last.key) next = region.querySelector("[data-focus-key='" + last.key + "']");
    if (!next) next = region.querySelector("[aria-invalid='true']");
    if (!next && last.detailsIndex >= 0) {
      var details = region.querySelectorAll("details")[last.detailsIndex];
      next = details ? details.querySelector("summary") : null;
    }
    if (!next) next = region.querySelector("h2, h3");
    if (next && !next.matches("a[href], button, input, select, textarea, summary, [tabindex]")) {
      next.setAttribute("tabindex", "-1");
    }
    next = next || focusable(region);
    if (next) next.focus();
  });

  // "Select all N matching" ticks this page's rows too, so what will change is visible.
  document.addEventListener("change", function (e) {
    if (e.target.id !== "select-all-matching") return;
    Array.prototype.forEach.call(document.querySelectorAll("input[name='ids'][form='bulk-form']"), function (box) {
      box.checked = e.target.checked;
    });
  });

  function ready() {
    wrapTables(document);
    // An error summary (or a marked field) takes focus when the page arrives.
    if (!focusMarked()) {
      var summary = document.querySelector(".tracker-error-summary");
      if (summary) {
        summary.setAttribute("tabindex", "-1");
        summary.focus();
      }
    }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(scrollStops, 150);
  });
})();
