/* pyleakhunt report: inlined into the page by pyleakhunt/export/html.py.
 *
 * Draws the sections described by the JSON in #plh-data.  Every string that
 * came from the traced program (file and function names, source lines) is
 * written with textContent or as an attribute value: never parsed as HTML.
 * Sizes use CSSOM (element.style.x = ...), which the page's CSP allows,
 * never a style attribute.
 */
(function () {
  "use strict";

  var SVGNS = "http://www.w3.org/2000/svg";
  var ROW = 18; // flame graph row height, px
  var PALETTE = ["#e8590c", "#2f9e44", "#ae3ec9", "#1098ad", "#f59f00",
                 "#d6336c", "#5c7cfa", "#74b816"];
  var KIND_COLOUR = { total: "#0969da", rss: "#57606a" };
  var CAT_NAMES = [["user", "your code"], ["stdlib", "standard library"],
                   ["package", "installed packages"],
                   ["native", "no source file"], ["other", "grouped (other)"]];

  var data = JSON.parse(document.getElementById("plh-data").textContent);
  var FILES = data.files;   // [filename, category]
  var FRAMES = data.frames; // [file index, line, function, source line]

  // ------------------------------------------------------------------
  // Small helpers

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVGNS, tag);
    for (var key in attrs) {
      if (Object.prototype.hasOwnProperty.call(attrs, key)) {
        node.setAttribute(key, String(attrs[key]));
      }
    }
    return node;
  }

  var BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

  function byteUnit(value) {
    var k = 0;
    value = Math.abs(value);
    while (value >= 1024 && k < BYTE_UNITS.length - 1) { value /= 1024; k++; }
    return k;
  }

  function trim(value, digits) {
    var text = value.toFixed(digits);
    if (text.indexOf(".") >= 0) { text = text.replace(/\.?0+$/, ""); }
    return text;
  }

  function fmtBytes(value, signed) {
    var k = byteUnit(value);
    var scaled = Math.abs(value) / Math.pow(1024, k);
    var digits = k === 0 ? 0 : (scaled < 10 ? 2 : (scaled < 100 ? 1 : 0));
    var sign = value < 0 ? "-" : (signed && value > 0 ? "+" : "");
    return sign + trim(scaled, digits) + " " + BYTE_UNITS[k];
  }

  function timeUnit(seconds) {
    seconds = Math.abs(seconds);
    if (seconds >= 2 * 3600) { return [3600, "h"]; }
    if (seconds >= 120) { return [60, "min"]; }
    if (seconds >= 1 || seconds === 0) { return [1, "s"]; }
    return [0.001, "ms"];
  }

  function fmtTime(seconds) {
    var unit = timeUnit(seconds);
    var scaled = seconds / unit[0];
    return trim(scaled, Math.abs(scaled) < 10 ? 2 : 1) + " " + unit[1];
  }

  function fmtCount(value) {
    // Not toLocaleString: thousands of labels, and Intl is slow.
    return String(Math.round(value)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function fmtX(section, x) {
    return section.x_kind === "time" ? fmtTime(x) : fmtCount(x);
  }

  function percent(part, whole) {
    if (!whole) { return "0%"; }
    var p = 100 * part / whole;
    return trim(p, p < 10 ? 2 : 1) + "%";
  }

  /* A step of 1, 2 or 5 times a power of ten giving about `target` ticks. */
  function niceStep(span, target) {
    if (!(span > 0)) { return 1; }
    var raw = span / target;
    var power = Math.pow(10, Math.floor(Math.log(raw) / Math.LN10));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (steps[i] * power >= raw) { return steps[i] * power; }
    }
    return 10 * power;
  }

  /* Ticks in a unit (1024^k for bytes, s/min/h for time). */
  function ticks(low, high, unitSize, target) {
    var step = niceStep((high - low) / unitSize, target) * unitSize;
    var out = [];
    for (var v = Math.ceil(low / step) * step; v <= high + step * 1e-9; v += step) {
      out.push(v);
    }
    return out;
  }

  function tickLabelBytes(value, k) {
    var scaled = value / Math.pow(1024, k);
    return trim(scaled, 2) + " " + BYTE_UNITS[k];
  }

  function seriesColour(one, index) {
    return KIND_COLOUR[one.kind] || PALETTE[index % PALETTE.length];
  }

  function frameName(index) {
    if (index === -1) { return "all"; }
    if (index === -2) { return "other"; }
    return FRAMES[index][2];
  }

  function frameWhere(index) {
    if (index < 0) { return ""; }
    var f = FRAMES[index];
    var file = FILES[f[0]][0];
    return f[1] ? file + ":" + f[1] : file;
  }

  function frameCategory(index) {
    if (index === -1) { return "root"; }
    if (index === -2) { return "other"; }
    return FILES[FRAMES[index][0]][1];
  }

  function tipRow(tip, label, value) {
    var row = el("div", "plh-tip-row");
    row.appendChild(el("span", null, label));
    row.appendChild(el("span", "plh-tip-value", value));
    tip.appendChild(row);
    return row;
  }

  function placeTip(tip, box, x, y) {
    tip.style.display = "block";
    var width = tip.offsetWidth;
    var left = x + 14;
    if (left + width > box.clientWidth) { left = Math.max(0, x - width - 14); }
    tip.style.left = left + "px";
    tip.style.top = (y + 14) + "px";
  }

  function notes(parent, lines) {
    if (!lines || !lines.length) { return; }
    var list = el("ul", "plh-notes");
    lines.forEach(function (line) { list.appendChild(el("li", null, line)); });
    parent.appendChild(list);
  }

  // ------------------------------------------------------------------
  // Chart

  /* Lowest value each point still reaches later on (suffix minimum). */
  function floorOf(points) {
    var out = new Array(points.length);
    var low = Infinity;
    for (var i = points.length - 1; i >= 0; i--) {
      low = Math.min(low, points[i][1]);
      out[i] = [points[i][0], low];
    }
    return out;
  }

  function nearest(points, x) {
    var lo = 0, hi = points.length - 1;
    if (hi < 0) { return null; }
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (points[mid][0] < x) { lo = mid + 1; } else { hi = mid; }
    }
    if (lo > 0 && Math.abs(points[lo - 1][0] - x) <= Math.abs(points[lo][0] - x)) {
      lo -= 1;
    }
    return points[lo];
  }

  function drawChart(section, body) {
    var series = section.series.filter(function (s) { return s.points.length; });
    if (!series.length) {
      body.appendChild(el("p", "plh-empty", "Nothing was recorded to plot."));
      return;
    }
    var box = el("div", "plh-chart-box");
    body.appendChild(box);
    var width = Math.max(box.clientWidth || 900, 320);
    var height = 320;
    var m = { left: 74, right: 16, top: 12, bottom: 34 };
    var xmin = Infinity, xmax = -Infinity, ymax = 0;
    series.forEach(function (s) {
      s.points.forEach(function (p) {
        xmin = Math.min(xmin, p[0]); xmax = Math.max(xmax, p[0]);
        ymax = Math.max(ymax, p[1]);
      });
    });
    if (xmax <= xmin) { xmax = xmin + 1; }
    if (ymax <= 0) { ymax = 1; }
    ymax *= 1.05;
    var plotW = width - m.left - m.right, plotH = height - m.top - m.bottom;
    function sx(x) { return m.left + (x - xmin) / (xmax - xmin) * plotW; }
    function sy(y) { return m.top + plotH - y / ymax * plotH; }

    var root = svg("svg", { viewBox: "0 0 " + width + " " + height,
                            width: width, height: height, role: "img" });
    root.setAttribute("aria-label", section.title);
    var axis = svg("g", { "class": "plh-axis" });
    root.appendChild(axis);
    var k = byteUnit(ymax);
    ticks(0, ymax, Math.pow(1024, k), 5).forEach(function (v) {
      axis.appendChild(svg("line", { "class": "plh-grid", x1: m.left,
        x2: width - m.right, y1: sy(v), y2: sy(v) }));
      var label = svg("text", { x: m.left - 6, y: sy(v) + 4, "text-anchor": "end" });
      label.textContent = tickLabelBytes(v, k);
      axis.appendChild(label);
    });
    var xUnit = section.x_kind === "time" ? timeUnit(xmax - xmin) : [1, ""];
    ticks(xmin, xmax, xUnit[0], 7).forEach(function (v) {
      axis.appendChild(svg("line", { "class": "plh-axis-line", x1: sx(v),
        x2: sx(v), y1: m.top + plotH, y2: m.top + plotH + 4 }));
      var label = svg("text", { x: sx(v), y: height - 14, "text-anchor": "middle" });
      label.textContent = section.x_kind === "time"
        ? trim((v - xmin) / xUnit[0], 2) + " " + xUnit[1] : fmtCount(v);
      axis.appendChild(label);
    });
    axis.appendChild(svg("line", { "class": "plh-axis-line", x1: m.left,
      x2: width - m.right, y1: m.top + plotH, y2: m.top + plotH }));
    if (section.x_label) {
      var xl = svg("text", { x: width - m.right, y: height - 1, "text-anchor": "end" });
      xl.textContent = section.x_label;
      axis.appendChild(xl);
    }

    function pathOf(points) {
      var d = [];
      for (var i = 0; i < points.length; i++) {
        d.push((i ? "L" : "M") + sx(points[i][0]).toFixed(1) + " " +
               sy(points[i][1]).toFixed(1));
      }
      return d.join("");
    }

    var layers = [];
    var legend = el("div", "plh-legend");
    series.forEach(function (s, i) {
      var colour = seriesColour(s, i);
      var group = svg("g", {});
      var line = svg("path", { "class": "plh-series", d: pathOf(s.points),
                               stroke: colour });
      line.setAttribute("data-name", s.name);
      group.appendChild(line);
      if (s.points.length === 1) {
        group.appendChild(svg("circle", { cx: sx(s.points[0][0]),
          cy: sy(s.points[0][1]), r: 3, fill: colour }));
      }
      root.appendChild(group);
      var entry = { series: s, colour: colour, groups: [group] };
      layers.push(entry);
      var item = el("button", null);
      item.type = "button";
      var swatch = el("span", "plh-swatch");
      swatch.style.background = colour;
      item.appendChild(swatch);
      item.appendChild(el("span", null, s.name));
      item.title = s.name;
      legend.appendChild(item);
      if (s.floor && s.points.length > 1) {
        var floorGroup = svg("g", {});
        var floor = svg("path", { "class": "plh-floor", d: pathOf(floorOf(s.points)),
                                  stroke: colour });
        floor.setAttribute("data-name", s.name + " (floor)");
        floorGroup.appendChild(floor);
        root.appendChild(floorGroup);
        entry.groups.push(floorGroup);
        var fitem = el("span", null);
        var fsw = el("span", "plh-swatch plh-dashed");
        fsw.style.borderColor = colour;
        fitem.appendChild(fsw);
        fitem.appendChild(el("span", null, " floor of " + s.name +
                                          " (the lowest it still returns to)"));
        legend.appendChild(fitem);
      }
      item.addEventListener("click", function () {
        var off = item.classList.toggle("plh-off");
        entry.off = off;
        entry.groups.forEach(function (g) { g.style.display = off ? "none" : ""; });
      });
    });

    var hoverLine = svg("line", { "class": "plh-hover-line", y1: m.top,
                                  y2: m.top + plotH, x1: 0, x2: 0 });
    hoverLine.style.display = "none";
    root.appendChild(hoverLine);
    var dots = svg("g", {});
    root.appendChild(dots);
    var overlay = svg("rect", { x: m.left, y: m.top, width: plotW, height: plotH,
                                fill: "transparent" });
    root.appendChild(overlay);
    box.appendChild(root);
    box.appendChild(legend);
    var tip = el("div", "plh-tip");
    box.appendChild(tip);

    function hover(event) {
      var rect = root.getBoundingClientRect();
      var scale = width / rect.width;
      var px = (event.clientX - rect.left) * scale;
      var x = xmin + (px - m.left) / plotW * (xmax - xmin);
      var at = nearest(series[0].points, x);
      layers.forEach(function (l) {
        var p = nearest(l.series.points, x);
        if (p && Math.abs(sx(p[0]) - px) < Math.abs(sx(at[0]) - px)) { at = p; }
      });
      hoverLine.setAttribute("x1", sx(at[0]));
      hoverLine.setAttribute("x2", sx(at[0]));
      hoverLine.style.display = "";
      while (dots.firstChild) { dots.removeChild(dots.firstChild); }
      tip.textContent = "";
      tip.appendChild(el("b", null, section.x_kind === "time"
        ? "at " + fmtTime(at[0] - xmin) : (section.x_label || "x") + " " +
          fmtCount(at[0])));
      layers.forEach(function (l) {
        if (l.off) { return; }
        var p = nearest(l.series.points, at[0]);
        if (!p) { return; }
        dots.appendChild(svg("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 3.5,
                                         fill: l.colour }));
        var row = tipRow(tip, l.series.name, fmtBytes(p[1]));
        row.firstChild.style.color = l.colour;
      });
      placeTip(tip, box, (event.clientX - rect.left), (event.clientY - rect.top));
    }
    overlay.addEventListener("mousemove", hover);
    overlay.addEventListener("mouseleave", function () {
      tip.style.display = "none";
      hoverLine.style.display = "none";
      while (dots.firstChild) { dots.removeChild(dots.firstChild); }
    });
  }

  // ------------------------------------------------------------------
  // Suspects

  function sparkline(values) {
    var w = 110, h = 26;
    var node = svg("svg", { "class": "plh-spark", width: w, height: h,
                            viewBox: "0 0 " + w + " " + h });
    if (values.length < 2) { return node; }
    var low = Math.min.apply(null, values), high = Math.max.apply(null, values);
    var span = high - low || 1;
    var pts = values.map(function (v, i) {
      return (i / (values.length - 1) * (w - 2) + 1).toFixed(1) + "," +
             (h - 2 - (v - low) / span * (h - 4)).toFixed(1);
    });
    node.appendChild(svg("polyline", { points: pts.join(" "), fill: "none",
                                       stroke: "#cf222e", "stroke-width": 1.5 }));
    return node;
  }

  function whereCell(index) {
    var cell = el("td", "plh-where");
    var f = FRAMES[index];
    cell.appendChild(el("code", "plh-loc", frameWhere(index)));
    cell.appendChild(el("span", "plh-func", " in " + f[2]));
    if (f[3]) { cell.appendChild(el("code", "plh-src", f[3])); }
    return cell;
  }

  function drawSuspects(section, body) {
    if (!section.rows.length) {
      body.appendChild(el("p", "plh-empty", section.empty));
      return;
    }
    var table = el("table", "plh-table plh-suspects");
    var head = el("tr");
    [["#", 1], ["growth/s", 1], ["growth", 1], ["size", 1], ["blocks", 1],
     ["steadiness", 1], ["over time", 0], ["line", 0]].forEach(function (c) {
      head.appendChild(el("th", c[1] ? "plh-num" : null, c[0]));
    });
    var thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    var tbody = el("tbody");
    section.rows.forEach(function (row) {
      var tr = el("tr", "plh-row");
      var approx = row.estimated ? "~" : "";
      var first = el("td", "plh-num");
      var toggle = el("span", "plh-toggle", "\u25b8");
      first.appendChild(toggle);
      first.appendChild(document.createTextNode(" " + row.rank));
      tr.appendChild(first);
      tr.appendChild(el("td", "plh-num", approx + fmtBytes(row.rate, true) + "/s"));
      tr.appendChild(el("td", "plh-num", approx + fmtBytes(row.growth, true)));
      var size = el("td", "plh-num", approx + fmtBytes(row.size));
      if (row.freed) {
        size.textContent += " (freed at exit)";
        size.title = "It grew until the program ended, which freed it";
      }
      tr.appendChild(size);
      tr.appendChild(el("td", "plh-num", approx + fmtCount(row.count)));
      tr.appendChild(el("td", "plh-num", percent(row.steadiness, 1)));
      var spark = el("td");
      spark.appendChild(sparkline(row.spark));
      tr.appendChild(spark);
      tr.appendChild(whereCell(row.frame));
      tr.title = "Click for the whole traceback";
      tbody.appendChild(tr);
      var detail = el("tr", "plh-detail");
      detail.hidden = true;
      var cell = el("td");
      cell.colSpan = 8;
      cell.appendChild(el("div", null, "Traceback (most recent call last):"));
      var list = el("ol", "plh-trace");
      row.traceback.forEach(function (index) {
        var f = FRAMES[index];
        var item = el("li", index === row.frame ? "plh-named" : null);
        item.appendChild(el("code", null, frameWhere(index)));
        item.appendChild(el("span", "plh-func", " in " + f[2]));
        if (f[3]) { item.appendChild(el("code", "plh-src", f[3])); }
        list.appendChild(item);
      });
      cell.appendChild(list);
      detail.appendChild(cell);
      tbody.appendChild(detail);
      tr.addEventListener("click", function () {
        detail.hidden = !detail.hidden;
        toggle.textContent = detail.hidden ? "\u25b8" : "\u25be";
      });
    });
    table.appendChild(tbody);
    body.appendChild(table);
  }

  // ------------------------------------------------------------------
  // Flame graph (icicle: the outermost call at the top)

  function buildTree(raw) {
    var all = [];
    function make(item, parent, depth) {
      var node = { f: item[0], v: item[1], n: item[2], parent: parent,
                   depth: depth, id: all.length, kids: [] };
      all.push(node);
      item[3].forEach(function (child) { node.kids.push(make(child, node, depth + 1)); });
      return node;
    }
    var root = make(raw, null, 0);
    return { root: root, all: all };
  }

  function matches(node, term) {
    if (node.f < 0) { return node.f === -2 && "other".indexOf(term) >= 0; }
    var f = FRAMES[node.f];
    return f[2].toLowerCase().indexOf(term) >= 0 ||
           frameWhere(node.f).toLowerCase().indexOf(term) >= 0 ||
           f[3].toLowerCase().indexOf(term) >= 0;
  }

  function drawFlame(section, body) {
    var tree = buildTree(section.tree);
    var root = tree.root;
    if (!root.v) {
      body.appendChild(el("p", "plh-empty", section.empty));
      return;
    }
    var bar = el("div", "plh-toolbar");
    var search = el("input", "plh-search");
    search.type = "search";
    search.placeholder = "Search frames (function, file, line)";
    search.setAttribute("aria-label", "Search frames");
    var result = el("span", "plh-search-result");
    var reset = el("button", "plh-reset", "Reset zoom");
    reset.type = "button";
    bar.appendChild(search);
    bar.appendChild(reset);
    bar.appendChild(result);
    body.appendChild(bar);
    var box = el("div", "plh-icicle");
    body.appendChild(box);
    var tip = el("div", "plh-tip");
    var keys = el("div", "plh-keys");
    CAT_NAMES.forEach(function (c) {
      var key = el("span");
      key.appendChild(el("span", "plh-swatch plh-cat-" + c[0]));
      key.appendChild(document.createTextNode(c[1]));
      keys.appendChild(key);
    });
    body.appendChild(keys);

    var zoom = root;
    var term = "";
    var matched = {};

    function label(node) {
      return frameName(node.f) + " \u2014 " + fmtBytes(node.v) + ", " +
             fmtCount(node.n) + " blocks";
    }

    function showTip(node, event) {
      tip.textContent = "";
      tip.appendChild(el("b", null, frameName(node.f)));
      if (node.f >= 0) {
        tip.appendChild(el("div", "plh-mono", frameWhere(node.f)));
        if (FRAMES[node.f][3]) { tip.appendChild(el("div", "plh-mono", FRAMES[node.f][3])); }
      } else if (node.f === -2) {
        tip.appendChild(el("div", null, "the smallest call sites, grouped"));
      }
      tipRow(tip, "bytes", fmtBytes(node.v));
      tipRow(tip, "blocks", fmtCount(node.n));
      tipRow(tip, "share of the total", percent(node.v, root.v));
      if (zoom !== root) { tipRow(tip, "share of the zoomed frame", percent(node.v, zoom.v)); }
      var rect = box.getBoundingClientRect();
      placeTip(tip, box, event.clientX - rect.left, event.clientY - rect.top);
    }

    function addFrame(parent, node, left, width, extra, pixels) {
      // Text only where it can be read: laying out thousands of clipped
      // labels is most of the cost of drawing a big graph.
      var div = el("div", "plh-fr plh-cat-" + frameCategory(node.f) + extra,
                   width * pixels >= 24 ? label(node) : null);
      div.setAttribute("data-name", frameName(node.f));
      div.style.left = (left * 100) + "%";
      div.style.width = (width * 100) + "%";
      div.style.top = (node.depth * ROW) + "px";
      div.setAttribute("data-id", node.id);
      if (matched[node.id]) { div.classList.add("plh-match"); }
      parent.appendChild(div);
    }

    // One listener for all the frames (thousands of them): the frame is
    // found from the element's data-id.
    function nodeOf(event) {
      var target = event.target;
      if (!target || !target.getAttribute) { return null; }
      var id = target.getAttribute("data-id");
      return id === null ? null : tree.all[Number(id)];
    }
    box.addEventListener("click", function (event) {
      var node = nodeOf(event);
      if (!node) { return; }
      zoom = (node === zoom || node === root) ? root : node;
      render();
    });
    box.addEventListener("mousemove", function (event) {
      var node = nodeOf(event);
      if (node) { showTip(node, event); } else { tip.style.display = "none"; }
    });
    box.addEventListener("mouseleave", function () { tip.style.display = "none"; });

    function render() {
      box.textContent = "";
      box.appendChild(tip);
      tip.style.display = "none";
      var pixels = box.clientWidth || 1000;
      var deepest = zoom.depth;
      var frames = document.createDocumentFragment();
      for (var a = zoom.parent; a; a = a.parent) {
        addFrame(frames, a, 0, 1, " plh-ancestor", pixels);
      }
      var stack = [[zoom, 0, 1]];
      while (stack.length) {
        var item = stack.pop();
        var node = item[0], left = item[1], width = item[2];
        addFrame(frames, node, left, width, "", pixels);
        deepest = Math.max(deepest, node.depth);
        var x = left;
        for (var i = 0; i < node.kids.length; i++) {
          var kid = node.kids[i];
          var w = width * kid.v / node.v;
          if (w * pixels < 1) { break; } // sorted: the rest are narrower
          stack.push([kid, x, w]);
          x += w;
        }
      }
      box.appendChild(frames);
      box.style.height = ((deepest + 1) * ROW) + "px";
      reset.disabled = zoom === root;
    }

    function runSearch() {
      term = search.value.trim().toLowerCase();
      matched = {};
      if (!term) {
        result.textContent = "";
        render();
        return;
      }
      var count = 0, bytes = 0;
      // A match inside a match is counted once: the outer one holds it.
      (function walk(node, inside) {
        var hit = node !== root && matches(node, term);
        if (hit) { matched[node.id] = true; count++; if (!inside) { bytes += node.v; } }
        node.kids.forEach(function (k) { walk(k, inside || hit); });
      })(root, false);
      result.textContent = count
        ? count + " matching frames: " + fmtBytes(bytes) + ", " +
          percent(bytes, root.v) + " of the total"
        : "no frame matches";
      render();
    }

    search.addEventListener("input", runSearch);
    reset.addEventListener("click", function () { zoom = root; render(); });
    render();
    var resizeTimer = 0;
    window.addEventListener("resize", function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(render, 150);
    });
  }

  // ------------------------------------------------------------------
  // The page

  var DRAW = { chart: drawChart, suspects: drawSuspects, flame: drawFlame };
  var main = document.getElementById("plh-main");
  main.textContent = "";
  if (data.subtitle.length) {
    var sub = el("div", "plh-subtitle");
    data.subtitle.forEach(function (line) { sub.appendChild(el("p", null, line)); });
    main.appendChild(sub);
  }
  data.sections.forEach(function (section, index) {
    var box = el("section", "plh-section plh-" + section.type);
    box.id = "plh-section-" + index;
    box.appendChild(el("h2", null, section.title));
    main.appendChild(box);
    var body = el("div");
    box.appendChild(body);
    if (DRAW[section.type]) { DRAW[section.type](section, body); }
    notes(box, section.notes);
  });
  // When the page had drawn and been laid out and painted, in ms from the
  // start of navigation (the benchmark and the browser tests wait for it):
  // the next animation frame comes after the first paint.
  requestAnimationFrame(function () {
    setTimeout(function () {
      document.documentElement.setAttribute(
        "data-plh-drawn-ms", String(Math.round(performance.now())));
    }, 0);
  });
})();
