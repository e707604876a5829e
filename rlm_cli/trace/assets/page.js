// Optional comfort; the page reads the same with scripts off. It marks <body data-ready> when it
// has run, so a test can tell the browser executed it.
(function () {
  "use strict";
  function setAll(open) {
    document.querySelectorAll("#tree details").forEach(function (d) { d.open = open; });
  }
  document.querySelectorAll("button[data-action]").forEach(function (b) {
    b.addEventListener("click", function () { setAll(b.dataset.action === "expand"); });
  });
  document.querySelectorAll("rect.subcall-bar").forEach(function (bar) {
    bar.addEventListener("click", function () {
      var node = document.getElementById(bar.dataset.target);
      if (!node) { return; }
      for (var d = node; d; d = d.parentElement) { if (d.tagName === "DETAILS") { d.open = true; } }
      node.classList.add("flash");
      setTimeout(function () { node.classList.remove("flash"); }, 1500);
      node.scrollIntoView({ block: "center" });
    });
  });
  document.body.dataset.ready = "yes";
})();
