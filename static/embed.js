/* Postbox: inside <iframe src=".../contactus?embed=1">, tell the parent page how tall the form is.
 * The message is {type: "postbox:height", height: <CSS pixels>}; postbox.js on the parent resizes the frame.
 * The height is not a secret, so any parent may hear it; the parent checks that it comes from Postbox. */
(function () {
  "use strict";
  if (window.parent === window) return;
  var last = 0;
  function report() {
    var height = Math.ceil(document.documentElement.getBoundingClientRect().height);
    if (height !== last) {
      last = height;
      window.parent.postMessage({ type: "postbox:height", height: height }, "*");
    }
  }
  if (window.ResizeObserver) new ResizeObserver(report).observe(document.documentElement);
  window.addEventListener("load", report);
  report();
})();
