/* The fleet page: a poll of the table answered 304 (nothing changed; htmx leaves the table as
   it is) still moves its "updated" time on, to the time of that answer (its Date header). */
(function () {
  "use strict";
  document.body.addEventListener("htmx:afterRequest", function (event) {
    var xhr = event.detail.xhr;
    var time = document.querySelector("#fleet .updated time");
    if (!xhr || xhr.status !== 304 || !time) { return; }
    var at = new Date(xhr.getResponseHeader("Date") || Date.now());
    if (isNaN(at.getTime())) { at = new Date(); }
    time.setAttribute("datetime", at.toISOString().slice(0, 19) + "+00:00");
    time.textContent = at.toISOString().slice(11, 19) + " UTC";
  });
}());
