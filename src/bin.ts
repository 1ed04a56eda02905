/** Process entry of the heimdall-xdp command (bin/heimdall-xdp.js runs the built copy). */
import { main } from './cli.js';

await main(process.argv);
