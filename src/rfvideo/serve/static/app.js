// rfvideo live page: a WebSocket of JSON status messages and binary JPEG frames, drawn on a canvas at
// the video's fps. Flow control: the client acknowledges each chunk when it starts showing it; the
// server never runs more than a few chunks ahead of that.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("video");
const ctx = canvas.getContext("2d");

// What the page has done, for people and for the browser test.
const stats = { chunksDrawn: 0, framesDrawn: 0, lastChunk: -1, lastPrompt: null, ttffMs: null, errors: [] };
window.rfvideoStats = stats;

let ws = null;
let maxPromptChars = 200;
let fps = 16;
let running = false;
let startClick = 0;
let header = null; // the chunk whose frames are arriving: {index, prompt, remaining}
let queue = []; // frames to show, in arrival order: {bitmap (null until decoded), chunk, prompt}
const drawTimes = [];

function setError(text) {
  $("error").textContent = text || "";
  if (text) stats.errors.push(text);
}

function setRunning(on) {
  running = on;
  $("start").disabled = on;
  $("stop").disabled = !on;
  $("switch").disabled = !on;
}

function send(obj) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
}

function updateCount() {
  const n = $("prompt").value.trim().length;
  $("count").textContent = `${n}/${maxPromptChars}`;
  $("count").style.color = n > maxPromptChars ? "#ff7b72" : "";
}

function onStatus(msg) {
  switch (msg.type) {
    case "hello":
      maxPromptChars = msg.max_prompt_chars;
      $("status").textContent = "connected";
      updateCount();
      break;
    case "started":
      setRunning(true);
      fps = msg.fps > 0 ? msg.fps : fps;
      $("videofps").textContent = fps.toFixed(1);
      $("status").textContent = `started · prompt: ${msg.prompt}`;
      break;
    case "chunk":
      header = { index: msg.index, prompt: msg.prompt, remaining: msg.frames };
      if (canvas.width !== msg.width || canvas.height !== msg.height) {
        canvas.width = msg.width;
        canvas.height = msg.height;
      }
      break;
    case "queued":
      $("status").textContent = `switch to "${msg.prompt}" queued for the next chunk`;
      break;
    case "switch":
      break; // shown when its first frame is drawn
    case "busy":
      setRunning(false);
      setError(`busy: ${msg.message}`);
      break;
    case "error":
      // a refused message leaves a running stream running; a failed generation ends it
      if (msg.stream_ended || !running) setRunning(false);
      setError(`error: ${msg.message}`);
      break;
    case "stopped":
    case "done":
      setRunning(false);
      break;
  }
}

function onFrame(blob) {
  if (!header || header.remaining <= 0) return; // a frame without a header: ignore
  const entry = { bitmap: null, chunk: header.index, prompt: header.prompt };
  header.remaining -= 1;
  queue.push(entry); // keep arrival order, fill the bitmap when decoded
  createImageBitmap(blob).then((bmp) => { entry.bitmap = bmp; });
}

function connect() {
  const proto = location.protocol === "https:" ? "wss://" : "ws://";
  ws = new WebSocket(proto + location.host + "/ws");
  ws.binaryType = "blob";
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") onStatus(JSON.parse(ev.data));
    else onFrame(ev.data);
  };
  ws.onclose = () => {
    setRunning(false);
    $("status").textContent = "disconnected (reload the page to reconnect)";
  };
}

function tick() {
  const period = 1000 / fps;
  const head = queue[0];
  if (head && head.bitmap) {
    queue.shift();
    ctx.drawImage(head.bitmap, 0, 0, canvas.width, canvas.height);
    head.bitmap.close();
    const now = performance.now();
    stats.framesDrawn += 1;
    drawTimes.push(now);
    while (drawTimes.length && drawTimes[0] < now - 2000) drawTimes.shift();
    if (stats.ttffMs === null && startClick > 0) {
      stats.ttffMs = now - startClick;
      $("ttff").textContent = `${(stats.ttffMs / 1000).toFixed(2)} s`;
    }
    if (head.chunk !== stats.lastChunk) {
      stats.lastChunk = head.chunk;
      stats.lastPrompt = head.prompt;
      stats.chunksDrawn += 1;
      send({ type: "ack", chunk: head.chunk });
      $("chunk").textContent = String(head.chunk);
      $("status").textContent = `chunk ${head.chunk} · prompt: ${head.prompt}`;
    }
    const span = drawTimes.length > 1 ? (drawTimes[drawTimes.length - 1] - drawTimes[0]) / 1000 : 0;
    $("fps").textContent = span > 0 ? ((drawTimes.length - 1) / span).toFixed(1) : "-";
    $("buffered").textContent = String(queue.length);
    setTimeout(tick, period);
  } else {
    setTimeout(tick, 10);
  }
}

$("prompt").addEventListener("input", updateCount);
$("start").addEventListener("click", () => {
  setError("");
  queue = [];
  header = null;
  stats.ttffMs = null;
  stats.lastChunk = -1;
  $("ttff").textContent = "-";
  startClick = performance.now();
  $("start").disabled = true; // until the server answers: started, busy or error
  send({ type: "start", prompt: $("prompt").value });
});
$("switch").addEventListener("click", () => {
  setError("");
  send({ type: "prompt", prompt: $("prompt").value });
});
$("stop").addEventListener("click", () => {
  send({ type: "stop" });
  queue = [];
});
$("controls").addEventListener("submit", (ev) => {
  ev.preventDefault();
  (running ? $("switch") : $("start")).click();
});

updateCount();
connect();
tick();
