// The launch form: show the badge link and its Markdown for what is typed, as it is typed.
(function () {
  "use strict";
  const form = document.getElementById("launch-form");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  let timer = null;

  async function refresh() {
    const fields = new URLSearchParams(new FormData(form));
    if (!fields.get("repository")) { $("badge").hidden = true; return; }
    try {
      const response = await fetch("/badge?" + fields.toString());
      const body = await response.json();
      if (!response.ok) {
        $("badge").hidden = true;
        $("form-error").textContent = body.message;
        $("form-error").hidden = false;
        return;
      }
      $("form-error").hidden = true;
      $("badge-link").value = body.link;
      $("badge-markdown").value = body.markdown;
      $("badge-rst").value = body.rst;
      $("badge").hidden = false;
    } catch (error) { $("badge").hidden = true; }
  }

  form.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refresh, 250); });
  form.addEventListener("change", refresh);
  ["badge-link", "badge-markdown", "badge-rst"].forEach((id) => {
    $(id).addEventListener("focus", (event) => event.target.select());
  });
  refresh();
}());
