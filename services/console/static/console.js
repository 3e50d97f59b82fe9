// The duty console's only script: live updates over server-sent events, and countdowns.
// Pages work without it (forms post, pages load); with it nothing on screen needs a reload.
"use strict";

(function () {
  const body = document.body;
  const liveStatus = document.getElementById("live-status");

  function setLive(state) {
    if (!liveStatus) return;
    liveStatus.dataset.state = state;
    liveStatus.title = state === "open" ? "实时更新中" : "连接中断，正在重连";
  }

  // --- countdowns ------------------------------------------------------------------------------
  function two(n) { return String(n).padStart(2, "0"); }
  function words(ms) {
    const total = Math.floor(Math.abs(ms) / 1000);
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    return (h ? h + ":" + two(m) : String(m)) + ":" + two(s);
  }
  function tick() {
    const now = Date.now();
    for (const el of document.querySelectorAll("[data-due]")) {
      const left = Date.parse(el.dataset.due) - now;
      el.textContent = left >= 0 ? "剩余 " + words(left) : "已超时 " + words(left);
      el.classList.toggle("overdue", left < 0);
    }
  }
  tick();
  setInterval(tick, 1000);

  // --- live regions ----------------------------------------------------------------------------
  let refreshing = false, again = false, timer = null;

  async function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      const response = await fetch(location.href, {
        headers: { "X-Fragment": "1" }, credentials: "same-origin", cache: "no-store",
      });
      if (response.redirected || response.status === 401) { location.reload(); return; }
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const region of document.querySelectorAll("[data-live-region]")) {
        const name = region.dataset.liveRegion;
        const replacement = fresh.querySelector('[data-live-region="' + name + '"]');
        if (replacement) region.replaceWith(document.importNode(replacement, true));
      }
      tick();
      document.dispatchEvent(new CustomEvent("console:refreshed"));
      body.dataset.refreshedAt = String(Date.now());
    } finally {
      refreshing = false;
      if (again) { again = false; schedule(); }
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);  // several events of one change make one refresh
  }

  function concerns(change) {
    const incident = body.dataset.liveIncident;
    return !incident || change.incident_id === incident;
  }

  if (body.dataset.live && window.EventSource) {
    const source = new EventSource("/live");
    source.addEventListener("ready", function () {
      setLive("open");
      body.dataset.liveReady = "true";
      // Whatever happened before the stream opened (since the page loaded, or while it was
      // down) is read again.
      schedule();
    });
    source.addEventListener("change", function (message) {
      const change = JSON.parse(message.data);
      if (concerns(change)) schedule();
    });
    source.onerror = function () { setLive("closed"); body.dataset.liveReady = "false"; };
  }
})();
