// streamgate's page: streams with thumbnails and players, origins, bans.
// Everything shown comes from /api/v1/* with the API token, refreshed every
// few seconds while the tab is visible. No framework, no build step; the DOM
// is built with textContent only (stream names are never parsed as HTML).
"use strict";
(function () {
  const KEY = "streamgate-token";
  const REFRESH_MS = 3000;
  const THUMB_MS = 5000;
  const MPEGTS = "/static/vendor/mpegts/mpegts.js";

  // A token arriving in the address bar (the 401 form) moves to this tab's
  // sessionStorage and out of the URL, the history and any Referer.
  const here = new URL(location.href);
  if (here.searchParams.has("token")) {
    const given = here.searchParams.get("token");
    if (given) sessionStorage.setItem(KEY, given);
    here.searchParams.delete("token");
    history.replaceState(null, "", here.pathname + here.search + here.hash);
  }

  function headers() {
    const h = { Accept: "application/json" };
    const token = sessionStorage.getItem(KEY);
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }

  async function api(path) {
    const reply = await fetch(path, { headers: headers(), cache: "no-store", credentials: "omit" });
    if (reply.status === 401) {
      sessionStorage.removeItem(KEY);
      location.replace("/"); // the token form
      throw new Error("the API token was refused");
    }
    return reply;
  }

  async function reason(reply) {
    try {
      const body = await reply.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (e) { /* not JSON */ }
    return "HTTP " + reply.status;
  }

  function streamPath(app, name) {
    // One segment each: a name holding "/" or "//" survives intact.
    return "/api/v1/streams/" + encodeURIComponent(app) + "/" + encodeURIComponent(name);
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function bitrate(bps) {
    if (!bps) return "0";
    if (bps >= 1e6) return (bps / 1e6).toFixed(2) + " Mbit/s";
    return Math.round(bps / 1e3) + " kbit/s";
  }

  function seconds(value) {
    if (value === null || value === undefined) return "—";
    if (value < 60) return value.toFixed(1) + " s";
    if (value < 3600) return Math.round(value / 60) + " min";
    return (value / 3600).toFixed(1) + " h";
  }

  function videoText(video) {
    if (!video) return "no video";
    return [video.codec, video.profile, video.level].filter(Boolean).join(" ");
  }

  function audioText(audio) {
    if (!audio) return "no audio";
    const parts = [audio.codec];
    if (audio.sample_rate) parts.push(audio.sample_rate / 1000 + " kHz");
    if (audio.channels) parts.push(audio.channels + " ch");
    return parts.join(" ");
  }

  function resolution(video) {
    return video && video.width && video.height ? video.width + "×" + video.height : "—";
  }

  function viewers(stream) {
    const v = stream.viewers;
    if (v && typeof v === "object") {
      return "RTMP " + (v.rtmp || 0) + " · HTTP-FLV " + (v.flv || 0) + " · WS-FLV " + (v["ws-flv"] || 0);
    }
    return "RTMP " + (stream.players || 0);
  }

  // ------------------------------------------------------------ mpegts.js, on first play

  let mpegtsLoading = null;
  function loadMpegts() {
    if (window.mpegts) return Promise.resolve(window.mpegts);
    if (mpegtsLoading === null) {
      mpegtsLoading = new Promise(function (resolve, reject) {
        const script = document.createElement("script");
        script.src = MPEGTS;
        script.onload = function () { resolve(window.mpegts); };
        script.onerror = function () { mpegtsLoading = null; reject(new Error("mpegts.js did not load")); };
        document.head.appendChild(script);
      });
    }
    return mpegtsLoading;
  }

  // ------------------------------------------------------------ stream cards

  const cards = new Map(); // "app/name" -> card
  let origins = new Map(); // address -> origin view

  function makeCard(stream) {
    const key = stream.app + "/" + stream.name;
    const root = el("article", "stream");
    root.dataset.key = key;
    const figure = el("figure", "thumb");
    const img = el("img");
    img.alt = "thumbnail of " + key;
    img.hidden = true;
    const why = el("figcaption", "why", "no thumbnail yet");
    figure.append(img, why);

    const body = el("div", "body");
    const title = el("h3", "title");
    const nameNode = el("span", "name", key);
    const state = el("span", "state");
    title.append(nameNode, state);
    const facts = el("dl", "facts");
    const fields = {};
    for (const [id, label] of [
      ["video", "video"], ["audio", "audio"], ["size", "resolution"], ["bitrate", "bitrate in"],
      ["viewers", "viewers"], ["upstream", "upstream"], ["keyframe", "last keyframe"],
    ]) {
      const dd = el("dd");
      dd.dataset.field = id;
      facts.append(el("dt", null, label), dd);
      fields[id] = dd;
    }
    const controls = el("div", "controls");
    const transport = el("select", "transport");
    transport.setAttribute("aria-label", "transport for " + key);
    for (const [value, label] of [["flv", "HTTP-FLV"], ["ws", "WebSocket-FLV"]]) {
      const option = el("option", null, label);
      option.value = value;
      transport.append(option);
    }
    const button = el("button", "play", "Play");
    button.type = "button";
    controls.append(transport, button);
    const video = el("video", "player");
    video.muted = true;
    video.controls = true;
    video.playsInline = true;
    video.hidden = true;
    const error = el("p", "player-error");
    body.append(title, facts, controls, video, error);
    root.append(figure, body);

    const card = {
      key, root, img, why, state, fields, transport, button, video, error,
      stream, player: null, thumbUrl: null, thumbBusy: false, thumbAt: 0,
    };
    button.addEventListener("click", function () {
      if (card.player) stopPlayer(card); else startPlayer(card);
    });
    return card;
  }

  function fillCard(card, stream) {
    card.stream = stream;
    card.state.textContent = stream.state;
    card.state.className = "state " + stream.state;
    card.fields.video.textContent = videoText(stream.video);
    card.fields.audio.textContent = audioText(stream.audio);
    card.fields.size.textContent = resolution(stream.video);
    card.fields.bitrate.textContent = bitrate(stream.bitrate_in_bps);
    card.fields.viewers.textContent = viewers(stream);
    card.fields.keyframe.textContent =
      stream.last_keyframe_age_seconds === null ? "none yet" : seconds(stream.last_keyframe_age_seconds) + " ago";
    const up = stream.upstream || {};
    if (up.origin !== undefined) {
      const origin = up.origin ? origins.get(up.origin) : null;
      let text = (up.origin || "no origin") + " · " + stream.state;
      if (origin) text += " · origin " + (origin.healthy ? "healthy" : "unhealthy") + " (" + origin.breaker + ")";
      card.fields.upstream.textContent = text;
    } else if (stream.publisher) {
      card.fields.upstream.textContent = "published by " + stream.publisher.peer;
    } else {
      card.fields.upstream.textContent = stream.role;
    }
  }

  function dropCard(card) {
    stopPlayer(card);
    if (card.thumbUrl) URL.revokeObjectURL(card.thumbUrl);
    card.root.remove();
  }

  async function refreshThumb(card) {
    if (card.thumbBusy) return;
    card.thumbBusy = true;
    card.thumbAt = Date.now();
    try {
      const reply = await api(streamPath(card.stream.app, card.stream.name) + "/thumbnail.jpg");
      if (!reply.ok) {
        card.why.textContent = await reason(reply);
        card.why.hidden = false;
        return;
      }
      const url = URL.createObjectURL(await reply.blob());
      const old = card.thumbUrl;
      card.thumbUrl = url;
      card.img.onload = function () {
        card.img.hidden = false;
        card.why.hidden = true;
        if (old) URL.revokeObjectURL(old);
      };
      card.img.src = url;
    } catch (e) {
      card.why.textContent = "thumbnail: " + e.message;
    } finally {
      card.thumbBusy = false;
    }
  }

  async function startPlayer(card) {
    card.error.textContent = "";
    const which = card.transport.value;
    try {
      const reply = await api(streamPath(card.stream.app, card.stream.name) + "/play-urls");
      if (!reply.ok) throw new Error(await reason(reply));
      const urls = await reply.json();
      const url = urls[which];
      if (!url) {
        throw new Error(urls.flv ? "WebSocket-FLV is off ([flv] websocket)" : "HTTP-FLV is off ([flv] enabled)");
      }
      if (urls.note) card.error.textContent = urls.note;
      const mpegts = await loadMpegts();
      if (!mpegts.isSupported()) throw new Error("this browser has no Media Source Extensions");
      const player = mpegts.createPlayer(
        { type: "flv", isLive: true, url: url, hasAudio: !!card.stream.audio, hasVideo: !!card.stream.video },
        { enableWorker: false, lazyLoad: false, liveBufferLatencyChasing: true },
      );
      player.on(mpegts.Events.ERROR, function (type, detail, info) {
        card.error.textContent = "player: " + type + " " + detail + (info && info.msg ? " (" + info.msg + ")" : "");
      });
      card.player = player;
      card.root.dataset.transport = which;
      card.video.hidden = false;
      card.button.textContent = "Stop";
      card.transport.disabled = true;
      player.attachMediaElement(card.video);
      player.load();
      const started = player.play();
      if (started && started.catch) started.catch(function (e) { card.error.textContent = "play: " + e.message; });
    } catch (e) {
      card.error.textContent = e.message;
      stopPlayer(card);
    }
  }

  function stopPlayer(card) {
    const player = card.player;
    card.player = null;
    if (player) {
      try { player.pause(); player.unload(); player.detachMediaElement(); player.destroy(); } catch (e) { /* gone */ }
    }
    delete card.root.dataset.transport;
    card.video.hidden = true;
    card.button.textContent = "Play";
    card.transport.disabled = false;
  }

  function renderStreams(listing) {
    const container = document.getElementById("stream-cards");
    const live = (listing.streams || []).filter(function (s) { return s.state !== "missing-cached"; });
    const seen = new Set();
    for (const stream of live) {
      const key = stream.app + "/" + stream.name;
      if (seen.has(key)) continue; // an edge's variants of one name (forward_query)
      seen.add(key);
      let card = cards.get(key);
      if (!card) {
        card = makeCard(stream);
        cards.set(key, card);
        container.append(card.root);
      }
      fillCard(card, stream);
    }
    for (const [key, card] of cards) {
      if (!seen.has(key)) { dropCard(card); cards.delete(key); }
    }
    document.getElementById("streams-count").textContent = "(" + seen.size + ")";
    document.getElementById("streams-empty").hidden = seen.size > 0;
    const missing = document.getElementById("missing-note");
    const cached = listing.missing_cached_total || 0;
    missing.hidden = cached === 0;
    missing.textContent = cached + " name(s) cached as missing at the origin (refused at once).";
  }

  function renderTable(id, rows, cells) {
    const body = document.querySelector("#" + id + " tbody");
    body.replaceChildren(...rows.map(function (row) {
      const tr = el("tr");
      for (const [text, cls] of cells(row)) tr.append(el("td", cls || null, text));
      return tr;
    }));
  }

  function renderOrigins(listing) {
    const list = listing.origins || [];
    origins = new Map(list.map(function (o) { return [o.address, o]; }));
    renderTable("origins-table", list, function (o) {
      return [
        [o.address],
        [o.healthy ? "healthy" : "unhealthy", o.healthy ? "good" : "bad"],
        [o.breaker],
        [o.links + (o.max_upstreams ? " / " + o.max_upstreams : "")],
        [o.connects],
        [o.failures],
        [o.last_error || ""],
      ];
    });
    document.getElementById("origins-count").textContent = "(" + list.length + ")";
    document.getElementById("origins-empty").hidden = list.length > 0;
    document.getElementById("mode").textContent = listing.mode || "";
  }

  function renderBans(listing) {
    const list = listing.bans || [];
    renderTable("bans-table", list, function (b) {
      return [[b.ip], [b.reason], [b.offences], [seconds(b.expires_in_seconds)]];
    });
    document.getElementById("bans-count").textContent = "(" + list.length + ")";
    document.getElementById("bans-empty").hidden = list.length > 0;
  }

  async function json(path) {
    const reply = await api(path);
    if (!reply.ok) throw new Error(path + ": " + (await reason(reply)));
    return reply.json();
  }

  let timer = null;
  let running = false;
  async function refresh() {
    if (running) return;
    running = true;
    timer = null;
    const status = document.getElementById("status");
    try {
      const [streams, originList, bans] = await Promise.all([
        json("/api/v1/streams"), json("/api/v1/origins"), json("/api/v1/bans"),
      ]);
      renderOrigins(originList); // first: stream cards show their origin's health
      renderStreams(streams);
      renderBans(bans);
      status.textContent = "updated " + new Date().toLocaleTimeString();
      status.classList.remove("bad");
      document.body.dataset.loaded = "true";
      const now = Date.now();
      for (const card of cards.values()) {
        if (card.stream.video && now - card.thumbAt >= THUMB_MS) refreshThumb(card);
      }
    } catch (e) {
      status.textContent = e.message;
      status.classList.add("bad");
    } finally {
      running = false;
      if (!document.hidden) timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && timer === null && !running) refresh();
  });
  refresh();
})();
