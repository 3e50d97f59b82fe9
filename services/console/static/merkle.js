// The incident page's audit timeline, checked in the browser rather than taken on the server's
// word: the log's checkpoint is a C2SP signed note, verified with the log's Ed25519 verifier key
// (`<name>+<key id>+<base64(0x01 || public key)>`); each entry's RFC 9162 inclusion proof must
// lead from its leaf hash to the root that note signs, and where the leaf's bytes are given,
// SHA-256(0x00 || leaf) must be its hash. Only WebCrypto (SHA-256, Ed25519); no library.
// The key comes with the page (audit's /v1/log/key): the summary names its id, for a reader to
// compare with the log's published verifier key.
"use strict";

(function () {
  const VERIFIED = "已验证";
  const FAILED = "验证失败";
  const PENDING = "待签入检查点";
  const SIGNATURE_PREFIX = "\u2014 "; // em dash, space
  const ED25519 = 0x01;
  const HASH_SIZE = 32;
  const encoder = new TextEncoder();

  class Refusal extends Error {}

  // --- bytes and hashes ------------------------------------------------------------------------
  function fromBase64(text) {
    let binary;
    try {
      binary = atob(text);
    } catch (error) {
      throw new Refusal("不是有效的 base64：" + text.slice(0, 16));
    }
    return Uint8Array.from(binary, (ch) => ch.charCodeAt(0));
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const part of parts) { out.set(part, at); at += part.length; }
    return out;
  }

  function equal(a, b) {
    return a.length === b.length && a.every((byte, i) => byte === b[i]);
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  const hashLeaf = (data) => sha256(concat([0x00], data));
  const hashChildren = (left, right) => sha256(concat([0x01], left, right));

  // RFC 9162 §2.1.3.2. Sizes may pass 2^31: halve with arithmetic, not 32-bit shifts.
  async function rootFromInclusion(index, size, leafHash, proof) {
    if (!(Number.isSafeInteger(index) && Number.isSafeInteger(size) && index >= 0 && index < size)) {
      throw new Refusal("条目序号不在检查点覆盖的范围内");
    }
    if (leafHash.length !== HASH_SIZE || proof.some((h) => h.length !== HASH_SIZE)) {
      throw new Refusal("哈希长度不是 32 字节");
    }
    const odd = (n) => n % 2 === 1;
    const half = (n) => Math.floor(n / 2);
    let fn = index, sn = size - 1, result = leafHash;
    for (const sibling of proof) {
      if (sn === 0) throw new Refusal("证明比树更深");
      if (odd(fn) || fn === sn) {
        result = await hashChildren(sibling, result);
        while (!odd(fn) && fn !== 0) { fn = half(fn); sn = half(sn); }
      } else {
        result = await hashChildren(result, sibling);
      }
      fn = half(fn); sn = half(sn);
    }
    if (sn !== 0) throw new Refusal("证明比树更浅");
    return result;
  }

  // --- the signed checkpoint -------------------------------------------------------------------
  async function keyId(name, keyType, publicKey) {
    const digest = await sha256(concat(encoder.encode(name + "\n"), [keyType], publicKey));
    return digest.slice(0, 4);
  }

  async function parseVerifierKey(vkey) {
    // `+` may occur in the base64 as well: only the first two separate.
    const match = /^([^+\s]+)\+([0-9a-f]{8})\+(\S+)$/i.exec(vkey.trim());
    if (!match) throw new Refusal("日志公钥格式不对");
    const [, name, idHex, encoded] = match;
    const raw = fromBase64(encoded);
    if (raw.length !== 33 || raw[0] !== ED25519) throw new Refusal("日志公钥不是 Ed25519 公钥");
    const id = Uint8Array.from(idHex.match(/../g), (pair) => parseInt(pair, 16));
    const publicKey = raw.slice(1);
    if (!equal(id, await keyId(name, ED25519, publicKey))) throw new Refusal("日志公钥的编号不符");
    return { name, id, publicKey };
  }

  // The note's text (what was signed) and the log key's signature over it.
  async function openNote(note, key) {
    const split = note.lastIndexOf("\n\n");
    if (!note.endsWith("\n") || split < 0) throw new Refusal("检查点不是签名的注记");
    const text = note.slice(0, split + 1);
    const signatures = note.slice(split + 2).split("\n").filter((line) => line);
    let publicKey;
    try {
      publicKey = await crypto.subtle.importKey("raw", key.publicKey, { name: "Ed25519" }, false, ["verify"]);
    } catch (error) {
      throw new Refusal("此浏览器不支持 Ed25519 验签");
    }
    for (const line of signatures) {
      if (!line.startsWith(SIGNATURE_PREFIX)) throw new Refusal("检查点签名行格式不对");
      const [name, encoded] = line.slice(SIGNATURE_PREFIX.length).split(" ");
      if (name !== key.name || encoded === undefined) continue;
      const raw = fromBase64(encoded);
      if (raw.length !== 4 + 64 || !equal(raw.slice(0, 4), key.id)) continue;
      if (await crypto.subtle.verify({ name: "Ed25519" }, publicKey, raw.slice(4), encoder.encode(text))) {
        return text;
      }
      throw new Refusal("检查点签名无效");
    }
    throw new Refusal("检查点没有日志密钥的签名");
  }

  function parseCheckpoint(text, origin) {
    const lines = text.split("\n");
    if (lines.length < 4 || lines[0] !== origin) throw new Refusal("检查点不是此日志的");
    if (!/^(0|[1-9][0-9]*)$/.test(lines[1])) throw new Refusal("检查点的大小不对");
    const size = Number(lines[1]);
    const root = fromBase64(lines[2]);
    if (!Number.isSafeInteger(size) || root.length !== HASH_SIZE) throw new Refusal("检查点格式不对");
    return { size, root, keyId: "" };
  }

  // The checkpoint as the log signed it; the section's plain size and root must say the same.
  async function checkpointOf(section) {
    const { checkpointNote: note, checkpointSize, checkpointRoot, logKey } = section.dataset;
    if (!note) throw new Refusal("尚无签名的检查点");
    if (!logKey) throw new Refusal("未能取得日志公钥");
    const key = await parseVerifierKey(logKey);
    const checkpoint = parseCheckpoint(await openNote(note, key), key.name);
    checkpoint.keyId = Array.from(key.id, (byte) => byte.toString(16).padStart(2, "0")).join("");
    if (checkpointSize !== undefined && Number(checkpointSize) !== checkpoint.size) {
      throw new Refusal("页面所示的检查点大小与签名的不符");
    }
    if (checkpointRoot !== undefined && !equal(fromBase64(checkpointRoot), checkpoint.root)) {
      throw new Refusal("页面所示的根哈希与签名的不符");
    }
    return checkpoint;
  }

  // --- one entry -------------------------------------------------------------------------------
  async function checkEntry(row, checkpoint) {
    const data = row.dataset;
    const leafHash = fromBase64(data.leafHash || "");
    if (data.leaf) {
      if (!equal(await hashLeaf(fromBase64(data.leaf)), leafHash)) {
        throw new Refusal("条目内容与其哈希不符");
      }
    }
    const proof = (data.proof || "").split(",").filter((h) => h).map(fromBase64);
    const root = await rootFromInclusion(Number(data.index), checkpoint.size, leafHash, proof);
    if (!equal(root, checkpoint.root)) throw new Refusal("包含证明得出的根哈希与检查点不符");
  }

  function show(row, outcome, reason) {
    const cell = row.querySelector(".proof-result");
    if (!cell) return;
    cell.classList.toggle("verified", outcome === "verified");
    cell.classList.toggle("failed", outcome === "failed");
    cell.textContent = outcome === "verified" ? VERIFIED : outcome === "failed" ? FAILED : PENDING;
    if (reason) cell.title = reason; else cell.removeAttribute("title");
    row.dataset.proofOutcome = outcome;
  }

  // --- the page --------------------------------------------------------------------------------
  let generation = 0;

  async function verifyTimeline() {
    const section = document.querySelector("section.timeline");
    if (!section) return;
    const mine = ++generation;
    const rows = Array.from(section.querySelectorAll("tr.entry"));
    const covered = rows.filter((row) => row.dataset.covered === "true");
    const outcomes = new Map();
    let checkpoint = null, checkpointProblem = null;
    if (covered.length) {
      try {
        if (!(globalThis.crypto && crypto.subtle)) throw new Refusal("此页面不在安全连接上，浏览器不能验证");
        checkpoint = await checkpointOf(section);
      } catch (error) {
        checkpointProblem = error instanceof Refusal ? error.message : "检查点无法验证";
      }
    }
    for (const row of rows) {
      if (row.dataset.covered !== "true") { outcomes.set(row, ["pending", null]); continue; }
      if (!checkpoint) { outcomes.set(row, ["failed", checkpointProblem]); continue; }
      try {
        await checkEntry(row, checkpoint);
        outcomes.set(row, ["verified", null]);
      } catch (error) {
        outcomes.set(row, ["failed", error instanceof Refusal ? error.message : "无法验证"]);
      }
    }
    if (mine !== generation) return; // a newer page's check is under way
    for (const [row, [outcome, reason]] of outcomes) show(row, outcome, reason);
    const count = (wanted) => Array.from(outcomes.values()).filter(([o]) => o === wanted).length;
    const verified = count("verified"), failed = count("failed"), pending = count("pending");
    const summary = document.getElementById("proof-summary");
    if (summary) {
      const parts = [];
      if (checkpointProblem) parts.push(checkpointProblem);
      else if (checkpoint) {
        parts.push("检查点（" + checkpoint.size + " 条）签名有效（日志密钥 " + checkpoint.keyId + "）");
      }
      if (verified) parts.push(verified + " 条" + VERIFIED);
      if (failed) parts.push(failed + " 条" + FAILED);
      if (pending) parts.push(pending + " 条" + PENDING);
      summary.textContent = parts.join("，");
      summary.classList.toggle("verified", failed === 0 && verified > 0);
      summary.classList.toggle("failed", failed > 0);
    }
    section.dataset.proofChecked = String(mine);
  }

  function run() {
    verifyTimeline().catch(() => {});
  }

  document.addEventListener("console:refreshed", run);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run);
  else run();
})();
