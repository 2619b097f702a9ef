"""``/docs``: the OpenAPI document of this service as a readable page.

Self-contained (no script or style from elsewhere, so it works on a machine
without internet access): the page fetches ``/openapi.json`` and lists every
route with its summary, parameters, request body schema and answers.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>liftline ingest API</title>
<style>
 body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; }
 h1 { font-size: 1.5em; } h2 { font-size: 1.1em; margin: 1.6em 0 .3em; }
 .op { border: 1px solid #ccd; border-radius: 6px; padding: .5em .9em; margin: .6em 0; }
 .m { display: inline-block; min-width: 4.2em; font-weight: 600; }
 .m.get { color: #1b6e2f; } .m.post { color: #8a4b00; } code, pre { font-size: 13px; }
 pre { background: #f5f5f8; padding: .5em; overflow-x: auto; margin: .3em 0; }
 table { border-collapse: collapse; } td { padding: .1em .7em .1em 0; vertical-align: top; }
 summary { cursor: pointer; } .muted { color: #666; }
</style></head><body>
<h1 id="title">liftline ingest API</h1>
<p class="muted" id="about"></p>
<div id="ops">Loading <a href="/openapi.json">/openapi.json</a>…</div>
<script>
function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
  kids.forEach(k => node.append(k instanceof Node ? k : document.createTextNode(String(k))));
  return node;
}
function schemaBlock(schema) {
  return el("pre", {}, JSON.stringify(schema, null, 2));
}
fetch("/openapi.json").then(r => r.json()).then(doc => {
  document.getElementById("title").textContent = doc.info.title + " " + doc.info.version;
  document.getElementById("about").textContent = doc.info.description || "";
  const box = document.getElementById("ops");
  box.textContent = "";
  const byTag = {};
  Object.entries(doc.paths).forEach(([path, ops]) => Object.entries(ops).forEach(([m, op]) => {
    (byTag[(op.tags || ["other"])[0]] ||= []).push([path, m, op]);
  }));
  Object.entries(byTag).forEach(([tag, ops]) => {
    box.append(el("h2", {}, tag));
    ops.forEach(([path, method, op]) => {
      const div = el("div", {class: "op"},
        el("span", {class: "m " + method}, method.toUpperCase()), el("code", {}, path),
        " ", el("span", {}, op.summary || ""));
      const details = el("details", {}, el("summary", {}, "parameters, body, answers"));
      if ((op.parameters || []).length) {
        const t = el("table", {});
        op.parameters.forEach(p => t.append(el("tr", {},
          el("td", {}, el("code", {}, p.name)),
          el("td", {}, p.in + (p.required ? ", required" : "")),
          el("td", {}, JSON.stringify(p.schema)), el("td", {}, p.description || ""))));
        details.append(t);
      }
      const body = op.requestBody && op.requestBody.content["application/json"];
      if (body) details.append(el("div", {}, "JSON body:"), schemaBlock(body.schema));
      Object.entries(op.responses || {}).forEach(([code, ans]) => {
        details.append(el("div", {}, el("b", {}, code), " " + ans.description));
        const json = ans.content && ans.content["application/json"];
        if (json && json.schema) details.append(schemaBlock(json.schema));
      });
      if (op.security && !op.security.length) {
        details.append(el("div", {class: "muted"}, "no token needed"));
      }
      div.append(details);
      box.append(div);
    });
  });
}).catch(err => {
  document.getElementById("ops").textContent = "could not load /openapi.json: " + err;
});
</script>
</body></html>
"""
