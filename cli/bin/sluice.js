#!/usr/bin/env node
import { existsSync } from 'node:fs';

const entry = new URL('../dist/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('sluice: not built yet; run `npm run build` first\n');
  process.exit(2);
}
await import(entry.href);
