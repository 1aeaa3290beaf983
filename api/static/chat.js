// The customer's web chat (demo page): start a session, read the replies from the session's
// Server-Sent Events stream, post what the customer types. No framework, no build step.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const chat = $("chat");
  const list = $("messages");
  const form = $("composer");
  const input = $("text");
  const send = $("send");
  const state = $("state");
  const seen = new Set();
  let session = null;

  function setState(name, label) {
    chat.dataset.state = name;
    state.textContent = label;
  }

  function clock(iso) {
    const when = iso ? new Date(iso) : new Date();
    return when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // a message bubble; text is set as text, never as HTML
  function add(kind, author, text, iso, id) {
    const item = document.createElement("li");
    item.className = "msg " + kind;
    if (id) item.dataset.id = id;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = author;
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    bubble.textContent = text;
    const when = document.createElement("time");
    when.textContent = clock(iso);
    item.append(who, bubble, when);
    list.append(item);
    item.scrollIntoView({ block: "end" });
    return item;
  }

  function onReply(event) {
    const message = JSON.parse(event.data);
    if (seen.has(message.id)) return; // a reconnect may replay
    seen.add(message.id);
    const person = message.author.startsWith("human:");
    const author = person ? message.author.slice("human:".length) : "Bot";
    const item = add(person ? "human" : "bot", author, message.text, message.created_at, message.id);
    item.dataset.author = message.author;
  }

  // an id for the message, so a resend after a network error is stored once
  function messageId() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function post(text, id) {
    for (let attempt = 0; attempt < 4; attempt++) {
      try {
        const response = await fetch(`/v1/webchat/${encodeURIComponent(session.session_id)}/messages`, {
          method: "POST",
          headers: { "content-type": "application/json", "X-Session-Token": session.token },
          body: JSON.stringify({ text: text, client_message_id: id }),
        });
        if (response.ok) return true;
        if (response.status < 500 && response.status !== 409) return false;
      } catch (err) {
        // the network: try again with the same id
      }
      await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt));
    }
    return false;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || !session) return;
    input.value = "";
    const item = add("customer", "You", text, null);
    item.classList.add("pending");
    const ok = await post(text, messageId());
    item.classList.remove("pending");
    item.classList.add(ok ? "sent" : "failed");
    if (!ok) {
      item.title = "Not sent. Please try again.";
    }
  });

  async function start() {
    const name = new URLSearchParams(location.search).get("name");
    const response = await fetch("/v1/webchat/sessions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(name ? { name: name } : {}),
    });
    if (!response.ok) throw new Error(`could not start a chat (${response.status})`);
    session = await response.json();
    const url = `/v1/webchat/${encodeURIComponent(session.session_id)}/stream` +
      `?token=${encodeURIComponent(session.token)}`;
    const stream = new EventSource(url);
    stream.addEventListener("open", () => {
      setState("connected", "connected");
      input.disabled = send.disabled = false;
      input.focus();
    });
    // EventSource reconnects by itself, resuming after the last reply it saw
    stream.addEventListener("error", () => setState("connecting", "reconnecting…"));
    stream.addEventListener("message", onReply);
  }

  start().catch((err) => setState("failed", err.message));
})();
