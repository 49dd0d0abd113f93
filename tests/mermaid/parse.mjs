// Parses Mermaid diagrams with Mermaid's own parser, in every Mermaid this package locks.
// Input (stdin): a JSON array of diagram texts. Output (stdout): one JSON object,
// {"<package>@<version>": [{"ok": true, "type": "xychart"} | {"ok": false, "error": "..."}]}.
// Mermaid's text sanitiser (DOMPurify) needs a DOM even to parse, so jsdom provides one.
// Used by tests/ops/test_step_summary.py; install with `npm ci --prefix tests/mermaid`.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;

const require = createRequire(import.meta.url);
const diagrams = JSON.parse(readFileSync(0, 'utf8'));
const results = {};
for (const name of ['mermaid10', 'mermaid']) {
  const { version } = require(`${name}/package.json`);
  const { default: mermaid } = await import(name);
  const parsed = [];
  for (const text of diagrams) {
    try {
      const found = await mermaid.parse(text);
      // Mermaid 10 returns true; 11 returns {diagramType}.
      parsed.push({ ok: true, type: found && found.diagramType ? found.diagramType : null });
    } catch (error) {
      parsed.push({ ok: false, error: String((error && error.message) || error) });
    }
  }
  results[`mermaid@${version}`] = parsed;
}
process.stdout.write(JSON.stringify(results) + '\n');
