// OpenKPS console: small enhancements for browsers that run JavaScript. Every page works
// without this file; htmx (beside it) does the live updates.
"use strict";
(function () {
  function bindForm() {
    // The server choice of the bind, rotation and drift forms.
    var all = document.getElementById("select-all");
    var count = document.getElementById("selected-count");
    var form = all && all.closest("form");
    var boxes = form ? form.querySelectorAll('input[name="server"]') : [];
    if (!all || boxes.length === 0) {
      return;
    }
    function update() {
      var n = 0;
      boxes.forEach(function (b) { if (b.checked) { n++; } });
      all.checked = n === boxes.length;
      all.indeterminate = n > 0 && n < boxes.length;
      if (count) {
        count.textContent = n + " selected";
      }
    }
    all.hidden = false;
    all.addEventListener("change", function () {
      boxes.forEach(function (b) { b.checked = all.checked; });
      update();
    });
    boxes.forEach(function (b) { b.addEventListener("change", update); });
    update();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", bindForm);
  } else {
    bindForm();
  }
})();
