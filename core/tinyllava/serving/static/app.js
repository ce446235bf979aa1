// The tinyllava chat page: talks to this server's /v1/chat/completions (streamed), keeps the conversation in
// OpenAI's message format, one image per conversation. No libraries, nothing fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  model: null,          // the id /health reports
  messages: [],         // the conversation so far, as sent to the API
  image: null,          // data URL picked for the next message
  hasImage: false,      // the conversation already carries its image
  controller: null,     // AbortController of the answer being streamed
};

function apiKey() { return $("api-key").value.trim(); }

function headers() {
  const h = { "Content-Type": "application/json" };
  if (apiKey()) h.Authorization = "Bearer " + apiKey();
  return h;
}

function notice(text) {
  const el = $("notice");
  el.textContent = text || "";
  el.hidden = !text;
}

function scrollDown() { const m = $("messages"); m.scrollTop = m.scrollHeight; }

function bubble(role, text, image) {
  $("empty").hidden = true;
  const el = document.createElement("div");
  el.className = "msg " + role;
  if (image) {
    const img = document.createElement("img");
    img.src = image;
    img.alt = "your image";
    el.appendChild(img);
  }
  if (text) el.appendChild(document.createTextNode(text));
  $("messages").appendChild(el);
  scrollDown();
  return el;
}

function setBusy(busy) {
  $("send").textContent = busy ? "Stop" : "Send";
  $("send").classList.toggle("stop", busy);
  $("pick").disabled = busy;
  $("input").disabled = busy;
}

function setImage(dataUrl) {
  state.image = dataUrl;
  $("preview").hidden = !dataUrl;
  $("preview-img").src = dataUrl || "";
}

function useFile(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) { notice(file.name + " is not an image."); return; }
  if (state.hasImage) {
    notice("This model takes one image per conversation: start over to ask about another image.");
    return;
  }
  const reader = new FileReader();
  reader.onload = () => { setImage(reader.result); notice(""); $("input").focus(); };
  reader.onerror = () => notice("Could not read " + file.name + ".");
  reader.readAsDataURL(file);
}

function startOver() {
  if (state.controller) state.controller.abort();
  state.messages = [];
  state.hasImage = false;
  setImage(null);
  notice("");
  for (const el of [...$("messages").querySelectorAll(".msg")]) el.remove();
  $("empty").hidden = false;
  $("input").value = "";
  autosize();
  $("input").focus();
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return "the server answered " + response.status;
}

// Reads OpenAI's server-sent events; calls onDelta(text) per content piece. Returns the finish reason.
async function readStream(response, onDelta) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let reason = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return reason;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        const choice = chunk.choices && chunk.choices[0];
        if (!choice) continue;
        if (choice.delta && choice.delta.content) onDelta(choice.delta.content);
        if (choice.finish_reason) reason = choice.finish_reason;
      }
    }
  }
  return reason;
}

async function send() {
  const text = $("input").value.trim();
  if (!text && !state.image) return;
  if (!text) { notice("Ask something about the image."); return; }
  const image = state.image;
  const content = image
    ? [{ type: "image_url", image_url: { url: image } }, { type: "text", text }]
    : text;
  const userMsg = { role: "user", content };
  state.messages.push(userMsg);
  const userBubble = bubble("user", text, image);
  $("input").value = "";
  autosize();
  setImage(null);
  if (image) state.hasImage = true;
  notice("");

  const answer = bubble("assistant streaming", "");
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  let full = "";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), signal: controller.signal,
      body: JSON.stringify({ model: state.model, messages: state.messages, stream: true }),
    });
    if (!response.ok) throw new Error(await errorText(response));
    const reason = await readStream(response, (piece) => {
      full += piece;
      answer.textContent = full;
      scrollDown();
    });
    if (reason === "length") notice("The answer reached its length limit.");
    state.messages.push({ role: "assistant", content: full });
    answer.classList.add("done");
  } catch (err) {
    // the exchange failed: take the question back so it can be asked again
    state.messages.splice(state.messages.indexOf(userMsg), 1);
    if (image) { state.hasImage = false; setImage(image); }
    if (controller.signal.aborted) {
      answer.remove();
      userBubble.remove();
      if (!state.messages.length) $("empty").hidden = false;
    } else {
      answer.className = "msg error";
      answer.textContent = "Error: " + err.message;
      userBubble.classList.add("failed");
      $("input").value = text;
    }
  } finally {
    answer.classList.remove("streaming");
    if (state.controller === controller) state.controller = null;
    setBusy(false);
    $("input").focus();
  }
}

function autosize() {
  const el = $("input");
  el.style.height = "auto";
  el.style.height = Math.min(el.scrollHeight + 2, window.innerHeight * 0.4) + "px";
}

async function init() {
  $("api-key").value = localStorage.getItem("tinyllava-api-key") || "";
  $("api-key").addEventListener("change", () => localStorage.setItem("tinyllava-api-key", apiKey()));
  try {
    const health = await (await fetch("/health")).json();
    state.model = health.model;
    $("model").textContent = health.model;
    $("key-row").hidden = !health.auth_required;
  } catch (err) {
    notice("The server did not answer /health: " + err.message);
  }
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    if (state.controller) state.controller.abort(); else send();
  });
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (!state.controller) send();
    }
  });
  $("input").addEventListener("input", autosize);
  $("pick").addEventListener("click", () => $("file").click());
  $("file").addEventListener("change", () => { useFile($("file").files[0]); $("file").value = ""; });
  $("remove-image").addEventListener("click", () => setImage(null));
  $("new-chat").addEventListener("click", startOver);
  let depth = 0;
  const overlay = $("drop-overlay");
  window.addEventListener("dragenter", (e) => { e.preventDefault(); depth += 1; overlay.hidden = false; });
  window.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) overlay.hidden = true; });
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    overlay.hidden = true;
    useFile(e.dataTransfer && e.dataTransfer.files[0]);
  });
  window.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData ? e.clipboardData.items : [])].find((i) => i.type.startsWith("image/"));
    if (item) useFile(item.getAsFile());
  });
  $("input").focus();
}

init();
