/** Writes config/heimdall-xdp.schema.json from the file format (src/config-file.ts FILE_KEYS). */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { configSchema } from '../src/config-file.js';

const out = fileURLToPath(new URL('../config/heimdall-xdp.schema.json', import.meta.url));
writeFileSync(out, `${JSON.stringify(configSchema(), null, 2)}\n`);
console.log(`wrote ${out}`);
