// dso review page: votes, batch votes and finalization through a keystore on this machine or an
// injected browser wallet (EIP-1193). Only ever sets textContent: untrusted text never becomes HTML.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const result = document.getElementById("result");
const kind = document.getElementById("signer-kind");
const password = document.getElementById("password");

// state: "ok", "error" or "busy" (the class of the status line)
function say(text, state) {
  result.textContent = text;
  result.className = state;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

// action: "vote" | "finalize" | "proposal-vote" | "proposal-finalize"; payload: its fields.
async function act(action, payload, done) {
  const signer = kind.value;
  try {
    say("signing and sending...", "busy");
    let answer;
    if (signer === "browser") {
      const [from] = await window.ethereum.request({ method: "eth_requestAccounts" });
      const tx = await post("/api/unsigned", { action, ...payload });
      const hash = await window.ethereum.request({ method: "eth_sendTransaction", params: [{ from, to: tx.to, data: tx.data, chainId: tx.chainId }] });
      answer = { tx: hash };
    } else {
      const wallet = signer.replace(/^keystore:/, "");
      const secret = password.value;
      password.value = "";
      answer = await post("/api/" + action, { ...payload, wallet, password: secret });
    }
    say(done + " (transaction " + answer.tx + (answer.gas_used ? ", gas " + answer.gas_used : "") + ")", "ok");
    setTimeout(() => window.location.reload(), 1500);
  } catch (error) {
    say("refused: " + error.message, "error");
  }
}

if (window.ethereum && typeof window.ethereum.request === "function") {
  const option = document.getElementById("browser-wallet-option");
  option.hidden = false;
  kind.value = "browser";  // a wallet the member installed is the signer they expect
}

function syncPasswordField() {
  document.getElementById("password-label").hidden = kind.value === "browser";
}
kind.addEventListener("change", syncPasswordField);
syncPasswordField();

const voteCard = document.getElementById("vote");
if (voteCard) {
  const root = voteCard.dataset.root;
  const reason = () => document.getElementById("reason").value;
  for (const [id, support] of [["vote-yes", true], ["vote-no", false]]) {
    const button = document.getElementById(id);
    if (button) button.addEventListener("click", () => act("vote", { votes: [{ root, support, reason: reason() }] }, "voted " + (support ? "yes" : "no")));
  }
  const finalize = document.getElementById("finalize");
  if (finalize) finalize.addEventListener("click", () => act("finalize", { root }, "finalized"));
}

for (const [id, support] of [["bulk-yes", true], ["bulk-no", false]]) {
  const button = document.getElementById(id);
  if (!button) continue;
  button.addEventListener("click", () => {
    const roots = [...document.querySelectorAll("input.pick:checked")].map((box) => box.value);
    if (roots.length === 0) return say("select at least one pending batch", "error");
    const reason = document.getElementById("bulk-reason").value;
    act("vote", { votes: roots.map((root) => ({ root, support, reason })) }, "voted " + (support ? "yes" : "no") + " on " + roots.length + " batches");
  });
}

for (const button of document.querySelectorAll("button.proposal-vote")) {
  button.addEventListener("click", () => act("proposal-vote", { id: Number(button.dataset.id), support: button.dataset.support === "true" }, "voted on proposal " + button.dataset.id));
}
for (const button of document.querySelectorAll("button.proposal-finalize")) {
  button.addEventListener("click", () => act("proposal-finalize", { id: Number(button.dataset.id) }, "finalized proposal " + button.dataset.id));
}
