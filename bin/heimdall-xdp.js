#!/usr/bin/env node
// Entry point of the heimdall-xdp command: runs the compiled CLI from dist/.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
if (!existsSync(cli)) {
  process.stderr.write("heimdall-xdp: not built yet: run 'bash scripts/setup.sh' (or 'npm run build') in the checkout\n");
  process.exit(1);
}
await import(cli);
