/* Postbox: "Go back to the form" returns through the browser's history, where the form still holds what the
 * visitor typed; the link's own address (the referring page, often only its site) is the fallback. */
(function () {
  "use strict";
  var link = document.querySelector("[data-postbox-back]");
  if (!link || window.history.length < 2) return;
  link.addEventListener("click", function (event) {
    event.preventDefault();
    window.history.back();
  });
})();
