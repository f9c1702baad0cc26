// Keyboard use for the item page; the page works without it (plain forms and links).
// Keys are letters, digits, arrows and Enter (no Tab or Space, which move focus and press buttons); none acts
// while typing in a text field, so a comment can contain any letter.
(function () {
  "use strict";
  var RADIO = { a: ["a", "yes"], z: ["a", "no"], k: ["b", "yes"], m: ["b", "no"],
                "1": ["preference", "a-is-better"], "2": ["preference", "a-is-slightly-better"],
                "3": ["preference", "tie"], "4": ["preference", "b-is-slightly-better"],
                "5": ["preference", "b-is-better"] };
  document.addEventListener("keydown", function (e) {
    var form = document.getElementById("answer");
    if (!form || e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    if (t && (t.tagName === "TEXTAREA" || t.tagName === "SELECT" ||
              (t.tagName === "INPUT" && t.type !== "radio" && t.type !== "hidden"))) {
      if (e.key === "Escape") t.blur();
      return;
    }
    var hit = RADIO[e.key.toLowerCase()];
    if (hit) {
      var input = form.querySelector('input[name="' + hit[0] + '"][value="' + hit[1] + '"]');
      if (input) { input.checked = true; e.preventDefault(); }
    } else if (e.key === "Enter") {
      if (t && (t.tagName === "A" || t.tagName === "BUTTON" || t.tagName === "SUMMARY")) return;  // their own
      e.preventDefault();
      form.requestSubmit();
    } else if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      var link = document.getElementById(e.key === "ArrowLeft" ? "prev" : "next");
      if (link) { e.preventDefault(); window.location.href = link.href; }
    }
  });
})();
