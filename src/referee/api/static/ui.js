// The transfers page: the API's data, drawn with textContent only (nothing from the API becomes markup
// but the ladder, an SVG the server escaped, parsed as XML and stripped of anything that could run).
"use strict";

const TOKEN_KEY = "referee.api.token";
const POLL_MS = 2000; // polling is enough for a person watching, and the API serves one request a connection
const $ = (id) => document.getElementById(id);
let poller = null;
let selected = null; // {id, updated} of the transfer whose ladder is shown
let listed = ""; // the list as last drawn: drawn again only when it changed (a click is never lost)

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function utc(seconds) {
  return seconds ? new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) : "";
}

class Unauthorized extends Error {}

async function api(path, body) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
  const init = { headers, cache: "no-store" };
  if (body !== undefined) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    logout("The API refused the token: enter it again.");
    throw new Unauthorized();
  }
  return response;
}

async function errorOf(response) {
  try {
    return (await response.json()).error || response.statusText;
  } catch (_) {
    return response.status + " " + response.statusText;
  }
}

function setStatus(text, failed) {
  $("status").textContent = text;
  $("status").className = failed ? "error" : "";
}

// -- logging in and out ---------------------------------------------------------------------

function showMain(on) {
  $("login-panel").hidden = on;
  $("main").hidden = !on;
  $("logout").hidden = !on;
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(poller);
  poller = null;
  selected = null;
  listed = "";
  showMain(false);
  setStatus("");
  $("login-error").textContent = message || "";
}

async function login(event) {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  start();
}

function start() {
  showMain(true);
  refresh();
  poller = setInterval(refresh, POLL_MS);
}

// -- the list ---------------------------------------------------------------------------------

function who(parties) {
  return [
    parties.referrer || parties.initiator || "",
    parties.target || parties.destination || parties.recipient || "",
  ];
}

function row(record) {
  const tr = element("tr");
  tr.dataset.id = record.id;
  const [from, to] = who(record.parties || {});
  tr.append(element("td", record.id));
  const state = element("td");
  state.append(element("span", record.state, "state " + record.state));
  tr.append(state);
  const cells = [record.flow || "-", record.origin, from, to, utc(record.created), record.result || ""];
  for (const text of [...cells, record.evidence || ""]) {
    tr.append(element("td", text));
  }
  if (selected && selected.id === record.id) tr.classList.add("selected");
  tr.addEventListener("click", () => select(record));
  return tr;
}

async function refresh() {
  let records;
  try {
    const response = await api("/transfers?limit=200");
    if (!response.ok) throw new Error(await errorOf(response));
    records = (await response.json()).transfers;
  } catch (error) {
    if (!(error instanceof Unauthorized)) setStatus("API unreachable: " + error.message, true);
    return;
  }
  const text = JSON.stringify(records);
  if (text !== listed) {
    listed = text;
    $("transfers").tBodies[0].replaceChildren(...records.map(row));
  }
  $("empty").hidden = records.length > 0;
  setStatus(records.length + " transfer(s), updated " + new Date().toLocaleTimeString());
  const shown = selected && records.find((record) => record.id === selected.id);
  if (shown && shown.updated !== selected.updated) select(shown); // it moved on: draw it again
}

// -- one transfer: its parties and its ladder ------------------------------------------------------

function stripActive(root) {
  for (const node of [root, ...root.querySelectorAll("*")]) {
    if (["script", "foreignObject", "iframe", "a"].includes(node.localName)) {
      node.remove();
      continue;
    }
    for (const attribute of [...node.attributes]) {
      const name = attribute.name.toLowerCase();
      if (name.startsWith("on") || name === "href" || name.endsWith(":href")) node.removeAttribute(attribute.name);
    }
  }
  return root;
}

async function select(record) {
  selected = { id: record.id, updated: record.updated };
  for (const tr of $("transfers").tBodies[0].rows) {
    tr.classList.toggle("selected", tr.dataset.id === String(record.id));
  }
  $("detail-title").textContent = "Transfer " + record.id;
  $("detail-hint").hidden = true;
  const parties = [["call-id", record.call_id], ["pbx", record.pbx], ["result", record.result]];
  parties.push(["evidence", record.evidence], ["policy version", record.policy_version]);
  for (const [role, party] of Object.entries(record.parties || {}).sort()) parties.push([role, party]);
  $("parties").replaceChildren(
    ...parties.filter(([, value]) => value).flatMap(([key, value]) => [element("dt", key), element("dd", value)]),
  );
  let response;
  try {
    response = await api("/transfers/" + record.id + "/ladder");
    if (!response.ok) throw new Error(await errorOf(response));
  } catch (error) {
    if (!(error instanceof Unauthorized)) $("ladder").replaceChildren(element("p", error.message, "error"));
    return;
  }
  const picture = new DOMParser().parseFromString(await response.text(), "image/svg+xml").documentElement;
  if (picture.localName !== "svg") {
    $("ladder").replaceChildren(element("p", "the ladder could not be read", "error"));
    return;
  }
  $("ladder").replaceChildren(stripActive(document.importNode(picture, true)));
}

// -- the policy playground ----------------------------------------------------------------------------

async function check(event) {
  event.preventDefault();
  const verdict = $("verdict");
  const body = { referrer: $("referrer").value.trim(), refer_to: $("refer-to").value.trim() };
  let answer;
  try {
    const response = await api("/policy/check", body);
    if (!response.ok) throw new Error(await errorOf(response));
    answer = await response.json();
  } catch (error) {
    if (!(error instanceof Unauthorized)) {
      verdict.replaceChildren(element("span", error.message, "error"));
      $("trace").hidden = true;
    }
    return;
  }
  const head = answer.allowed
    ? element("span", "ALLOW " + answer.status, "allow")
    : element("span", "REJECT " + answer.status + " " + answer.reason, "reject");
  const lines = [head, element("div", "rule " + answer.rule)];
  if (answer.allowed) {
    lines.push(element("div", "Refer-To: " + answer.refer_to), element("div", "PBX: " + answer.pbx));
  }
  verdict.replaceChildren(...lines);
  const rows = answer.trace.map((step) => {
    const tr = element("tr");
    tr.append(element("td", step.rule), element("td", step.outcome), element("td", step.detail));
    return tr;
  });
  $("trace").tBodies[0].replaceChildren(...rows);
  $("trace").hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", login);
  $("check").addEventListener("submit", check);
  $("logout").addEventListener("click", () => logout(""));
  if (sessionStorage.getItem(TOKEN_KEY)) start();
  else showMain(false);
});
