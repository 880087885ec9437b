// llm386web behaviour. Loaded as a file (the CSP allows no inline script) after htmx.
"use strict";

(function () {
  const ERROR_SELECTOR = "[data-error-message]";

  // Show one message in #flash as text (never as HTML), replacing the previous one.
  function flash(text, level) {
    const area = document.getElementById("flash");
    if (!area) return;
    const item = document.createElement("p");
    item.className = "flash flash-" + level;
    const message = document.createElement("span");
    message.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "link-button";
    close.textContent = "Dismiss";
    close.addEventListener("click", function () { item.remove(); });
    item.append(message, close);
    area.replaceChildren(item);
  }

  // Error views answer htmx with an error-message fragment: take its text. DOMParser builds an
  // inert document, so nothing in the response runs or loads.
  function errorText(xhr) {
    const fallback = "The server answered " + xhr.status + " " + (xhr.statusText || "") + ".";
    if (!xhr.responseText) return fallback;
    const doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
    const node = doc.querySelector(ERROR_SELECTOR);
    const title = doc.querySelector("[data-error-title]");
    if (!node) return fallback;
    return (title ? title.textContent.trim() + " (" + xhr.status + "): " : "") + node.textContent.trim();
  }

  document.addEventListener("htmx:responseError", function (event) {
    flash(errorText(event.detail.xhr), "error");
  });

  document.addEventListener("htmx:sendError", function () {
    flash("The server did not answer. Is it still running?", "error");
  });

  // CSRF on every htmx write: the token comes from the page's meta tag.
  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.verb === "get") return;
    const meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) event.detail.headers["X-CSRFToken"] = meta.content;
  });
})();
