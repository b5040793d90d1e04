/* The site page's charts: series from the chart endpoint (bucketed in the database), drawn with
   the vendored uPlot; redrawn on a range change, every refresh interval and on resize. */
(function () {
  "use strict";
  var panel = document.getElementById("charts");
  if (!panel || typeof uPlot === "undefined") { return; }
  var REFRESH_MS = { hour: 10000, day: 60000, week: 300000 };
  var charts = {};
  var range = "hour";
  var timer = null;

  function width(el) { return Math.max(240, el.clientWidth || 600); }

  function draw(id, series, data) {
    var el = document.getElementById(id);
    if (!el) { return; }
    if (charts[id]) { charts[id].destroy(); }
    var opts = {
      width: width(el), height: 220, series: [{}].concat(series),
      axes: [{}, { size: 60 }], legend: { live: true }, cursor: { drag: { x: false, y: false } }
    };
    charts[id] = new uPlot(opts, data, el);
  }

  function line(label, stroke, extra) {
    var s = { label: label, stroke: stroke, width: 2, spanGaps: false };
    for (var k in extra || {}) { s[k] = extra[k]; }
    return s;
  }

  function render(body) {
    var t = body.time;
    var limit = t.map(function () { return body.grid_limit_kw; });
    document.getElementById("chart-note").textContent =
      t.length + " points, " + (body.bucket_s >= 60 ? body.bucket_s / 60 + "-minute" : body.bucket_s + "-second") + " averages";
    draw("chart-soc", [line("SOC %", "#1b7f3b")], [t, body.battery_soc_pct]);
    draw("chart-battery", [line("Battery kW", "#1f5fa8")], [t, body.battery_power_kw]);
    draw("chart-grid", [
      line("Import kW (avg)", "#8a5a00"),
      line("Import kW (peak)", "#d19a2a", { width: 1 }),
      line("Limit kW", "#b3261e", { dash: [6, 4] })
    ], [t, body.grid_import_kw, body.grid_import_kw_max, limit]);
    draw("chart-chargers", [line("Chargers kW", "#6a3fa0")], [t, body.chargers_power_kw]);
    if (body.plan && document.getElementById("chart-plan-battery")) {
      var p = body.plan;
      var battery = uPlot.join([[t, body.battery_power_kw], [p.time, p.battery_power_kw]]);
      var soc = uPlot.join([[t, body.battery_soc_pct], [p.time, p.soc_pct]]);
      draw("chart-plan-battery", [line("Actual kW", "#1f5fa8"), line("Plan kW", "#1f5fa8", { dash: [6, 4] })], battery);
      draw("chart-plan-soc", [line("Actual %", "#1b7f3b"), line("Plan %", "#1b7f3b", { dash: [6, 4] })], soc);
    }
    panel.dataset.points = String(t.length);
  }

  function load() {
    fetch(panel.dataset.chartUrl + "?range=" + range, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(render)
      .catch(function (e) { document.getElementById("chart-note").textContent = "Charts unavailable: " + e.message; });
    clearTimeout(timer);
    timer = setTimeout(load, REFRESH_MS[range] || 60000);
  }

  panel.querySelectorAll("button[data-range]").forEach(function (button) {
    button.addEventListener("click", function () {
      range = button.dataset.range;
      panel.querySelectorAll("button[data-range]").forEach(function (b) {
        b.setAttribute("aria-pressed", b === button ? "true" : "false");
      });
      document.getElementById("csv-link").href = panel.dataset.exportUrl + "?range=" + range;
      load();
    });
  });

  var resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () {
      Object.keys(charts).forEach(function (id) {
        charts[id].setSize({ width: width(document.getElementById(id)), height: 220 });
      });
    }, 150);
  });
  load();
}());
