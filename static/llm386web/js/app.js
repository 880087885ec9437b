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

  // Copy buttons: <button data-copy="element-id"> copies that element's text.
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    // http://127.0.0.1 is a secure context, but a LAN address is not: fall back to a selection.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    copyText(source.textContent.trim()).then(function () {
      button.textContent = "Copied";
      button.classList.add("copied");
      setTimeout(function () { button.textContent = "Copy"; button.classList.remove("copied"); }, 1500);
    }, function () {
      flash("The browser did not allow copying; select the text and copy it by hand.", "warning");
    });
  });

  // Keyboard: j / k follow the links marked data-key="j" / "k" (next / previous turn or pair),
  // unless the user is typing in a field or holding a modifier.
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    if (event.key !== "j" && event.key !== "k") return;
    const target = event.target;
    if (target.closest && target.closest("input, textarea, select, [contenteditable]")) return;
    const link = document.querySelector('a[data-key="' + event.key + '"]');
    if (!link) return;
    event.preventDefault();
    window.location.assign(link.href);
  });
})();
