// Runs the TypeScript worker straight from src/ (tests, tsx): a worker thread does not
// inherit the parent's --import hooks, so it registers tsx itself first. The built
// service (dist/) starts dist/service/worker.js directly and never loads this file.
import { register } from 'tsx/esm/api';

register();
await import(new URL('./worker.ts', import.meta.url).href);
