/* Postbox: progressive enhancement for contact forms. No dependencies; the form works without it.
 * <script src="https://POSTBOX/static/postbox.js" defer></script> enhances every <form data-postbox>
 * and every form whose action is POSTBOX/contactus or POSTBOX/f/KEY. It also resizes
 * <iframe src="https://POSTBOX/contactus?embed=1"> to the height the framed form reports. */
(function () {
  "use strict";
  var script = document.currentScript;
  var home = script ? new URL(script.src, location.href).origin : location.origin;
  var ERR = "data-postbox-error";

  // getAttribute: a field named "action" would shadow form.action.
  function actionOf(form) {
    return new URL(form.getAttribute("action") || "", location.href);
  }

  function isPostboxForm(form) {
    if (form.hasAttribute("data-postbox")) return true;
    var url = actionOf(form);
    return url.origin === home && /^\/(contactus|f\/[\w-]+)\/?$/.test(url.pathname);
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var name in attrs) node.setAttribute(name, attrs[name]);
    if (text) node.textContent = text;
    return node;
  }

  function clearErrors(form) {
    form.querySelectorAll("[" + ERR + "],[data-postbox-summary],[data-field-error]").forEach(function (node) {
      var input = node.id && form.querySelector("[aria-describedby~='" + node.id + "']");
      if (input) {
        var ids = input.getAttribute("aria-describedby").split(" ").filter(function (id) { return id !== node.id; });
        ids.length ? input.setAttribute("aria-describedby", ids.join(" ")) : input.removeAttribute("aria-describedby");
      }
      node.remove();
    });
    form.querySelectorAll("[aria-invalid]").forEach(function (input) {
      input.removeAttribute("aria-invalid");
      if (input.parentNode.classList) input.parentNode.classList.remove("has-error");
    });
  }

  function labelOf(form, input) {
    var label = input.id && form.querySelector("label[for='" + input.id + "']");
    return ((label || input.closest("label") || {}).textContent || input.name).replace(/[*:]|\(.*\)/g, "").trim();
  }

  function showErrors(form, data) {
    var summary = el("div", { "class": "summary postbox-summary", role: "alert", tabindex: "-1" });
    summary.setAttribute(ERR, "");
    summary.appendChild(el("p", {}, data.error || "Your message was not sent."));
    var list = summary.appendChild(el("ul")), first = null;
    (data.errors || []).forEach(function (error, i) {
      var input = error.field && form.elements[error.field];
      if (input && !input.type && input[0]) input = input[0];
      var item = list.appendChild(el("li"));
      if (input && input.type !== "hidden") {
        if (!input.id) input.id = "postbox-" + error.field.replace(/\W/g, "_");
        var id = input.id + "-error";
        var note = el("p", { "class": "error", id: id }, error.message);
        note.setAttribute(ERR, "");
        input.setAttribute("aria-invalid", "true");
        var described = input.getAttribute("aria-describedby");
        input.setAttribute("aria-describedby", described ? described + " " + id : id);
        input.parentNode.classList.add("has-error");
        input.insertAdjacentElement("afterend", note);
        item.appendChild(el("a", { href: "#" + input.id }, labelOf(form, input)));
        item.appendChild(document.createTextNode(": "));
        first = first || input;
      }
      item.appendChild(document.createTextNode(error.message));
    });
    if (!list.children.length) list.remove();
    form.insertBefore(summary, form.firstChild);
    (first || summary).focus();
  }

  function showThanks(form, data) {
    var box = el("div", { "class": "thanks postbox-thanks", role: "status", tabindex: "-1" });
    box.appendChild(el("p", {}, form.getAttribute("data-postbox-thanks") || data.message ||
      "Thank you! Your message has been received."));
    form.replaceWith(box);
    box.focus();
  }

  // One key per message the visitor means to send: a repeat (a double-click, "Send" pressed again after an
  // answer that could not be read) names the same submission, and Postbox stores and notifies it once.
  function keyOf(form) {
    if (!form.postboxKey) {
      form.postboxKey = window.crypto && crypto.randomUUID ? crypto.randomUUID()
        : Date.now().toString(36) + Math.random().toString(36).slice(2);
    }
    return form.postboxKey;
  }

  function showUnconfirmed(form) {
    showErrors(form, { error: form.getAttribute("data-postbox-unconfirmed") ||
      "We could not confirm that your message arrived. Please press Send again: it will not be sent twice." });
  }

  function send(form) {
    var next = form.elements._next, buttons = form.querySelectorAll("button,[type=submit]");
    // Cross-origin requests carry only the site's origin as Referer: resolve a relative _next here.
    if (next && next.value) next.value = new URL(next.value, location.href).href;
    buttons.forEach(function (button) { button.disabled = true; });
    form.setAttribute("aria-busy", "true");
    var headers = { Accept: "application/json", "Idempotency-Key": keyOf(form) };
    return fetch(actionOf(form).href, { method: "POST", body: new FormData(form), headers: headers })
      .then(function (response) {
        return response.json().then(function (data) {
          if (data.ok) {
            form.postboxKey = null;
            if ((next || form.hasAttribute("data-postbox-follow")) && data.next) location.assign(data.next);
            else showThanks(form, data);
          } else {
            showErrors(form, data);
          }
        });
      })
      .catch(function () {
        // Offline, refused by CORS, or an answer that is not ours (a proxy's 504): the message may have
        // arrived. Posting it again here could send it twice, so the visitor decides, with the same key.
        showUnconfirmed(form);
      })
      .finally(function () {
        buttons.forEach(function (button) { button.disabled = false; });
        form.removeAttribute("aria-busy");
      });
  }

  // The time trap: a form enhanced here carries a signed token of when it was shown, like the hosted form.
  function addToken(form) {
    if (form.elements._token) return;
    var url = actionOf(form);
    url.pathname = url.pathname.replace(/\/$/, "") + "/token";
    url.search = "";
    fetch(url.href, { headers: { Accept: "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        if (data.token && !form.elements._token) form.appendChild(el("input", { type: "hidden", name: "_token", value: data.token }));
      })
      .catch(function () {});
  }

  if (window.fetch) document.querySelectorAll("form").forEach(function (form) { if (isPostboxForm(form)) addToken(form); });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (event.defaultPrevented || !window.fetch || !isPostboxForm(form)) return;
    event.preventDefault();
    if (form.getAttribute("aria-busy") !== "true") {
      clearErrors(form);
      send(form);
    }
  });

  // The framed form (static/embed.js) reports its height; only Postbox's own frames are believed.
  window.addEventListener("message", function (event) {
    var data = event.data;
    if (!data || data.type !== "postbox:height" || event.origin !== home) return;
    document.querySelectorAll("iframe").forEach(function (frame) {
      if (frame.contentWindow === event.source) frame.style.height = Math.min(+data.height || 0, 20000) + "px";
    });
  });
})();
