// ringcast dashboard: reads this node's HTTP API every 2 s and draws the cluster.
//
// Everything that comes from the API (node ids, zones, stream names: stream names come from
// RTMP clients) goes into the DOM as text (createElement / textContent), never as markup.
// The admin token is kept in sessionStorage (this tab only), sent as a bearer header, never
// put in a URL.
(function () {
  'use strict';

  var REFRESH_MS = 2000;
  var FETCH_TIMEOUT_MS = 5000;
  var TOKEN_KEY = 'ringcast.adminToken';

  var state = {
    timer: null,
    inFlight: false,
    again: false,
    lastOk: 0,
    selfId: '',
    draining: false,
    auth: 'unknown', // none | ok | required | rejected | unknown
    mode: 'unknown', // cluster | standalone | joining
    memToken: '' // the token when sessionStorage is refused
  };

  function $(id) { return document.getElementById(id); }

  // el('td', {class: 'num', data: {node: 'x'}, title: '...'}, child, 'text', ...)
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === undefined || v === null) return;
        if (k === 'class') { if (v) node.className = v; }
        else if (k === 'text') node.textContent = String(v);
        else if (k === 'data') {
          Object.keys(v).forEach(function (d) { node.dataset[d] = String(v[d]); });
        } else node.setAttribute(k, String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }

  function append(parent, child) {
    if (child === undefined || child === null || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(parent, c); }); return; }
    parent.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }

  function badge(text, kind, title) {
    return el('span', { class: 'badge' + (kind ? ' ' + kind : ''), text: text, title: title });
  }

  function setBanner(id, parts) {
    var node = $(id);
    if (!parts) { node.hidden = true; node.replaceChildren(); return; }
    node.replaceChildren();
    append(node, parts);
    node.hidden = false;
  }

  // ---- formatting ----

  function fmtBps(bps) {
    bps = Number(bps) || 0;
    if (bps >= 1e9) return (bps / 1e9).toFixed(2) + ' Gb/s';
    if (bps >= 1e6) return (bps / 1e6).toFixed(1) + ' Mb/s';
    return Math.round(bps / 1e3) + ' kb/s';
  }

  function fmtInt(n) { return (Number(n) || 0).toLocaleString('en-US'); }

  function plural(n, one, many) { return fmtInt(n) + ' ' + (n === 1 ? one : many); }

  function percent(share) { return (share * 100).toFixed(1) + ' %'; }

  // A bar of `used` against `max` (0 = unlimited), labelled with `text`.
  function meter(used, max, text) {
    var label = el('span', { class: 'meter-text', text: text });
    if (!(max > 0)) return el('div', { class: 'meter', data: { limit: 'none' } }, label);
    var ratio = Math.min(used / max, 1);
    var fill = el('span', { class: 'meter-fill' + (ratio >= 1 ? ' full' : ratio >= 0.8 ? ' high' : '') });
    // Anything above zero stays visible.
    fill.style.width = (used > 0 ? Math.max(ratio * 100, 3) : 0).toFixed(1) + '%';
    return el('div', { class: 'meter', data: { limit: max }, title: percent(used / max) + ' of capacity' },
      el('span', { class: 'meter-track' }, fill), label);
  }

  // ---- fetching ----

  function token() {
    try { return window.sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return state.memToken; }
  }

  function request(method, path, accept) {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, FETCH_TIMEOUT_MS);
    var headers = { Accept: accept };
    var tok = token();
    if (tok) headers.Authorization = 'Bearer ' + tok;
    return fetch(path, {
      method: method,
      headers: headers,
      cache: 'no-store',
      credentials: 'omit',
      signal: controller.signal
    }).then(function (response) {
      return response.text().then(function (text) {
        var body = null;
        if (accept === 'application/json') {
          try { body = JSON.parse(text); } catch (e) { body = null; }
        } else {
          body = text;
        }
        return { status: response.status, body: body };
      });
    }, function (err) {
      throw new Error(method + ' ' + path + ': ' +
        (err && err.name === 'AbortError' ? 'no answer within ' + FETCH_TIMEOUT_MS / 1000 + ' s' : 'cannot reach the node'));
    }).finally(function () { clearTimeout(timer); });
  }

  function getJson(path) { return request('GET', path, 'application/json'); }

  function errorText(answer) {
    return answer.body && answer.body.error ? ': ' + answer.body.error : '';
  }

  // Prometheus text: the value of `name` (no labels), or of the labels of `ringcast_info`.
  function metric(text, name) {
    var m = new RegExp('^' + name + ' ([0-9.eE+-]+)$', 'm').exec(text || '');
    return m ? Number(m[1]) : null;
  }

  function infoLabel(text, label) {
    var line = /^ringcast_info\{(.*)\} 1$/m.exec(text || '');
    if (!line) return null;
    var m = new RegExp(label + '="((?:[^"\\\\]|\\\\.)*)"').exec(line[1]);
    return m ? m[1].replace(/\\(.)/g, function (_, c) { return c === 'n' ? '\n' : c; }) : null;
  }

  // What the auth status of a token-guarded answer says.
  function authFrom(answer) {
    if (answer.status === 401) return token() ? 'rejected' : 'required';
    if (answer.status >= 200 && answer.status < 300) return token() ? 'ok' : 'none';
    return state.auth;
  }

  // One refresh: fetch, then draw. The next one is scheduled when this one has completed.
  function refresh() {
    state.timer = null;
    state.inFlight = true;
    Promise.all([getJson('/readyz'), getJson('/api/v1/cluster/nodes')])
      .then(function (answers) {
        var ready = answers[0];
        var nodes = answers[1];
        if (nodes.status === 404 && nodes.body && nodes.body.cluster === 'disabled') {
          return standalone(ready);
        }
        if (nodes.status === 503) return joining(ready, nodes);
        if (nodes.status !== 200 || !nodes.body) {
          throw new Error('GET /api/v1/cluster/nodes answered ' + nodes.status + errorText(nodes));
        }
        return getJson('/api/v1/cluster/streams').then(function (streams) {
          return clustered(ready, nodes.body, streams);
        });
      })
      .then(function (view) {
        document.body.dataset.state = 'ok';
        setBanner('error-banner', null);
        render(view);
        state.lastOk = Date.now();
      })
      .catch(function (err) {
        document.body.dataset.state = 'error';
        setBanner('error-banner', [
          el('strong', { text: 'Refresh failed. ' }),
          String(err && err.message ? err.message : err) + '.',
          state.lastOk ? ' The figures below are from the last good refresh.' : ''
        ]);
        var ready = $('self-ready');
        ready.textContent = 'no answer';
        ready.className = 'badge bad';
        ready.dataset.ready = 'unknown';
        renderDrain();
      })
      .finally(function () {
        state.inFlight = false;
        tick();
        if (state.again) {
          state.again = false;
          schedule(0);
        } else {
          schedule(REFRESH_MS);
        }
      });
  }

  function schedule(ms) {
    if (state.timer) clearTimeout(state.timer);
    state.timer = setTimeout(refresh, ms);
  }

  // Refresh now (or right after the one under way).
  function refreshSoon() {
    if (state.inFlight) state.again = true;
    else schedule(0);
  }

  function readiness(ready) {
    var status = ready.body && ready.body.status;
    return status === 'ready' || status === 'draining' || status === 'starting' ? status : 'unknown';
  }

  // ---- the three views: clustered, joining, standalone ----

  function clustered(ready, nodesBody, streams) {
    var view = {
      mode: 'cluster',
      selfId: nodesBody.node_id || '',
      readiness: readiness(ready),
      nodes: (nodesBody.nodes || []).slice(),
      shares: nodesBody.ring_shares || {},
      streams: null,
      unreachable: [],
      auth: authFrom(streams),
      streamsError: null
    };
    if (streams.status === 200 && streams.body) {
      view.streams = streams.body.streams || [];
      view.unreachable = streams.body.unreachable || [];
    } else if (streams.status !== 401) {
      view.streamsError = 'GET /api/v1/cluster/streams answered ' + streams.status + errorText(streams);
    }
    view.authPath = 'GET /api/v1/cluster/streams';
    return view;
  }

  function joining(ready, nodes) {
    return getJson('/api/v1/streams').then(function (local) {
      var view = standaloneLike(ready, local, null);
      view.mode = 'joining';
      view.note = 'This node is still joining its cluster (' + (errorText(nodes).slice(2) || '503') + ').';
      return view;
    });
  }

  function standalone(ready) {
    return Promise.all([getJson('/api/v1/streams'), getJson('/healthz'),
      request('GET', '/metrics', 'text/plain')])
      .then(function (a) {
        var view = standaloneLike(ready, a[0], a[2].status === 200 ? a[2].body : '');
        view.mode = 'standalone';
        view.healthy = a[1].status === 200;
        view.note = 'Standalone: this node runs without a cluster (cluster.secret is not set), so it shows itself only.';
        return view;
      });
  }

  // This node alone, from /api/v1/streams (and /metrics when the streams need a token).
  function standaloneLike(ready, local, metrics) {
    var body = local.status === 200 ? local.body : null;
    var id = (body && body.node_id) || infoLabel(metrics, 'node_id') || '';
    var role = infoLabel(metrics, 'role') || 'origin';
    var streams = null;
    var players = metric(metrics, 'ringcast_players');
    var publishers = metric(metrics, 'ringcast_publishers');
    var count = metric(metrics, 'ringcast_streams');
    if (body) {
      streams = (body.streams || []).map(function (s) {
        var bytes = Number(s.bytes_in) || 0;
        var secs = Number(s.publish_seconds) || 0;
        var per = {};
        var viewers = Math.max(0, (s.players || 0) - (s.relay_players || 0));
        if (viewers > 0) per[id] = viewers;
        return {
          stream: s.key,
          node_id: s.publishing ? id : null,
          entry: s.publishing ? id : null,
          edges: [],
          players: per,
          players_total: viewers,
          bitrate_bps: s.publishing && secs > 0 ? Math.round(bytes * 8 / secs) : 0,
          relays: []
        };
      });
      players = streams.reduce(function (n, s) { return n + s.players_total; }, 0);
      publishers = (body.streams || []).filter(function (s) { return s.publishing; }).length;
      count = streams.length;
      (body.relays || []).forEach(function (r) {
        var s = streams.find(function (x) { return x.stream === r.stream; });
        if (s) s.relays.push({ node_id: id, direction: r.direction, state: r.state, upstream_node: r.upstream_node });
      });
    }
    var status = readiness(ready);
    var self = {
      id: id,
      role: role,
      tier: null,
      zone: '',
      live: true,
      ready: status === 'ready',
      draining: status === 'draining',
      leaving: false,
      in_ring: false,
      load: { players: players || 0, publishers: publishers || 0, egress_bps: null },
      capacity: null,
      usage: null,
      streams: count || 0
    };
    var view = {
      selfId: id,
      readiness: status,
      nodes: [self],
      shares: null,
      streams: streams,
      unreachable: [],
      auth: authFrom(local),
      authPath: 'GET /api/v1/streams',
      streamsError: null
    };
    if (local.status !== 200 && local.status !== 401) {
      view.streamsError = 'GET /api/v1/streams answered ' + local.status + errorText(local);
    }
    return view;
  }

  // ---- drawing ----

  function render(view) {
    state.selfId = view.selfId;
    state.mode = view.mode;
    state.auth = view.auth;
    state.draining = view.readiness === 'draining';
    document.body.dataset.mode = view.mode;
    document.body.dataset.auth = view.auth;
    document.body.dataset.self = view.selfId;
    renderHeader(view);
    renderAuth(view);
    renderNodes(view);
    renderRing(view);
    renderStreams(view);
    renderDrain();
    setBanner('mode-note', view.note ? view.note : null);
    if (view.unreachable.length) {
      setBanner('unreachable', [
        el('strong', { text: 'No answer from ' + plural(view.unreachable.length, 'node', 'nodes') + ': ' }),
        view.unreachable.map(function (id, i) {
          return [i ? ', ' : '', el('span', { class: 'mono', data: { unreachable: id }, text: id })];
        }),
        view.unreachable.length === 1
          ? '. Its streams and players are missing below.'
          : '. Their streams and players are missing below.'
      ]);
    } else {
      setBanner('unreachable', null);
    }
  }

  function renderHeader(view) {
    var self = view.nodes.find(function (n) { return n.id === view.selfId; }) || {};
    $('self-id').textContent = view.selfId || '(unknown)';
    var role = $('self-role');
    role.textContent = self.role || '?';
    role.className = 'badge role-' + (self.role || 'unknown');
    var ready = $('self-ready');
    ready.textContent = view.readiness;
    ready.className = 'badge ' + ({ ready: 'ok', draining: 'warn', starting: 'info' }[view.readiness] || 'bad');
    ready.dataset.ready = view.readiness;
    document.title = (view.selfId || 'ringcast') + ' · ringcast dashboard';
    $('foot-node').textContent = 'node ' + view.selfId + (view.mode === 'cluster' ? '' : ' · ' + view.mode);

    var parts = [];
    if (view.mode === 'cluster') {
      var live = view.nodes.filter(function (n) { return n.live; });
      var origins = live.filter(function (n) { return n.role === 'origin'; }).length;
      var edges = live.filter(function (n) { return n.role === 'edge'; }).length;
      var serving = live.filter(function (n) { return n.ready && !n.draining && !n.leaving; }).length;
      parts.push(plural(live.length, 'node', 'nodes') + ' live' +
        (view.nodes.length > live.length ? ' (' + (view.nodes.length - live.length) + ' dead)' : ''));
      parts.push(plural(origins, 'origin', 'origins') + ', ' + plural(edges, 'edge', 'edges'));
      parts.push(serving + ' serving');
    } else {
      parts.push(view.mode === 'standalone' ? 'standalone' : 'joining the cluster');
    }
    if (view.streams) {
      var players = view.streams.reduce(function (n, s) { return n + (s.players_total || 0); }, 0);
      var bitrate = view.streams.reduce(function (n, s) { return n + (s.bitrate_bps || 0); }, 0);
      parts.push(plural(view.streams.length, 'stream', 'streams'));
      parts.push(plural(players, 'player', 'players'));
      parts.push(fmtBps(bitrate) + ' in');
    }
    $('summary').textContent = parts.join(' · ');
  }

  function renderAuth(view) {
    var hint = $('auth-hint');
    if (view.auth === 'required' || view.auth === 'rejected') {
      hint.dataset.auth = view.auth;
      setBanner('auth-hint', [
        el('strong', { text: view.auth === 'required' ? 'Admin token required (401). ' : 'Admin token rejected (401). ' }),
        view.authPath + ' on this node needs http.admin_token: ' +
          (view.auth === 'required'
            ? 'enter it in the “Admin token” field above to see the streams and to drain.'
            : 'the token given is not this node’s. Correct it in the “Admin token” field above.')
      ]);
    } else {
      delete hint.dataset.auth;
      setBanner('auth-hint', null);
    }
  }

  function stateBadges(n) {
    var out = [];
    out.push(n.live ? badge('live', 'ok') : badge('dead', 'bad', 'the failure detector considers it dead'));
    if (n.live) {
      if (n.draining) out.push(badge('draining', 'warn', 'out of service, serving what it holds'));
      else if (n.ready) out.push(badge('ready', 'ok'));
      else out.push(badge('not ready', 'info'));
    }
    if (n.leaving) out.push(badge('leaving', 'warn', 'announced a clean shutdown'));
    if (n.in_ring) out.push(badge('in ring', 'info', 'member of its ring'));
    if (n.over_load_bound) out.push(badge('over bound', 'warn', 'over the load bound: skipped for new streams'));
    return out;
  }

  function renderNodes(view) {
    var body = $('nodes-body');
    var rows = view.nodes.slice().sort(function (a, b) {
      var ra = a.role === 'origin' ? 0 : 1;
      var rb = b.role === 'origin' ? 0 : 1;
      if (ra !== rb) return ra - rb;
      if ((a.tier || 0) !== (b.tier || 0)) return (a.tier || 0) - (b.tier || 0);
      return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    }).map(function (n) {
      var load = n.load || {};
      var cap = n.capacity;
      var usage = n.usage;
      var players = Number(load.players) || 0;
      var idCell = el('td', null, el('span', { class: 'id', text: n.id || '(unnamed)' }));
      if (n.id === view.selfId) idCell.appendChild(el('span', { class: 'you', text: 'this node' }));
      else if (n.http_addr && n.live) {
        idCell.appendChild(el('a', {
          class: 'node-link', href: 'http://' + n.http_addr + '/', title: 'open ' + n.id + '’s dashboard', text: '↗'
        }));
      }
      if (n.rtmp_addr) idCell.appendChild(el('span', { class: 'addr', text: n.rtmp_addr }));
      var playersCell;
      var egressCell;
      if (cap) {
        var maxPlayers = Number(cap.max_players) || 0;
        var maxMbps = Number(cap.max_egress_mbps) || 0;
        playersCell = meter(players, maxPlayers, fmtInt(players) + ' / ' + (maxPlayers ? fmtInt(maxPlayers) : 'unlimited'));
        var egress = Number(load.egress_bps) || 0;
        egressCell = meter(egress, maxMbps * 1e6, fmtBps(egress) + ' / ' + (maxMbps ? fmtBps(maxMbps * 1e6) : 'unlimited'));
      } else {
        playersCell = el('span', { text: fmtInt(players) });
        egressCell = el('span', { class: 'muted', text: '—' });
      }
      var tr = el('tr', {
        class: n.live ? '' : 'dead',
        data: {
          node: n.id,
          role: n.role,
          ready: n.ready ? 'yes' : 'no',
          draining: n.draining ? 'yes' : 'no',
          live: n.live ? 'yes' : 'no',
          players: players
        }
      },
      idCell,
      el('td', null, badge(n.role || '?', 'role-' + n.role)),
      el('td', { class: 'num', text: n.tier === null || n.tier === undefined ? '—' : n.tier }),
      el('td', { class: n.zone ? 'mono' : 'muted', text: n.zone || '—' }),
      el('td', null, stateBadges(n)),
      el('td', { class: 'players' }, playersCell),
      el('td', { class: 'egress' }, egressCell),
      el('td', { class: 'num', text: usage ? ((Number(usage.cpu_permille) || 0) / 10).toFixed(1) + ' %' : '—' }),
      el('td', { class: 'num', text: usage ? Math.round((Number(usage.rss_kib) || 0) / 1024) + ' MiB' : '—' }),
      el('td', { class: 'num', text: fmtInt(n.streams) }));
      return tr;
    });
    body.replaceChildren.apply(body, rows);
    var live = view.nodes.filter(function (n) { return n.live; }).length;
    $('nodes-count').textContent = live === view.nodes.length
      ? '(' + view.nodes.length + ')'
      : '(' + live + ' live of ' + view.nodes.length + ')';
  }

  function renderRing(view) {
    var ring = $('ring');
    if (!view.shares) {
      ring.replaceChildren(el('p', { class: 'muted', text: view.mode === 'standalone' ? 'Standalone: no ring.' : 'Not joined yet.' }));
      return;
    }
    var ids = Object.keys(view.shares).sort();
    if (!ids.length) {
      ring.replaceChildren(el('p', { class: 'muted', text: 'No origin in the ring: no stream can be placed.' }));
      return;
    }
    ring.replaceChildren.apply(ring, ids.map(function (id) {
      var share = Number(view.shares[id]) || 0;
      var fill = el('div', { class: 'share-fill' });
      fill.style.width = (Math.min(share, 1) * 100).toFixed(1) + '%';
      return el('div', { class: 'share', data: { share: id, value: share.toFixed(4) } },
        el('span', { class: 'id', text: id, title: id }),
        el('div', { class: 'share-track' }, fill),
        el('span', { class: 'share-pct', text: percent(share) }));
    }));
  }

  function relayLine(r) {
    var kind = { pulling: 'ok', pushing: 'ok', connecting: 'info', waiting: 'warn', retrying: 'bad' }[r.state] || '';
    return el('div', { class: 'relay', data: { relayNode: r.node_id, direction: r.direction, relayState: r.state } },
      el('span', { class: 'mono', text: r.node_id }),
      ' ',
      el('span', { class: 'muted', text: r.direction }),
      ' ',
      badge(r.state || '?', kind),
      r.upstream_node
        ? [el('span', { class: 'arrow', text: r.direction === 'push' ? '→' : '←' }), el('span', { class: 'mono', text: r.upstream_node })]
        : null);
  }

  function nodeList(ids) {
    if (!ids || !ids.length) return el('span', { class: 'muted', text: '—' });
    return ids.map(function (id, i) { return [i ? ', ' : '', el('span', { class: 'mono', text: id })]; });
  }

  function renderStreams(view) {
    var body = $('streams-body');
    var cols = 8;
    if (!view.streams) {
      var why = view.streamsError ||
        (view.auth === 'required' || view.auth === 'rejected'
          ? 'Streams hidden: this node needs the admin token to list them.'
          : 'No stream list.');
      body.replaceChildren(el('tr', null, el('td', { class: 'empty', colspan: cols, text: why })));
      $('streams-count').textContent = '';
      return;
    }
    $('streams-count').textContent = '(' + view.streams.length + ')';
    if (!view.streams.length) {
      body.replaceChildren(el('tr', null, el('td', { class: 'empty', colspan: cols, text: 'No stream published or waiting.' })));
      return;
    }
    body.replaceChildren.apply(body, view.streams.map(function (s) {
      var per = s.players || {};
      var perNodes = Object.keys(per).sort();
      return el('tr', { data: { stream: s.stream, origin: s.node_id || '', playersTotal: s.players_total || 0 } },
        el('td', null, el('span', { class: 'stream-name', text: s.stream })),
        el('td', null, s.node_id ? el('span', { class: 'mono', text: s.node_id }) : el('span', { class: 'muted', text: 'none', title: 'no origin holds it' })),
        el('td', null, s.entry ? el('span', { class: 'mono', text: s.entry }) : el('span', { class: 'muted', text: '—' })),
        el('td', null, nodeList(s.edges)),
        el('td', { class: 'per-node' }, perNodes.length
          ? perNodes.map(function (id) {
            return el('span', { class: 'chip', data: { playersNode: id, players: per[id] } }, id, el('b', { text: fmtInt(per[id]) }));
          })
          : el('span', { class: 'muted', text: '—' })),
        el('td', { class: 'num players-total', text: fmtInt(s.players_total) }),
        el('td', { class: 'num', text: s.bitrate_bps ? fmtBps(s.bitrate_bps) : '—' }),
        el('td', { class: 'relays' }, (s.relays || []).length ? s.relays.map(relayLine) : el('span', { class: 'muted', text: '—' })));
    }));
  }

  // ---- drain ----

  function renderDrain() {
    var button = $('drain');
    var hint = $('drain-hint');
    var why = '';
    if (document.body.dataset.state === 'error') why = 'node not answering';
    else if (state.draining) why = 'already draining';
    else if (state.auth === 'required') why = 'needs the admin token';
    else if (state.auth === 'rejected') why = 'admin token rejected';
    else if (!state.selfId) why = 'node unknown';
    button.disabled = !!why;
    button.dataset.canDrain = why ? 'no' : 'yes';
    button.title = why ? 'Drain unavailable: ' + why : 'Take ' + state.selfId + ' out of service';
    hint.textContent = why;
  }

  function drain() {
    if ($('drain').disabled) return;
    var id = state.selfId;
    var ok = window.confirm('Drain ' + id + '?\n\nIt leaves service at once: not ready, out of the ring, ' +
      'no new publishers or players. It keeps serving what it holds and exits once it holds nothing.');
    if (!ok) return;
    $('drain').disabled = true;
    request('POST', '/api/v1/drain', 'application/json').then(function (answer) {
      if (answer.status === 200) {
        state.draining = true;
        setBanner('drain-result', id + ' is draining: it serves what it holds and exits once it holds nothing.');
      } else if (answer.status === 401) {
        state.auth = token() ? 'rejected' : 'required';
        setBanner('drain-result', 'Drain refused (401): the admin token is missing or wrong.');
      } else {
        setBanner('drain-result', 'Drain failed: ' + answer.status + errorText(answer));
      }
    }, function (err) {
      setBanner('drain-result', 'Drain failed: ' + err.message);
    }).finally(function () {
      renderDrain();
      refreshSoon();
    });
  }

  // ---- the age label ----

  function tick() {
    var label = $('updated');
    if (!state.lastOk) {
      label.textContent = document.body.dataset.state === 'error' ? 'no data yet' : 'loading…';
      return;
    }
    var age = Math.max(0, Math.round((Date.now() - state.lastOk) / 1000));
    label.textContent = (document.body.dataset.state === 'error' ? 'last update ' : 'updated ') + age + ' s ago';
  }

  // ---- start ----

  function start() {
    var input = $('token');
    input.value = token();
    $('token-form').addEventListener('submit', function (e) {
      e.preventDefault();
      state.memToken = input.value;
      try {
        if (input.value) window.sessionStorage.setItem(TOKEN_KEY, input.value);
        else window.sessionStorage.removeItem(TOKEN_KEY);
      } catch (err) { /* storage refused: the token lasts until the page reloads */ }
      setBanner('drain-result', null);
      refreshSoon();
    });
    $('token-forget').addEventListener('click', function () {
      input.value = '';
      state.memToken = '';
      try { window.sessionStorage.removeItem(TOKEN_KEY); } catch (err) { /* nothing kept */ }
      refreshSoon();
    });
    $('drain').addEventListener('click', drain);
    setInterval(tick, 1000);
    refresh();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
}());
