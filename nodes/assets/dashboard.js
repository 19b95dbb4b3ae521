// Missive's dashboard: fetches /api/v1/dashboard every 5 s and draws it as inline SVG, follows the live event feed
// (server-sent events read through fetch, so the token goes in a header, never in a URL), searches messages and shows
// a timeline with the operator actions. Every text from the node is set with textContent (addresses are untrusted).
"use strict"
;(function () {
  var COLORS = ["#2f6fde", "#e8710a", "#1e8e3e", "#d01884", "#9334e6", "#12b5cb", "#c0392b", "#7f8c8d"]
  var token = sessionStorage.getItem("missive-token") || ""
  var streaming = null
  var timer = null
  var openId = null

  function $(id) {
    return document.getElementById(id)
  }
  function el(tag, attrs, children) {
    var e = document.createElement(tag)
    for (var k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k]
      else if (k === "onclick") e.addEventListener("click", attrs[k])
      else e.setAttribute(k, attrs[k])
    }
    ;(children || []).forEach(function (c) {
      e.appendChild(c)
    })
    return e
  }
  function svg(tag, attrs) {
    var e = document.createElementNS("http://www.w3.org/2000/svg", tag)
    for (var k in attrs || {}) e.setAttribute(k, attrs[k])
    return e
  }
  function status(text, error) {
    var s = $("status")
    s.textContent = text
    s.className = error ? "error" : ""
  }
  function api(path, init) {
    init = init || {}
    init.headers = Object.assign({ authorization: "Bearer " + token }, init.headers || {})
    return fetch(path, init).then(function (r) {
      return r.text().then(function (t) {
        var body = null
        try {
          body = t ? JSON.parse(t) : null
        } catch (e) {
          body = null
        }
        if (!r.ok) throw new Error(r.status + ": " + (body && body.error ? body.error.message : r.statusText))
        return body
      })
    })
  }
  function two(n) {
    return String(n).padStart(2, "0")
  }
  function hhmm(ms, seconds) {
    var d = new Date(ms)
    return two(d.getHours()) + ":" + two(d.getMinutes()) + (seconds ? ":" + two(d.getSeconds()) : "")
  }
  function age(ms) {
    var s = Math.max(0, Math.round(ms / 1000))
    if (s < 60) return s + "s"
    if (s < 3600) return Math.floor(s / 60) + "m" + (s % 60) + "s"
    return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m"
  }

  // A line chart: one polyline per series over the same times; the svg carries data-sum and data-series for tests.
  function chart(container, times, series, unit) {
    var names = Object.keys(series)
      .sort(function (a, b) {
        return sum(series[b]) - sum(series[a])
      })
      .slice(0, COLORS.length)
    var W = 640,
      H = 200,
      L = 40,
      R = 10,
      T = 10,
      B = 22
    var max = 1
    names.forEach(function (n) {
      series[n].forEach(function (v) {
        if (v > max) max = v
      })
    })
    max = niceMax(max)
    var t0 = times[0],
      t1 = times[times.length - 1]
    if (t1 === t0) t1 = t0 + 60000
    var x = function (t) {
      return L + ((t - t0) / (t1 - t0)) * (W - L - R)
    }
    var y = function (v) {
      return T + (1 - v / max) * (H - T - B)
    }
    var s = svg("svg", { class: "chart", viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", role: "img" })
    var total = 0
    for (var i = 0; i <= 4; i++) {
      var v = (max * i) / 4
      s.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e3e6ec", "stroke-width": 1 }))
      var label = svg("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" })
      label.textContent = String(Math.round(v * 10) / 10)
      s.appendChild(label)
    }
    for (var j = 0; j <= 4; j++) {
      var t = t0 + ((t1 - t0) * j) / 4
      var tl = svg("text", { x: x(t), y: H - 6, "text-anchor": j === 0 ? "start" : j === 4 ? "end" : "middle" })
      tl.textContent = hhmm(t, t1 - t0 < 10 * 60000)
      s.appendChild(tl)
    }
    names.forEach(function (n, k) {
      // Samples (unit "max": queue depth) hold until the next one: drawn as steps, not slopes.
      var pts = series[n]
        .map(function (v, i) {
          var p = x(times[i]).toFixed(1) + "," + y(v).toFixed(1)
          return unit === "max" && i > 0 ? x(times[i]).toFixed(1) + "," + y(series[n][i - 1]).toFixed(1) + " " + p : p
        })
        .join(" ")
      total += sum(series[n])
      var line = svg("polyline", {
        points: pts,
        fill: "none",
        stroke: COLORS[k],
        "stroke-width": 2,
        "data-name": n,
        "stroke-linejoin": "round"
      })
      s.appendChild(line)
    })
    s.setAttribute("data-series", String(names.length))
    s.setAttribute("data-sum", String(total))
    container.replaceChildren(s)
    var legend = el("div", { class: "legend" })
    names.forEach(function (n, k) {
      var item = el("span", {
        text: n + " (" + (unit === "max" ? Math.max.apply(null, series[n]) + " max" : sum(series[n]) + " total") + ")"
      })
      item.style.setProperty("--c", COLORS[k])
      legend.appendChild(item)
    })
    if (names.length === 0) legend.appendChild(el("span", { class: "empty", text: "no data yet" }))
    container.appendChild(legend)
  }
  function sum(a) {
    return a.reduce(function (x, y) {
      return x + y
    }, 0)
  }
  function niceMax(v) {
    var p = Math.pow(10, Math.floor(Math.log10(v)))
    var m = [1, 2, 2.5, 5, 10].find(function (f) {
      return f * p >= v
    })
    return m * p
  }

  function table(container, head, rows, empty) {
    if (rows.length === 0) return container.replaceChildren(el("p", { class: "empty", text: empty }))
    var t = el("table", {}, [
      el(
        "tr",
        {},
        head.map(function (h) {
          return el("th", { text: h.text, class: h.num ? "num" : "" })
        })
      )
    ])
    rows.forEach(function (r) {
      t.appendChild(
        el(
          "tr",
          {},
          r.map(function (c, i) {
            return el("td", { text: String(c), class: head[i].num ? "num" : "" })
          })
        )
      )
    })
    container.replaceChildren(t)
  }

  function refresh() {
    return api("/api/v1/dashboard").then(function (d) {
      $("node").textContent = "node " + d.node + (d.cluster.clustered ? " · cluster of " + d.cluster.nodes.length : "")
      status("updated " + hhmm(d.now, true) + (d.scope ? " · token scope " + d.scope : ""))
      var delivered = Object.assign({}, d.series.delivered)
      delivered["received"] = d.series.received
      chart($("throughput"), d.series.minutes, delivered, "total")
      chart($("depth"), d.series.depth.times, d.series.depth.byDestination, "max")
      // The throughput is folded from the log (its last hour, read back at the node's start); the depth is sampled
      // from the node's start. Each says since when it counts rather than draw zeros as if nothing had happened before.
      var partial = d.series.since > d.series.minutes[0]
      $("throughput-span").textContent =
        "messages received and recipients delivered per destination, per minute, last hour" +
        (partial ? " (counted since " + hhmm(d.series.since, true) + ", as far back as the node read the log at its start)" : "")
      var young = d.series.started > d.now - 3600000
      $("depth-span").textContent = young
        ? "messages per destination, every 10 s since " + hhmm(d.series.started, true) + " (node start)"
        : "messages per destination, last hour"
      table(
        $("queue"),
        [{ text: "destination" }, { text: "messages", num: true }, { text: "oldest", num: true }],
        d.queue
          .map(function (q) {
            return [q.destination, q.messages, age(q.oldestAgeMs)]
          })
          .concat(d.held ? [["(on hold)", d.held, ""]] : []),
        "the queue is empty"
      )
      table(
        $("cluster"),
        [{ text: "node" }, { text: "state" }, { text: "driving", num: true }, { text: "messages", num: true }, { text: "ports" }],
        d.cluster.nodes.map(function (n) {
          return [
            n.node,
            n.alive ? "alive" : "dead",
            n.active,
            n.held !== undefined ? n.held : n.queued,
            Object.keys(n.ports || {})
              .map(function (k) {
                return k + " " + n.ports[k]
              })
              .join(", ")
          ]
        }),
        "no nodes"
      )
    })
  }

  function addFeed(item) {
    var li = el("li", {}, [
      el("time", { text: hhmm(item.at, true) }),
      el("span", {}, [el("span", { class: "type", text: item.type })]),
      el("span", {}, [
        el("a", {
          class: "id",
          text: item.id,
          onclick: function () {
            openTimeline(item.id)
          }
        }),
        document.createTextNode(" " + item.summary)
      ])
    ])
    var feed = $("feed")
    feed.insertBefore(li, feed.firstChild)
    while (feed.children.length > 100) feed.removeChild(feed.lastChild)
  }

  function follow() {
    if (streaming) streaming.abort()
    var ctl = new AbortController()
    streaming = ctl
    $("feed").replaceChildren()
    fetch("/api/v1/events/stream?backlog=50", { headers: { authorization: "Bearer " + token }, signal: ctl.signal })
      .then(function (r) {
        if (!r.ok) throw new Error("event stream: " + r.status)
        var reader = r.body.getReader()
        var decoder = new TextDecoder()
        var buf = ""
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) throw new Error("event stream ended")
            buf += decoder.decode(chunk.value, { stream: true })
            var i
            while ((i = buf.indexOf("\n\n")) >= 0) {
              var block = buf.slice(0, i)
              buf = buf.slice(i + 2)
              var data = block
                .split("\n")
                .filter(function (l) {
                  return l.indexOf("data: ") === 0
                })
                .map(function (l) {
                  return l.slice(6)
                })
                .join("\n")
              if (data) addFeed(JSON.parse(data))
            }
            return pump()
          })
        }
        return pump()
      })
      .catch(function () {
        if (streaming === ctl) setTimeout(follow, 3000)
      })
  }

  function openTimeline(id) {
    openId = id
    var box = $("timeline")
    return api("/api/v1/messages/" + encodeURIComponent(id))
      .then(function (t) {
        var s = t.state
        var rcpts = (s.recipients || [])
          .map(function (r) {
            return r.address + ": " + r.status
          })
          .join("; ")
        var result = el("span", { id: "action-result" })
        var actions = el(
          "div",
          { class: "actions" },
          ["hold", "release", "retry", "delete", "bounce"]
            .map(function (op) {
              return el("button", {
                class: "secondary",
                "data-op": op,
                text: op[0].toUpperCase() + op.slice(1),
                onclick: function () {
                  operate(id, op, result)
                }
              })
            })
            .concat([result])
        )
        var rows = el("table", {}, [
          el(
            "tr",
            {},
            ["time", "node", "event", "detail"].map(function (h) {
              return el("th", { text: h })
            })
          )
        ])
        t.entries.forEach(function (e) {
          rows.appendChild(
            el("tr", {}, [
              el("td", { text: e.time.replace("T", " ").replace("Z", "") }),
              el("td", { text: e.node }),
              el("td", { class: "type", text: e.type }),
              el("td", { text: e.summary })
            ])
          )
        })
        box.replaceChildren(
          el("h2", {}, [document.createTextNode("Message "), el("span", { class: "id", text: id })]),
          el("p", {}, [
            el("span", { class: "state", id: "message-state", text: s.status + (s.held ? " (held)" : "") }),
            document.createTextNode(" · " + rcpts)
          ]),
          actions,
          rows
        )
      })
      .catch(function (e) {
        box.replaceChildren(el("p", { class: "empty", text: String(e.message) }))
      })
  }

  function operate(id, op, result) {
    api("/api/v1/messages/" + encodeURIComponent(id) + "/" + op, { method: "POST" })
      .then(function (r) {
        return openTimeline(id).then(function () {
          var out = $("action-result")
          out.textContent = op + ": " + (r.events.join(", ") || "no change")
          out.className = "ok"
          refresh().catch(function () {})
        })
      })
      .catch(function (e) {
        result.textContent = op + " refused: " + e.message
        result.className = "error"
      })
  }

  function start() {
    if (!token) return status("enter a token")
    if (timer) clearInterval(timer)
    refresh()
      .then(function () {
        follow()
        timer = setInterval(function () {
          refresh().catch(function (e) {
            status(String(e.message), true)
          })
        }, 5000)
      })
      .catch(function (e) {
        status(String(e.message), true)
      })
  }

  $("login").addEventListener("submit", function (ev) {
    ev.preventDefault()
    token = $("token").value.trim()
    sessionStorage.setItem("missive-token", token)
    $("token").value = ""
    start()
  })
  $("search").addEventListener("submit", function (ev) {
    ev.preventDefault()
    var q = $("q").value.trim()
    if (!q) return
    api("/api/v1/search?q=" + encodeURIComponent(q))
      .then(function (r) {
        var box = $("results")
        if (r.ids.length === 0) return box.replaceChildren(el("p", { class: "empty", text: "no message found for " + q }))
        box.replaceChildren.apply(
          box,
          r.ids.map(function (id) {
            return el("a", {
              class: "id",
              text: id,
              onclick: function () {
                openTimeline(id)
              }
            })
          })
        )
        if (r.ids.length === 1) openTimeline(r.ids[0])
      })
      .catch(function (e) {
        $("results").replaceChildren(el("p", { class: "empty", text: String(e.message) }))
      })
  })
  start()
})()
